"""The one error tree: every failure a user can meet, with a message and a hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ImagectlError(Exception):
    """A failure the CLI shows as one paragraph: what went wrong, where, and what to do."""

    kind = "error"

    def __init__(
        self, message: str, *, hint: str = "", path: Path | str | None = None, details: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = str(path) if path is not None else ""
        self.details = details
        # What the command had done before it failed, one sentence each ("v1 of x was built
        # and recorded; v2 was not recorded"); set by the workflow that knows it.
        self.done: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The error as `--json` prints it (on stdout, instead of the result)."""
        return {
            "error": self.message,
            "kind": self.kind,
            "hint": self.hint,
            "path": self.path,
            "done": list(self.done),
        }

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        text = f"{where}{self.message}"
        if self.hint:
            text += f" {self.hint}"
        if self.done:
            text += f" So far: {'; '.join(self.done)}."
        return text


class ConfigError(ImagectlError):
    """An image line file or the repository layout is wrong."""

    kind = "config error"


class TemplateError(ImagectlError):
    """An increment template does not render."""

    kind = "template error"


class LockfileError(ImagectlError):
    """A lockfile cannot be read or written."""

    kind = "lockfile error"


class DriftError(ImagectlError):
    """What is on disk no longer matches what the lockfile says was built."""

    kind = "drift"


class PlanError(ImagectlError):
    """The next step cannot be planned safely (missing parent, existing tag, ...)."""

    kind = "plan error"


class TagConflictError(PlanError):
    """A tag imagectl would create already names another image."""

    kind = "tag conflict"


class ProcessError(ImagectlError):
    """An outside program (docker, git) failed; what ran and what it said are fields, so that
    decisions read them instead of searching a message that contains user-supplied names."""

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        path: Path | str | None = None,
        details: str = "",
        command: tuple[str, ...] = (),
        exit_code: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message, hint=hint, path=path, details=details)
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr


class EngineError(ProcessError):
    """The Docker engine is unreachable or refused a command."""

    kind = "engine error"


class BuildError(EngineError):
    """A build step failed."""

    kind = "build failed"

    def __init__(self, message: str, *, dockerfile_line: int | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.dockerfile_line = dockerfile_line  # the failing instruction, as BuildKit named it


class RegistryError(ProcessError):
    """The registry is unreachable or refused a request."""

    kind = "registry error"


class RegistryAuthError(RegistryError):
    """The registry answered 401 or 403: not logged in, wrong or expired credentials."""

    kind = "registry refused access"


class TagImmutableError(RegistryError):
    """The registry refused a push because the tag is immutable (ECR, Harbor)."""

    kind = "registry refused"


class GitError(ProcessError):
    """Git refused or the repository is not usable."""

    kind = "git error"


class TestFailedError(ImagectlError):
    """A test of the image failed: nothing was tagged or recorded."""

    __test__ = False  # not a pytest class
    kind = "test failed"

    def __init__(
        self, message: str, *, tests: tuple[dict[str, object], ...] = (), **fields: Any
    ) -> None:
        super().__init__(message, **fields)
        self.tests = tests  # every test that ran, each as `imagectl test --json` shows it

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "tests": list(self.tests)}


class BackupError(ImagectlError):
    """A pod backup given to restore-check is not a layer imagectl can read safely (not a tar,
    a path escaping the root, a link pointing out of it)."""

    kind = "backup error"


class ArchiveError(ImagectlError):
    """The downloads captured while a version was built cannot be archived as they are: a mirror
    served a file its signed index does not name, or the signatures cannot be checked."""

    kind = "archive error"


class BusyError(ImagectlError):
    """Another imagectl process holds the repository's build lock."""

    kind = "busy"


class CaptureError(ImagectlError):
    """A record or replay proxy for a build's downloads cannot start (its address is not
    on this machine, the store is not writable)."""

    kind = "capture error"


Failures = tuple[tuple[str, ImagectlError], ...]  # (line, why): the other lines went on
