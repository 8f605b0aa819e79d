"""Loading one line's whole state (config, increments, lock) and proving it consistent: a
built increment that no longer renders as it was built is drift, refused before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagectl.core import lockfile, sidecar
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import TemplateError
from imagectl.core.increments import discover_increments
from imagectl.core.model import ImageLine, Increment, Lock, RenderedHashes
from imagectl.core.planner import check_drift, check_numbering
from imagectl.core.rendercache import render_cache, shared_hash
from imagectl.core.rendering import inputs_hash, render_step


@dataclass(frozen=True, slots=True, kw_only=True)
class LineState:
    """A line as it is now: what is configured, what is on disk, what was built."""

    line: ImageLine
    increments: tuple[Increment, ...]
    lock: Lock
    lock_path: Path  # absolute


def load_state(layout: RepositoryLayout, line: ImageLine) -> LineState:
    """Read everything for `line` and refuse drift between disk and lock."""
    increments = discover_increments(layout, line.name)
    lock_path = layout.lock_path(line.name)
    lock = lockfile.read_lock(lock_path, line=line.name, repository=line.repository, base=line.base)
    state = LineState(line=line, increments=increments, lock=lock, lock_path=lock_path)
    by_number = {increment.number: increment for increment in increments}
    shared = shared_hash(layout)
    cache = render_cache(layout)
    rendered: dict[int, RenderedHashes] = {}
    for number, version in enumerate(lock.increment_versions, start=1):
        current = by_number.get(number)
        if current is None or current.path.as_posix() != version.increment:
            continue
        edited = current.source_hash != version.increment_hash
        if edited and not version.instructions_hash:
            continue  # recorded before instructions were hashed: any edit is drift
        if not edited and version.inputs_hash and version.inputs_hash == inputs_hash(
            layout, line, current, version=version.version, parent=version.parent,
            includes=version.includes,
        ):  # fmt: skip
            continue  # every input as recorded: it renders as it did, no need to render
        key = cache.key(
            line, current, version=version.version, parent=version.parent, shared=shared
        )
        known = cache.hashes.get(key)
        if known is None:
            try:
                step = render_step(
                    layout, line, current, version=version.version, parent=version.parent
                )
            except TemplateError:
                if edited:
                    continue  # an edited built increment that no longer renders: drift
                raise
            known = f"{step.dockerfile_hash} {step.instructions_hash}"
            cache.hashes.put(key, known)
            cache.bodies.put(key, step.text)
        dockerfile_hash, _, instructions = known.partition(" ")
        rendered[version.version] = RenderedHashes(
            dockerfile=dockerfile_hash, instructions=instructions
        )
    cache.save()
    # Drift first: a deleted or renumbered built increment is named as such, not as a gap.
    check_drift(line, lock, increments, rendered, lock_path.relative_to(layout.root).as_posix())
    check_numbering(line, increments)
    return state


def lock_files(layout: RepositoryLayout, line: str) -> tuple[Path, ...]:
    """Every file imagectl writes for `line` in lock/: the lock, its package manifests and its
    reference Dockerfile (what a CI shard of this line commits, and nothing else)."""
    lock = layout.lock_path(line)
    return (lock, sidecar.packages_path(lock), layout.reference_path(line))
