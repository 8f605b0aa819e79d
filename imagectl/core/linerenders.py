"""What a line's state renders to: its pending increments (checked before any build), a
version's exact Dockerfile, a shared fix in the place a back-port gives it, its tests, and
the reference Dockerfile (every increment as one from-scratch recipe)."""

from __future__ import annotations

import stat
from pathlib import Path

from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import ConfigError
from imagectl.core.labels import recorded_labels
from imagectl.core.linestate import LineState
from imagectl.core.lockfile import write_atomic
from imagectl.core.model import ImageLine, IncrementTest, Lock
from imagectl.core.planner import plan_line
from imagectl.core.positions import next_version, pending_positions, pinned_base, position_after
from imagectl.core.recipe import (
    check_increment,
    compose_dockerfile,
)
from imagectl.core.references import is_pinned, without_digest
from imagectl.core.rendercache import render_cache, shared_hash
from imagectl.core.rendering import (
    RenderedStep,
    cached_render,
    render_step,
    template_variables,
    where_of,
)
from imagectl.core.squash import SquashEntry, squash
from imagectl.core.templates import (
    decode_template,
    render_template,
)
from imagectl.core.withdrawals import parents


def render_pending(layout: RepositoryLayout, state: LineState) -> tuple[RenderedStep, ...]:
    """Render and check every increment not built yet (and its tests), as `build next --all`
    would build it, so that a mistake in the last one stops the first build, not the fifth."""
    plan = plan_line(state.line, state.lock, state.increments, all_versions=True)
    for step in plan.steps:
        for test in step.increment.tests:
            render_test(layout, state.line, test, version=step.version, parent=step.parent)
    return tuple(
        render_step(layout, state.line, step.increment, version=step.version, parent=step.parent)
        for step in plan.steps
    )


def render_test(
    layout: RepositoryLayout, line: ImageLine, test: IncrementTest, *, version: int, parent: str
) -> str:
    """The script a test runs: a template rendered with the vars of the version built from its
    increment, or the file as it is (UTF-8, LF line ends)."""
    path = layout.root / test.path
    if test.template:
        variables = template_variables(line, version=version, parent=parent)
        increments_dir = layout.increments_dir.resolve()
        return render_template(increments_dir, path.resolve(), variables)
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
        raw = path.read_bytes() if regular else b""
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror}).", path=test.path) from exc
    if not regular:  # a FIFO would block the read
        raise ConfigError("is not a regular file.", hint="A test is a text file.", path=test.path)
    return decode_template(raw, test.path)


def render_dockerfile(layout: RepositoryLayout, state: LineState, version: int | None) -> str:
    """The Dockerfile of `version` (default: the next one): as built, with the images the lock
    pinned, or as `build next` would build it now."""
    line, lock = state.line, state.lock
    wanted = version if version is not None else next_version(lock)
    if 1 <= wanted <= len(lock.versions):
        recorded = lock.versions[wanted - 1]
        increment = next(
            (i for i in state.increments if i.path.as_posix() == recorded.increment), None
        )
        if recorded.skipped:
            raise ConfigError(
                f"v{wanted} of {line.name} was skipped ({recorded.reason}); it has no Dockerfile.",
                hint=f"Render v{wanted - 1} or v{wanted + 1}.",
            )
        if recorded.checkpoint or increment is None:
            raise ConfigError(
                f"v{wanted} of {line.name} is a checkpoint (a one-layer copy of v{wanted - 1}); "
                "it was not built from a Dockerfile.",
                hint=f"Render v{wanted - 1} or another version built from an increment.",
            )
        step = render_step(layout, line, increment, version=wanted, parent=recorded.parent)
        pins = pins_of(recorded.images)
    else:
        plan = plan_line(line, lock, state.increments, all_versions=True)
        planned = next((s for s in plan.steps if s.version == wanted), None)
        if planned is None:
            last = plan.steps[-1].version if plan.steps else len(lock.versions)
            raise ConfigError(
                f"{line.name} has no v{wanted}: it has v1 to v{last} "
                f"({len(lock.versions)} built, {len(plan.steps)} pending).",
                hint=f"See `imagectl history {line.name}` and `imagectl plan {line.name}`.",
            )
        step = render_step(layout, line, planned.increment, version=wanted, parent=planned.parent)
        pins = {}
    return step.pinned(pins).text


def render_shared(layout: RepositoryLayout, state: LineState, fix: str) -> RenderedStep:
    """The shared file `fix` rendered and checked as the line's next increment would be."""
    line = state.line
    position = position_after(line, state.lock, state.increments)
    version, parent = position.version, position.parent
    variables = template_variables(line, version=version, parent=parent)
    increments_dir = layout.increments_dir.resolve()
    template = (layout.increments_dir / fix).resolve()
    shown = Path("increments") / fix
    text = render_template(increments_dir, template, variables)
    where = where_of(increments_dir, template, shown, variables)
    recipe = check_increment(text, shown, parent=parent, where=where)
    composed = compose_dockerfile(
        parent=parent, recipe=recipe, line=line.name, version=version, increment=shown
    )
    return RenderedStep(
        text=text,
        recipe=recipe,
        composed=composed,
        template=shown,
        where=where,
        parent=parent,
        version=version,
        line=line.name,
        increment=shown,
    )


def reference_text(layout: RepositoryLayout, state: LineState) -> str:
    """The line's reference Dockerfile: built increments as built, pending ones as planned."""
    line, lock = state.line, state.lock
    entries: list[SquashEntry] = []
    built = lock.increment_versions
    # A pending increment stands where `build next --all` will build it.
    pending = pending_positions(line, lock, state.increments)
    planned = {increment.number: position for increment, position in pending}
    shared = shared_hash(layout)
    stages, built_on = stage_versions(lock), parents(lock)
    tags = {v.tag: v.version for v in lock.built_versions}
    for increment in state.increments:
        recorded = built[increment.number - 1] if increment.number <= len(built) else None
        if recorded:
            version, parent = recorded.version, recorded.parent
            on = stages.get(built_on[recorded.version] or 0, "base")
        else:
            version, parent = planned[increment.number].version, planned[increment.number].parent
            on = stages.get(tags.get(without_digest(parent), -1), "")
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
                body=rendered.recipe.body,
                directives=rendered.recipe.directives,
                own_from=rendered.recipe.own_from,
                stages=rendered.recipe.stages,
                pins=pins_of(recorded.images) if recorded else {},
                escape=rendered.recipe.escape,
                labels=recorded_labels(line.name, recorded) if recorded else {},
                after=on,
            )
        )
    render_cache(layout).save()  # the next reference reads its renders back, not the templates
    return squash(
        line=line.name,
        path=layout.reference_path(line.name).relative_to(layout.root).as_posix(),
        base=pinned_base(line, lock),
        entries=tuple(entries),
        secrets=line.secrets,
    )


def stage_versions(lock: Lock) -> dict[int, str]:
    """Each version with an image -> the stage of the reference that holds its file system:
    its own for an increment's version, its parent's for a checkpoint (a one-layer copy)."""
    built_on = parents(lock)
    stages: dict[int, str] = {}
    for version in lock.built_versions:
        if version.checkpoint:
            stages[version.version] = stages.get(built_on[version.version] or 0, "base")
        else:
            stages[version.version] = f"v{version.version}"
    return stages


def pins_of(images: tuple[str, ...]) -> dict[str, str]:
    """The lock's pinned images ("ref@sha256:...") keyed by the reference the increment wrote."""
    return {without_digest(pin): pin for pin in images if is_pinned(pin)}


def write_reference(layout: RepositoryLayout, state: LineState) -> bool:
    """Bring the committed reference Dockerfile up to date; False when it already was."""
    path = layout.reference_path(state.line.name)
    text = reference_text(layout, state)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    return True
