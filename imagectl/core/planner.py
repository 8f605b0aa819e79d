"""Pure planning: is what's on disk consistent with the lock, and what is built next."""

from __future__ import annotations

from collections.abc import Mapping

from imagectl.core.errors import ConfigError, DriftError
from imagectl.core.model import (
    BuildStep,
    ImageLine,
    Increment,
    LinePlan,
    Lock,
    LockedVersion,
    RenderedHashes,
)
from imagectl.core.positions import pending_positions


def check_numbering(line: ImageLine, increments: tuple[Increment, ...]) -> None:
    """Increments must be numbered 0001, 0002, ... with no gap and no duplicate."""
    seen: dict[int, Increment] = {}
    for increment in increments:
        if increment.number in seen:
            raise ConfigError(
                f"two increments share number {increment.number:04d}: "
                f"{seen[increment.number].path.name} and {increment.path.name}.",
                hint="Each number is used once; give the newer one the next free number.",
                path=increment.path.parent,
            )
        seen[increment.number] = increment
    for expected, increment in enumerate(increments, start=1):
        if increment.number != expected:
            raise ConfigError(
                f"increment numbering has a gap: {increment.path.name} follows "
                f"{expected - 1:04d}, expected {expected:04d}.",
                hint=f"Renumber it to {expected:04d}-... (only if it was never built).",
                path=increment.path.parent,
            )


def check_drift(
    line: ImageLine,
    lock: Lock,
    increments: tuple[Increment, ...],
    rendered_hashes: Mapping[int, RenderedHashes],
    lock_path: str,
) -> None:
    """Refuse when a built version's increment, or what it renders to, has changed."""
    if lock.versions:
        _check_line_unmoved(line, lock, lock_path)
    by_number = {increment.number: increment for increment in increments}
    for number, version in enumerate(lock.increment_versions, start=1):
        current = _built_increment(number, version, by_number.get(number), increments)
        rendered = rendered_hashes.get(version.version)
        if current.source_hash != version.increment_hash:
            if not _same_instructions(current, version, rendered):
                raise DriftError(
                    f"was edited after v{version.version} was built from it (recorded "
                    f"{_short(version.increment_hash)}, now {_short(current.source_hash)}), and "
                    "the edit changes what it instructs.",
                    hint=f"Restore it ({_restore(version)}) and add a new increment instead of "
                    f"editing {current.name}. Comments and whitespace may be edited freely.",
                    path=current.path,
                )
        elif rendered is not None and not _renders_same(version, rendered):
            raise DriftError(
                f"renders differently than when v{version.version} was built (Dockerfile "
                f"{_short(version.dockerfile_hash)}, now {_short(rendered.dockerfile)}): a shared "
                f"snippet it includes or a [vars] value in {line.config_path} changed.",
                hint="Restore the snippet or value, and put the change in a new increment "
                "(e.g. a new file under increments/_shared/).",
                path=current.path,
            )


def _check_line_unmoved(line: ImageLine, lock: Lock, lock_path: str) -> None:
    if lock.repository != line.repository:
        raise DriftError(
            f"the lock {lock_path} records repository {lock.repository!r}, but the line file "
            f"now says {line.repository!r}.",
            hint="A line's repository cannot move once built: restore it, or start a new line.",
            path=line.config_path,
        )
    if lock.base != line.base:
        raise DriftError(
            f"the lock {lock_path} records base {lock.base!r}, but the line file now says "
            f"{line.base!r}.",
            hint="A line's base cannot change once built (v1 was built on the pinned base): "
            "restore it, or start a new line on the new base.",
            path=line.config_path,
        )


def _built_increment(
    number: int,
    version: LockedVersion,
    current: Increment | None,
    increments: tuple[Increment, ...],
) -> Increment:
    """The increment a built version came from, still under its name; else why not."""
    if current is not None and current.path.as_posix() == version.increment:
        return current
    moved = next(
        (
            i
            for i in increments
            if i.source_hash == version.increment_hash and i.path.as_posix() != version.increment
        ),
        None,
    )
    if moved is not None:
        raise DriftError(
            f"v{version.version} was built from {version.increment}, which is now "
            f"{moved.path.as_posix()} (renamed or renumbered).",
            hint=f"Rename it back to {version.increment}; built increments keep their "
            "names and numbers. New work goes into a new increment.",
            path=version.increment,
        )
    if current is None:
        raise DriftError(
            f"v{version.version} was built from {version.increment}, which no longer exists.",
            hint=f"Built increments are history: restore it from git ({_restore(version)}). "
            "To change the image, add a new increment.",
            path=version.increment,
        )
    raise DriftError(
        f"v{version.version} was built from {version.increment}, but increment "
        f"{number:04d} is now {current.path.as_posix()} (renamed or renumbered).",
        hint=f"Restore the original name; new work goes into increment {len(increments) + 1:04d}.",
        path=current.path,
    )


def _renders_same(version: LockedVersion, rendered: RenderedHashes) -> bool:
    if rendered.dockerfile == version.dockerfile_hash:
        return True
    return bool(version.instructions_hash) and rendered.instructions == version.instructions_hash


def _same_instructions(
    current: Increment, version: LockedVersion, rendered: RenderedHashes | None
) -> bool:
    """An edited built increment that instructs exactly what it did (a comment, whitespace)."""
    return (
        rendered is not None
        and bool(version.instructions_hash)
        and rendered.instructions == version.instructions_hash
        and current.context_hash == version.context_hash
    )


def _restore(version: LockedVersion) -> str:
    """The git command that brings back the increment as it was built."""
    if version.commit and version.commit != "uncommitted":
        return f"git checkout {version.commit[:12]} -- {version.increment}"
    return f"git checkout -- {version.increment}"


def next_step(line: ImageLine, lock: Lock, increments: tuple[Increment, ...]) -> BuildStep | None:
    """The one version `build next` makes now, or None when every increment is built."""
    steps = pending_steps(line, lock, increments)
    return steps[0] if steps else None


def pending_steps(
    line: ImageLine, lock: Lock, increments: tuple[Increment, ...]
) -> tuple[BuildStep, ...]:
    """Every version `build next --all` makes, oldest first, each where pending_positions says."""
    return tuple(
        BuildStep(
            line=line.name,
            version=position.version,
            tag=position.tag,
            increment=increment,
            parent=position.parent,
            parent_is_base=position.parent_is_base,
        )
        for increment, position in pending_positions(line, lock, increments)
    )


def plan_line(
    line: ImageLine, lock: Lock, increments: tuple[Increment, ...], *, all_versions: bool
) -> LinePlan:
    """Every step `build next` (or `build next --all`) would take, without building."""
    steps = pending_steps(line, lock, increments)
    return LinePlan(
        line=line.name,
        built=len(lock.versions),
        available=len(increments),
        pending=len(increments) - len(lock.increment_versions),
        steps=steps if all_versions else steps[:1],
        deleted_tests=deleted_tests(lock, increments),
        repository=line.repository,
        unpublished=tuple(v.version for v in pending_publication(lock)),
        withdrawn=tuple((v.version, v.withdrawn_reason) for v in lock.versions if v.withdrawn),
    )


def deleted_tests(lock: Lock, increments: tuple[Increment, ...]) -> tuple[str, ...]:
    """Tests the lock records as run on a version, no longer on disk. Editing a test is not
    drift (the next run uses the new text), and neither is deleting one; but it is reported."""
    present = {test.name for increment in increments for test in increment.tests}
    recorded = dict.fromkeys(test.name for v in lock.versions for test in v.tests)
    return tuple(name for name in recorded if name not in present)


def pending_publication(lock: Lock) -> tuple[LockedVersion, ...]:
    """The built versions without a registry digest, oldest first (the publish plan); skipped
    versions have nothing to publish."""
    return tuple(version for version in lock.built_versions if not version.digest)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]
