"""Loading one line's whole state (config, increments, lock) and proving it consistent."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from imagectl.core import lockfile, sidecar
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import ConfigError, TemplateError
from imagectl.core.increments import discover_increments
from imagectl.core.labels import recorded_labels
from imagectl.core.lockfile import write_atomic
from imagectl.core.model import ImageLine, Increment, IncrementTest, Lock, RenderedHashes
from imagectl.core.planner import check_drift, check_numbering, plan_line
from imagectl.core.positions import next_version, pending_positions, pinned_base, position_after
from imagectl.core.recipe import (
    ComposedDockerfile,
    IncrementRecipe,
    Where,
    check_increment,
    compose_dockerfile,
    hash_text,
    instructions_hash,
    rendered_line,
)
from imagectl.core.references import is_pinned, without_digest
from imagectl.core.rendercache import line_inputs, render_cache, shared_hash
from imagectl.core.squash import SquashEntry, squash
from imagectl.core.templates import (
    decode_template,
    describe_line,
    render_template,
    render_tracked,
    template_lines,
)
from imagectl.core.withdrawals import parents


@dataclass(frozen=True, slots=True, kw_only=True)
class LineState:
    """A line as it is now: what is configured, what is on disk, what was built."""

    line: ImageLine
    increments: tuple[Increment, ...]
    lock: Lock
    lock_path: Path  # absolute


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedStep:
    text: str  # the increment as rendered, directives included
    recipe: IncrementRecipe  # the same, checked and split
    composed: ComposedDockerfile  # directives, header, FROM parent, body: what is hashed
    template: Path  # relative to the repository root, for errors
    where: Where  # names the template line a rendered line came from
    parent: str
    version: int
    line: str
    increment: Path  # relative to the repository root
    includes: tuple[str, ...] = ()  # the snippets the render loaded (names under increments/)
    inputs: str = ""  # inputs_hash() of this render; "" when answered from the render cache

    def pinned(self, pins: Mapping[str, str]) -> ComposedDockerfile:
        """The Dockerfile that is built: the images the increment names, by digest."""
        return compose_dockerfile(
            parent=self.parent,
            recipe=self.recipe,
            line=self.line,
            version=self.version,
            increment=self.increment,
            pins=pins,
        )

    @property
    def dockerfile(self) -> str:
        return self.composed.text

    @property
    def dockerfile_hash(self) -> str:
        return hash_text(self.composed.text)

    @property
    def instructions_hash(self) -> str:
        return instructions_hash(self.composed.text)

    @property
    def hashes(self) -> RenderedHashes:
        return RenderedHashes(dockerfile=self.dockerfile_hash, instructions=self.instructions_hash)


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
    """Render one increment for `version` on top of `parent`, check it, compose its Dockerfile."""
    variables = template_variables(line, version=version, parent=parent)
    increments_dir = layout.increments_dir.resolve()
    template = (layout.root / increment.template).resolve()
    text, includes = render_tracked(increments_dir, template, variables)
    step = _checked(
        line,
        increment,
        text,
        version=version,
        parent=parent,
        where=_where(increments_dir, template, increment.template, variables),
    )
    inputs = inputs_hash(layout, line, increment, version=version, parent=parent, includes=includes)
    # Kept for the reference Dockerfile written after the build, which then reads it back
    # instead of rendering the new increment a second time (saved with the cache).
    cache = render_cache(layout)
    key = cache.key(line, increment, version=version, parent=parent, shared=shared_hash(layout))
    cache.bodies.put(key, text)
    cache.hashes.put(key, f"{step.dockerfile_hash} {step.instructions_hash}")
    return replace(step, includes=includes, inputs=inputs)


def inputs_hash(
    layout: RepositoryLayout,
    line: ImageLine,
    increment: Increment,
    *,
    version: int,
    parent: str,
    includes: tuple[str, ...],
) -> str:
    """One hash over everything a render of `increment` depends on: its files (the source
    hash), the line's settings and vars, version and parent, and each snippet it loaded (a
    missing one as missing). Equal hashes mean an equal render, so a built increment whose
    recorded hash still holds needs no render to prove it did not drift."""
    digest = hashlib.sha256(b"imagectl inputs 1\0")
    for part in (line_inputs(line), increment.source_hash, str(version), parent):
        digest.update(part.encode() + b"\0")
    for name in includes:
        digest.update(f"{name}\0{_snippet_digest(layout.increments_dir / name)}\0".encode())
    return f"sha256:{digest.hexdigest()}"


_SNIPPETS: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime) -> digest


def _snippet_digest(path: Path) -> str:
    """A snippet's content hash, remembered per file version within the process."""
    try:
        info = path.stat()
    except OSError:
        return "missing"
    key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
    found = _SNIPPETS.get(key)
    if found is None:
        try:
            found = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            found = "unreadable"
        _SNIPPETS[key] = found
    return found


def _where(
    increments_dir: Path, template: Path, shown: Path, variables: dict[str, object]
) -> Where:
    """Names the template line of a rendered line; the map is only made when an error needs it."""

    def describe(rendered: int) -> str:
        return describe_line(shown, template_lines(increments_dir, template, variables), rendered)

    return describe


def _checked(
    line: ImageLine, increment: Increment, text: str, *, version: int, parent: str, where: Where
) -> RenderedStep:
    recipe = check_increment(text, increment.template, parent=parent, where=where)
    composed = compose_dockerfile(
        parent=parent, recipe=recipe, line=line.name, version=version, increment=increment.path
    )
    return RenderedStep(
        text=text,
        recipe=recipe,
        composed=composed,
        template=increment.template,
        where=where,
        parent=parent,
        version=version,
        line=line.name,
        increment=increment.path,
    )


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
    text = cache.bodies.get(key)
    if text is None:
        step = render_step(layout, line, increment, version=version, parent=parent)
        cache.bodies.put(key, step.text)
        cache.hashes.put(key, f"{step.dockerfile_hash} {step.instructions_hash}")
        return step
    return _checked(line, increment, text, version=version, parent=parent, where=rendered_line)


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
        path=reference_path(layout, line.name).relative_to(layout.root).as_posix(),
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


def reference_path(layout: RepositoryLayout, line: str) -> Path:
    return layout.lock_dir / f"{line}.reference.Dockerfile"


def lock_files(layout: RepositoryLayout, line: str) -> tuple[Path, ...]:
    """Every file imagectl writes for `line` in lock/: the lock, its package manifests and its
    reference Dockerfile (what a CI shard of this line commits, and nothing else)."""
    lock = layout.lock_path(line)
    return (lock, sidecar.packages_path(lock), reference_path(layout, line))


def write_reference(layout: RepositoryLayout, state: LineState) -> bool:
    """Bring the committed reference Dockerfile up to date; False when it already was."""
    path = reference_path(layout, state.line.name)
    text = reference_text(layout, state)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    return True


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
    where = _where(increments_dir, template, shown, variables)
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
