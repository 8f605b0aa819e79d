"""Where a version not built yet stands: its number, its tag and the parent its FROM names."""

from __future__ import annotations

from dataclasses import dataclass

from imagectl.core.errors import ConfigError
from imagectl.core.model import ImageLine, Increment, Lock, LockedVersion
from imagectl.core.references import is_pinned, pinned
from imagectl.core.withdrawals import newest_kept


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A pending version as `build next --all` builds it: the planner, the reference, `render`
    and back-ports all take it from here, so a `{{ parent }}` renders the same in each."""

    version: int
    tag: str
    parent: str  # what FROM names; for v1 the base before the build resolves its digest
    parent_is_base: bool


def pending_positions(
    line: ImageLine, lock: Lock, increments: tuple[Increment, ...]
) -> tuple[tuple[Increment, Position], ...]:
    """Each increment not built yet, oldest first, with where it stands."""
    pending = increments[len(lock.increment_versions) :]
    return tuple(zip(pending, _positions(line, lock, len(pending)), strict=True))


def position_after(line: ImageLine, lock: Lock, increments: tuple[Increment, ...]) -> Position:
    """Where an increment added after every one on disk would stand (a back-ported fix)."""
    pending = max(0, len(increments) - len(lock.increment_versions))
    return _positions(line, lock, pending + 1)[-1]


def _positions(line: ImageLine, lock: Lock, count: int) -> tuple[Position, ...]:
    """The `count` versions after the lock. Numbers follow every recorded version, skipped
    ones too (a burned number is never reused); the first builds on the newest version with
    an image (a skipped one has none) or on the base, each later one on the one just built.
    A line with `[withdraw] build_on = "kept"` builds the first on its newest version that is
    not withdrawn instead: the chain forks there."""
    head = build_parent(line, lock)
    parent = pinned_base(line, lock) if head is None else head_reference(head)
    first = next_version(lock)
    positions: list[Position] = []
    for version in range(first, first + count):
        tag = line.tag_for(version)
        on_base = head is None and version == first
        positions.append(Position(version=version, tag=tag, parent=parent, parent_is_base=on_base))
        parent = tag  # just built, not published yet: by tag, as the build finds it
    return tuple(positions)


def build_parent(line: ImageLine, lock: Lock) -> LockedVersion | None:
    """The version the next one is built on; None: the base (nothing built yet)."""
    if not line.build_on_kept or lock.head is None or not lock.head.withdrawn:
        return lock.head
    kept = newest_kept(lock)
    if kept is None:
        raise ConfigError(
            f"every version of {line.name} is withdrawn, and its line file says "
            '[withdraw] build_on = "kept": there is no version to build the next one on.',
            hint="Take a withdrawal back (imagectl withdraw LINE VERSION --undo), or remove "
            "build_on from [withdraw] to build the fix on the newest version.",
            path=line.config_path,
        )
    return kept


def next_version(lock: Lock) -> int:
    """The number the next recorded version takes, whether built, checkpointed or skipped:
    after every recorded one, skipped ones too (a burned number is never reused)."""
    return len(lock.versions) + 1


def head_reference(head: LockedVersion) -> str:
    """How the next build names a built version: pinned by registry digest once published."""
    return pinned(head.tag, head.digest)


def pinned_base(line: ImageLine, lock: Lock) -> str:
    """The base reference pinned by its recorded registry digest, when there is one."""
    if is_pinned(line.base):
        return line.base
    return pinned(line.base, lock.base_digest)
