"""Reading and validating the image line files `images/<line>.toml`, all up front."""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagectl.core.errors import ConfigError
from imagectl.core.ignores import check_pattern
from imagectl.core.model import ImageLine

LINE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# Docker reference grammar, simplified: [host[:port]/]path with lowercase components.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?)"
REPOSITORY = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
ALLOWED_KEYS = {
    "repository",
    "base",
    "vars",
    "secrets",
    "description",
    "tests",
    "verify",
    "withdraw",
    "sbom",
    "archive",
}
ARCHIVE_REQUIRE = ("", "complete")  # [archive] require: tag only versions whose inputs are all kept
BUILD_ON = ("head", "kept")  # [withdraw] build_on: the newest version, or the newest kept one
TEST_TIMEOUT = 120.0  # seconds each test of a line may take, unless its [tests] timeout says
MAX_TEST_TIMEOUT = 24 * 3600.0
VERIFY_KEYS = {"ignore"}
DISTRO = re.compile(r"^[a-z0-9][a-z0-9.+~]*-[A-Za-z0-9.+~-]+$")  # os-release's ID-VERSION_ID
SECRET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RESERVED_VARS = {"line", "version", "parent", "repository", "base"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RepositoryLayout:
    """Where an image repository keeps its parts."""

    root: Path

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def increments_dir(self) -> Path:
        return self.root / "increments"

    @property
    def shared_dir(self) -> Path:
        return self.increments_dir / "_shared"

    @property
    def lock_dir(self) -> Path:
        return self.root / "lock"

    @property
    def state_dir(self) -> Path:
        return self.root / ".imagectl"

    def lock_path(self, line: str) -> Path:
        return self.lock_dir / f"{line}.lock.toml"

    def reference_path(self, line: str) -> Path:
        """The line's reference Dockerfile, written beside its lock."""
        return self.lock_dir / f"{line}.reference.Dockerfile"

    def line_increments_dir(self, line: str) -> Path:
        return self.increments_dir / line


def find_repository(start: Path) -> RepositoryLayout:
    """The image repository containing `start`: the nearest folder with an `images/` folder."""
    start = start.resolve()
    if not start.is_dir():
        raise ConfigError(f"{start} is not a folder.", hint="Pass an image repository to -C.")
    for folder in (start, *start.parents):
        if (folder / "images").is_dir():
            return RepositoryLayout(root=folder)
    raise ConfigError(
        f"no image repository found at {start} or above (no images/ folder).",
        hint="Run imagectl inside an image repository or point -C at one.",
    )


def load_lines(layout: RepositoryLayout) -> tuple[ImageLine, ...]:
    """Every image line of the repository, sorted by name; any bad file fails the whole load."""
    # Dot files are editors' (emacs' `.#line.toml` lock links), never line files.
    files = sorted(p for p in layout.images_dir.glob("*.toml") if not p.name.startswith("."))
    lines = tuple(load_line(layout, path) for path in files)
    check_distinct_repositories(lines)
    return lines


def check_distinct_repositories(lines: tuple[ImageLine, ...]) -> None:
    """Two lines tagging the same repository would make and overwrite each other's v1, v2, ..."""
    seen: dict[str, ImageLine] = {}
    for line in lines:
        other = seen.setdefault(line.repository, line)
        if other is not line:
            raise ConfigError(
                f"repository = {line.repository!r} is also the repository of "
                f"{other.config_path.as_posix()}: two lines cannot share one, their tags "
                "v1, v2, ... would collide.",
                hint="Give each line its own repository (e.g. append the line's name).",
                path=line.config_path,
            )


def check_secret_sources(line: ImageLine, environ: Mapping[str, str] | None = None) -> None:
    """Every build secret of `line` can be read: its environment variable is set, its file
    exists. A missing one would reach the build as an empty secret, so this runs before any
    build; it names where the secret comes from, never its value."""
    env = os.environ if environ is None else environ
    for secret_id, source in sorted(line.secrets.items()):
        kind, _, where = source.partition(":")
        if kind == "env" and where not in env:
            raise ConfigError(
                f"[secrets] {secret_id} = {source!r}: the environment variable {where} is not "
                "set, so the build would get no secret.",
                hint=f"Set {where} before building (its value goes to BuildKit, never into a "
                "file); nothing was built.",
                path=line.config_path,
            )
        if kind == "file" and not Path(where).is_file():
            raise ConfigError(
                f"[secrets] {secret_id} = {source!r}: the file {where} does not exist, so the "
                "build would get no secret.",
                hint=f"Create {where} (readable by you) before building; nothing was built.",
                path=line.config_path,
            )


def select_lines(lines: tuple[ImageLine, ...], names: list[str]) -> tuple[ImageLine, ...]:
    """The lines named (in the order given), or all lines when none is named."""
    if not names:
        return lines
    by_name = {line.name: line for line in lines}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ConfigError(
            f"no image line named {', '.join(unknown)} (images/<line>.toml).",
            hint=f"Known lines: {known}.",
        )
    return tuple(by_name[name] for name in dict.fromkeys(names))


def match_lines(lines: tuple[ImageLine, ...], pattern: str) -> tuple[ImageLine, ...]:
    """The lines whose name matches the glob `pattern` (a plain name matches itself); none
    matching is an error naming the known lines, so a typo never publishes nothing quietly."""
    matched = tuple(line for line in lines if fnmatch.fnmatchcase(line.name, pattern))
    if not matched:
        known = ", ".join(sorted(line.name for line in lines)) or "none"
        raise ConfigError(f"no image line matches {pattern!r}.", hint=f"Known lines: {known}.")
    return matched


def load_line(layout: RepositoryLayout, path: Path) -> ImageLine:
    rel = path.relative_to(layout.root)
    name = path.name.removesuffix(".toml")
    if not LINE_NAME.match(name):
        raise ConfigError(
            f"the line name {name!r} is not valid.",
            hint="Use lowercase letters, digits, '.', '_' and '-' (e.g. pod-bookworm.toml).",
            path=rel,
        )
    if not path.is_file():  # a FIFO (reading it would block), a folder, a dangling link
        raise ConfigError(
            "is not a regular file.",
            hint="An image line file is a TOML text file; remove what is there and write one.",
            path=rel,
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"is not valid TOML ({exc}).", hint="Fix the syntax.", path=rel) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({exc}).", path=rel) from exc

    unknown = sorted(set(data) - ALLOWED_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key {', '.join(unknown)}.",
            hint=f"An image line file knows {', '.join(sorted(ALLOWED_KEYS))}; "
            "template variables go under [vars].",
            path=rel,
        )
    return _line_from(name, rel, data)


def _line_from(name: str, rel: Path, data: dict[str, Any]) -> ImageLine:
    """The line file's values, each checked: names, references, vars, secrets."""
    repository = _required_string(data, "repository", rel)
    if not REPOSITORY.match(repository):
        raise ConfigError(
            f"repository = {repository!r} is not a valid image repository name.",
            hint='Use e.g. "localhost:5000/pods/bookworm": lowercase, no tag, no digest.',
            path=rel,
        )
    base = _required_string(data, "base", rel)
    if not REFERENCE.match(base):
        raise ConfigError(
            f"base = {base!r} is not a valid image reference.",
            hint='Use e.g. "localhost:5000/debian:bookworm".',
            path=rel,
        )
    variables = data.get("vars", {})
    if not isinstance(variables, dict):
        raise ConfigError("[vars] must be a table.", path=rel)
    clash = sorted(set(variables) & RESERVED_VARS)
    if clash:
        raise ConfigError(
            f"[vars] defines {', '.join(clash)}, which imagectl sets itself.",
            hint=f"Rename it; reserved names are {', '.join(sorted(RESERVED_VARS))}.",
            path=rel,
        )
    return ImageLine(
        name=name,
        config_path=rel,
        repository=repository,
        base=base,
        vars=dict(variables),
        secrets=_secrets(data.get("secrets", {}), rel),
        test_timeout=_test_timeout(data.get("tests", {}), rel),
        verify_ignore=_verify_ignore(data.get("verify", {}), rel),
        build_on_kept=_build_on(data.get("withdraw", {}), rel) == "kept",
        sbom_distro=_sbom_distro(data.get("sbom", {}), rel),
        **_archive(data.get("archive", {}), rel),
    )


def _archive(table: object, rel: Path) -> dict[str, bool]:
    """[archive] enabled = false (no input archive for the line) and require = "complete"
    (refuse to tag a version whose downloads were not all captured and proved)."""
    hint = (
        '[archive] knows enabled (true, the default, or false) and require ("complete": tag '
        "only versions whose inputs were all captured; leave it out to record incomplete ones)."
    )
    if not isinstance(table, dict) or set(table) - {"enabled", "require"}:
        raise ConfigError("[archive] must be a table of enabled and require.", hint=hint, path=rel)
    enabled = table.get("enabled", True)
    require = table.get("require", "")
    if not isinstance(enabled, bool):
        raise ConfigError(
            f"[archive] enabled = {enabled!r} is not true or false.", hint=hint, path=rel
        )
    if require not in ARCHIVE_REQUIRE:
        raise ConfigError(
            f'[archive] require = {require!r} is not "complete".', hint=hint, path=rel
        )
    if require and not enabled:
        raise ConfigError(
            '[archive] require = "complete" with enabled = false asks for an archive the line '
            "does not keep.",
            hint=hint,
            path=rel,
        )
    return {"archive": enabled, "archive_complete": bool(require)}


def _sbom_distro(table: object, rel: Path) -> str:
    """[sbom] distro = "ubuntu-24.04": the ID-VERSION_ID of the line's os-release, which names
    its debs in the SBOM (pkg:deb/ubuntu/...?distro=ubuntu-24.04)."""
    hint = 'Write [sbom] distro = "ubuntu-24.04" (or "debian-12": ID-VERSION_ID of os-release).'
    if not isinstance(table, dict) or set(table) - {"distro"}:
        raise ConfigError("[sbom] must be a table with one key, distro.", hint=hint, path=rel)
    value = table.get("distro", "")
    if not isinstance(value, str) or (value and DISTRO.match(value) is None):
        raise ConfigError(
            f"[sbom] distro = {value!r} is not a distribution name.", hint=hint, path=rel
        )
    return value


def _test_timeout(table: object, rel: Path) -> float:
    """[tests] timeout = seconds: how long each test of the line may run before it fails."""
    if not isinstance(table, dict):
        raise ConfigError("[tests] must be a table.", hint="Write [tests] timeout = 120.", path=rel)
    unknown = sorted(set(table) - {"timeout"})
    if unknown:
        raise ConfigError(
            f"[tests] has an unknown key {', '.join(unknown)}.",
            hint="[tests] knows timeout (seconds each test may take, default 120).",
            path=rel,
        )
    value = table.get("timeout", TEST_TIMEOUT)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TEST_TIMEOUT
    ):
        raise ConfigError(
            f"[tests] timeout = {value!r} is not a number of seconds.",
            hint=f"Give a number greater than 0 and at most {MAX_TEST_TIMEOUT:.0f}, e.g. 120.",
            path=rel,
        )
    return float(value)


def _build_on(table: object, rel: Path) -> str:
    """[withdraw] build_on = "head" (the default) or "kept": what the next version is built
    on when the newest one is withdrawn."""
    if not isinstance(table, dict) or set(table) - {"build_on"}:
        raise ConfigError(
            "[withdraw] must be a table with one key, build_on.",
            hint='Write [withdraw] build_on = "kept" to build the next version on the newest '
            'version not withdrawn, or leave it out ("head": on the newest version, as always).',
            path=rel,
        )
    value = table.get("build_on", "head")
    if value not in BUILD_ON:
        raise ConfigError(
            f'[withdraw] build_on = {value!r} is neither "head" nor "kept".',
            hint='"head" builds the next version on the newest one, withdrawn or not (the '
            'default); "kept" on the newest one not withdrawn, which forks the chain.',
            path=rel,
        )
    return str(value)


def _verify_ignore(table: object, rel: Path) -> tuple[str, ...]:
    """[verify] ignore = ["/stamp", ...]: more paths verify does not count as drift."""
    if not isinstance(table, dict):
        raise ConfigError("[verify] must be a table.", path=rel)
    unknown = sorted(set(table) - VERIFY_KEYS)
    if unknown:
        raise ConfigError(
            f"[verify] has an unknown key {', '.join(unknown)}.",
            hint='[verify] knows ignore = ["/path", "/dir/*", "/**/name"].',
            path=rel,
        )
    patterns = table.get("ignore", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError(
            "[verify] ignore must be a list of strings.",
            hint='Write e.g. ignore = ["/stamp", "/opt/app/build-info/*"].',
            path=rel,
        )
    for pattern in patterns:
        if reason := check_pattern(pattern):
            raise ConfigError(
                f"[verify] ignore has {pattern!r}: {reason}.",
                hint='Write e.g. ignore = ["/stamp", "/opt/app/build-info/*", "/**/*.log"].',
                path=rel,
            )
    return tuple(patterns)


def _secrets(table: object, rel: Path) -> dict[str, str]:
    """[secrets] id = "env:NAME" | "file:PATH": where BuildKit reads each build secret."""
    if not isinstance(table, dict):
        raise ConfigError("[secrets] must be a table.", path=rel)
    for secret_id, source in table.items():
        if (
            not SECRET_ID.match(secret_id)
            or not isinstance(source, str)
            or not (source.startswith(("env:", "file:")) and len(source.partition(":")[2]) > 0)
        ):
            raise ConfigError(
                f"[secrets] {secret_id} = {source!r} is not a secret source.",
                hint='Write id = "env:VARIABLE" or id = "file:/path"; the value itself never '
                "goes in the file.",
                path=rel,
            )
    return {str(k): str(v) for k, v in table.items()}


def _required_string(data: dict[str, object], key: str, rel: Path) -> str:
    value = data.get(key)
    if value is None:
        raise ConfigError(f"the key {key!r} is missing.", hint=f'Add {key} = "...".', path=rel)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string.", path=rel)
    return value.strip()
