"""What `build next`, `squash`, `render`, `diff` and `skip` hand back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagectl.core.model import (
    BuiltVersion,
    LockedVersion,
)

if TYPE_CHECKING:
    from pathlib import Path

    from imagectl.core.errors import (
        Failures,
    )
    from imagectl.core.packages import PackageDiff


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    """What `build next` did: the versions built, and each line's failure."""

    lines: tuple[str, ...]  # every selected line, in order
    built: tuple[BuiltVersion, ...]
    failures: Failures = ()

    @property
    def up_to_date(self) -> tuple[str, ...]:
        busy = {b.line for b in self.built} | {name for name, _ in self.failures}
        return tuple(name for name in self.lines if name not in busy)

    def to_json(self) -> dict[str, object]:
        """Every selected line: what it built, or why it failed; none is ever left out."""
        failed = dict(self.failures)
        rows = []
        for name in self.lines:
            built = [b.to_json() for b in self.built if b.line == name]
            status = "failed" if name in failed else ("built" if built else "up to date")
            error = failed[name].to_json() if name in failed else None
            rows.append({"line": name, "status": status, "built": built, "error": error})
        return {"lines": rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceStatus:
    """One line's reference Dockerfile: written, or found current or stale."""

    line: str
    path: Path  # relative to the repository root
    changed: bool  # written now (or, with check, found stale)
    checked: bool = False  # compared only (squash --check)

    @property
    def state(self) -> str:
        if self.checked:
            return "stale" if self.changed else "current"
        return "written" if self.changed else "unchanged"

    def to_json(self) -> dict[str, object]:
        return {"line": self.line, "path": self.path.as_posix(), "state": self.state}


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionDiff:
    """Packages and increments between two versions of a line."""

    line: str
    old: int
    new: int
    packages: PackageDiff
    between: tuple[LockedVersion, ...]  # the versions after `old` up to `new`

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "from": self.old,
            "to": self.new,
            **self.packages.to_json(),
            "increments": [
                {
                    "version": v.version,
                    "increment": v.increment,
                    "summary": v.summary,
                    "checkpoint": v.checkpoint,
                }
                for v in self.between
            ],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A version recorded as skipped: its tag is someone else's image."""

    line: str
    version: LockedVersion

    def to_json(self) -> dict[str, object]:
        v = self.version
        return {
            "line": self.line,
            "version": v.version,
            "tag": v.tag,
            "reason": v.reason,
            "foreign_digest": v.foreign_digest,
            "skipped_at": v.built_at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class References:
    """The reference Dockerfiles `squash` wrote or checked."""

    references: tuple[ReferenceStatus, ...]

    def to_json(self) -> dict[str, object]:
        return {"references": [r.to_json() for r in self.references]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """The exact Dockerfile of a built or pending version."""

    line: str
    version: int | None
    dockerfile: str

    def to_json(self) -> dict[str, object]:
        return {"line": self.line, "version": self.version, "dockerfile": self.dockerfile}
