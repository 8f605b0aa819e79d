"""Loading one line's whole state (config, increments, lock) and proving it consistent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagectl import lockfile
from imagectl.config import RepositoryLayout
from imagectl.increments import discover_increments
from imagectl.lockfile import write_atomic
from imagectl.model import ImageLine, Increment, Lock
from imagectl.planner import check_drift, check_numbering, pinned_base
from imagectl.recipe import check_increment_body, compose_dockerfile, hash_text
from imagectl.rendercache import render_cache, shared_hash
from imagectl.squash import SquashEntry, squash
from imagectl.templating import render_template


@dataclass(frozen=True, slots=True, kw_only=True)
class LineState:
    """A line as it is now: what is configured, what is on disk, what was built."""

    line: ImageLine
    increments: tuple[Increment, ...]
    lock: Lock
    lock_path: Path  # absolute


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedStep:
    body: str  # the increment's rendered instructions
    dockerfile: str  # FROM parent + body, what is built
    dockerfile_hash: str


def load_state(layout: RepositoryLayout, line: ImageLine) -> LineState:
    """Read everything for `line` and refuse drift between disk and lock."""
    increments = discover_increments(layout, line.name)
    lock_path = layout.lock_path(line.name)
    lock = lockfile.read_lock(lock_path, line=line.name, repository=line.repository, base=line.base)
    state = LineState(line=line, increments=increments, lock=lock, lock_path=lock_path)
    by_number = {increment.number: increment for increment in increments}
    shared = shared_hash(layout)
    cache = render_cache(layout)
    rendered = {}
    for number, version in enumerate(lock.increment_versions, start=1):
        current = by_number.get(number)
        if (
            current is not None
            and current.path.as_posix() == version.increment
            and current.source_hash == version.increment_hash
        ):
            key = cache.key(
                line, current, version=version.version, parent=version.parent, shared=shared
            )
            known = cache.hashes.get(key)
            if known is None:
                step = render_step(
                    layout, line, current, version=version.version, parent=version.parent
                )
                known = step.dockerfile_hash
                cache.hashes.put(key, known)
                cache.bodies.put(key, step.body)
            rendered[version.version] = known
    cache.save()
    # Drift first: a deleted or renumbered built increment is named as such, not as a gap.
    check_drift(line, lock, increments, rendered, lock_path.relative_to(layout.root).as_posix())
    check_numbering(line, increments)
    return state


def template_variables(line: ImageLine, *, version: int, parent: str) -> dict[str, object]:
    return {
        **line.vars,
        "line": line.name,
        "version": version,
        "parent": parent,
        "repository": line.repository,
        "base": line.base,
    }


def render_step(
    layout: RepositoryLayout, line: ImageLine, increment: Increment, *, version: int, parent: str
) -> RenderedStep:
    """Render one increment for `version` on top of `parent` and compose its Dockerfile."""
    body = render_template(
        layout.increments_dir.resolve(),
        (layout.root / increment.template).resolve(),
        template_variables(line, version=version, parent=parent),
    )
    check_increment_body(body, increment.template)
    dockerfile = compose_dockerfile(
        parent=parent, body=body, line=line.name, version=version, increment=increment.path
    )
    return RenderedStep(body=body, dockerfile=dockerfile, dockerfile_hash=hash_text(dockerfile))


def cached_render(
    layout: RepositoryLayout,
    line: ImageLine,
    increment: Increment,
    *,
    version: int,
    parent: str,
    shared: str,
) -> RenderedStep:
    """render_step, answered from the render cache when every input is unchanged."""
    cache = render_cache(layout)
    key = cache.key(line, increment, version=version, parent=parent, shared=shared)
    body = cache.bodies.get(key)
    if body is None:
        step = render_step(layout, line, increment, version=version, parent=parent)
        cache.bodies.put(key, step.body)
        cache.hashes.put(key, step.dockerfile_hash)
        return step
    dockerfile = compose_dockerfile(
        parent=parent, body=body, line=line.name, version=version, increment=increment.path
    )
    return RenderedStep(body=body, dockerfile=dockerfile, dockerfile_hash=hash_text(dockerfile))


def reference_text(layout: RepositoryLayout, state: LineState) -> str:
    """The line's reference Dockerfile: built increments as built, pending ones as planned."""
    line, lock = state.line, state.lock
    entries: list[SquashEntry] = []
    built = lock.increment_versions
    shared = shared_hash(layout)
    for increment in state.increments:
        recorded = built[increment.number - 1] if increment.number <= len(built) else None
        # A pending increment gets the version and parent that `build next --all` would give it.
        version = (
            recorded.version if recorded else len(lock.versions) + increment.number - len(built)
        )
        if recorded:
            parent = recorded.parent
        elif version == 1:
            parent = pinned_base(line, lock)
        else:
            parent = line.tag_for(version - 1)
        rendered = cached_render(
            layout, line, increment, version=version, parent=parent, shared=shared
        )
        entries.append(
            SquashEntry(
                version=version,
                tag=line.tag_for(version),
                increment=increment.path.as_posix(),
                commit=recorded.commit if recorded else "",
                built=recorded is not None,
                is_folder=increment.is_folder,
                body=rendered.body,
            )
        )
    return squash(
        line=line.name,
        path=reference_path(layout, line.name).relative_to(layout.root).as_posix(),
        base=pinned_base(line, lock),
        entries=tuple(entries),
    )


def reference_path(layout: RepositoryLayout, line: str) -> Path:
    return layout.lock_dir / f"{line}.reference.Dockerfile"


def write_reference(layout: RepositoryLayout, state: LineState) -> bool:
    """Bring the committed reference Dockerfile up to date; False when it already was."""
    path = reference_path(layout, state.line.name)
    text = reference_text(layout, state)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    return True
