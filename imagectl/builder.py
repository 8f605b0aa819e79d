"""Carrying out `build next`: build one version on its locked parent, tag it, record it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from imagectl import lockfile
from imagectl.config import RepositoryLayout, repository_of
from imagectl.errors import BuildError, BusyError, PlanError, TagConflictError
from imagectl.faults import pause_point
from imagectl.linestate import LineState, RenderedStep, render_step, write_reference
from imagectl.model import BuildStep, Lock, LockedVersion
from imagectl.packages import PackageDiff, diff_manifests, parse_dpkg_status, replay
from imagectl.planner import next_step
from imagectl.ports import Engine, Git, ImageInfo, Registry, RemoteImage
from imagectl.recipe import ComposedDockerfile, increment_line

Say = Callable[[str], None]
LAYER_LIMIT = 125  # moby's layer store: maxLayerDepth
LAYER_WARNING = 100
DPKG_STATUS = "/var/lib/dpkg/status"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltVersion:
    line: str
    version: int
    tag: str
    image_id: str
    adopted: bool  # the tag already named exactly this image (a rerun after a crash)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedParent:
    ref: str  # what FROM names
    digest: str  # registry digest, or the image id for an unpublished parent
    info: ImageInfo


@contextlib.contextmanager
def repository_lock(layout: RepositoryLayout, *, wait: float) -> Iterator[None]:
    """One build or publish at a time per repository; a second one waits `wait` s, then fails."""
    from filelock import FileLock, Timeout  # noqa: PLC0415

    layout.state_dir.mkdir(parents=True, exist_ok=True)
    path = layout.state_dir / "build.lock"
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait)
    except Timeout as exc:
        raise BusyError(
            "another imagectl build or publish is running in this repository.",
            hint=f"Wait for it to finish (or pass --wait SECONDS); the lock is {path}.",
        ) from exc
    try:
        yield
    finally:
        lock.release()


def build_line(
    layout: RepositoryLayout,
    state: LineState,
    *,
    all_versions: bool,
    engine: Engine,
    registry: Registry,
    git: Git,
    say: Say,
    output: Say,
) -> tuple[BuiltVersion, ...]:
    """Build the next version of the line (every pending one with `all_versions`)."""
    line = state.line
    built: list[BuiltVersion] = []
    if next_step(line, state.lock, state.increments) is not None:
        warn_if_base_moved(state, registry=registry, say=say)
    while (step := next_step(line, state.lock, state.increments)) is not None:
        result, lock = build_step(
            layout, state, step, engine=engine, registry=registry, git=git, say=say, output=output
        )
        state = LineState(
            line=line, increments=state.increments, lock=lock, lock_path=state.lock_path
        )
        built.append(result)
        if not all_versions:
            break
    return tuple(built)


def build_step(
    layout: RepositoryLayout,
    state: LineState,
    step: BuildStep,
    *,
    engine: Engine,
    registry: Registry,
    git: Git,
    say: Say,
    output: Say,
) -> tuple[BuiltVersion, Lock]:
    line, lock = state.line, state.lock
    parent = resolve_parent(state, step, engine=engine, registry=registry, say=say)
    if len(parent.info.layers) >= LAYER_LIMIT:
        raise PlanError(
            f"{parent.ref} already has {len(parent.info.layers)} layers, Docker's limit; no "
            "increment can go on top of it.",
            hint=f"Run `imagectl checkpoint {line.name}` to add a one-layer copy of it first.",
        )
    rendered = render_step(layout, line, step.increment, version=step.version, parent=parent.ref)
    pins = pin_images(rendered, engine=engine, registry=registry)
    remote = registry.lookup(step.tag)  # also proves the registry answers, before building
    commit = git.commit_of(step.increment.path)
    if commit == "uncommitted":
        say(
            f"{line.name}: warning: {step.increment.path.as_posix()} is not committed; the lock "
            'records commit = "uncommitted" for v{step.version}. Commit increments before '
            "building them, so that the lock names the commit they were built from."
        )
    say(
        f"{line.name}: building v{step.version} from {step.increment.path.as_posix()} "
        f"FROM {parent.ref}"
    )
    built = rendered.pinned(pins)
    with tempfile.TemporaryDirectory(prefix="imagectl-build-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(built.text, encoding="utf-8")
        if step.increment.is_folder:
            context = layout.root / step.increment.path
        else:
            context = Path(tmp) / "context"
            context.mkdir()
        try:
            image_id = engine.build(
                dockerfile=dockerfile, context=context, on_output=output, secrets=line.secrets
            )
        except BuildError as exc:
            raise _in_template(exc, rendered, built) from exc
    info = engine.inspect_image(image_id)
    if info is None:
        raise PlanError(f"the image {image_id} just built has vanished from the engine.")
    _check_built_on_parent(step, parent, info)
    _check_layer_budget(step, info, say=say)
    adopted = _check_tag_free(step, info, remote, engine=engine)
    if not adopted:
        engine.tag(image_id, step.tag)
    pause_point("after-tag")  # tagged, nothing recorded: a rerun must adopt this tag
    # Packages first: a crash before the lock write leaves an entry the rerun overwrites.
    record_packages(
        state, version=step.version, image=image_id, parent=parent.info.image_id, engine=engine
    )
    pause_point("after-packages")  # the sidecar has v(n+1), the lock does not
    version = LockedVersion(
        version=step.version,
        tag=step.tag,
        increment=step.increment.path.as_posix(),
        summary=step.increment.summary,
        increment_hash=step.increment.source_hash,
        dockerfile_hash=rendered.dockerfile_hash,
        instructions_hash=rendered.instructions_hash,
        context_hash=step.increment.context_hash,
        parent=parent.ref,
        parent_digest=parent.digest,
        images=tuple(pins[image] for image in rendered.recipe.images),
        image_id=image_id,
        layers=len(info.layers),
        size=info.size,
        builder=engine.builder,
        built_at=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        commit=commit,
        # A tag already in the registry with this very image counts as published.
        digest=remote.digest if remote is not None and adopted else "",
    )
    if step.parent_is_base:
        lock = lock.with_base(
            digest=parent.digest if parent.digest != parent.info.image_id else "",
            image_id=parent.info.image_id,
        )
    new_lock = lock.with_version(version)
    lockfile.write_lock(state.lock_path, new_lock)
    # The reference follows the lock; it is derived, so a crash before this line loses nothing
    # that `imagectl squash` cannot write again.
    write_reference(layout, replace(state, lock=new_lock))
    say(
        f"{line.name}: {'adopted' if adopted else 'tagged'} {step.tag} "
        f"({image_id.removeprefix('sha256:')[:12]}, {len(info.layers)} layers)"
    )
    return BuiltVersion(
        line=line.name, version=step.version, tag=step.tag, image_id=image_id, adopted=adopted
    ), new_lock


def pin_images(rendered: RenderedStep, *, engine: Engine, registry: Registry) -> dict[str, str]:
    """Each image the increment names besides its parent, by registry digest: a moved tag is
    never followed silently, and the lock and the reference say exactly what was used."""
    pins: dict[str, str] = {}
    for image in rendered.recipe.images:
        if "@" in image:
            pins[image] = image
            continue
        remote = registry.lookup(image)
        digest = remote.digest if remote is not None else ""
        if not digest:
            local = engine.inspect_image(image)
            digest = local.digest_in(repository_of(image)) if local is not None else ""
        if not digest:
            raise PlanError(
                f"the increment names the image {image}, which no registry has, so it cannot "
                "be pinned by digest.",
                hint="Push that image to a registry first (or name it by digest, "
                f"{image}@sha256:...); imagectl builds only on images it can pin.",
                path=rendered.template,
            )
        pins[image] = f"{image}@{digest}"
    return pins


def _in_template(exc: BuildError, rendered: RenderedStep, built: ComposedDockerfile) -> BuildError:
    """The build error, naming the template line of the failing instruction when BuildKit said
    which Dockerfile line failed."""
    if exc.dockerfile_line is None:
        return exc
    line = increment_line(built, exc.dockerfile_line)
    if line is None:
        return exc
    return BuildError(
        f"{rendered.where(line)}: {exc.message}",
        hint=exc.hint,
        path=rendered.template,
        details=exc.details,
        dockerfile_line=exc.dockerfile_line,
    )


def record_packages(
    state: LineState, *, version: int, image: str, parent: str, engine: Engine
) -> PackageDiff:
    """Store what `version` changed in the Debian package set against its parent."""
    path = lockfile.packages_path(state.lock_path)
    base, deltas = lockfile.read_packages(path)
    complete = all(v in deltas for v in range(1, version)) and (version > 1 or base)
    if version == 1:
        base = manifest_of(parent, engine=engine)
        parent_manifest = base
    elif complete:
        parent_manifest = replay(base, deltas, version - 1)
    else:  # versions built before imagectl recorded packages: ask the parent image itself
        parent_manifest = manifest_of(parent, engine=engine)
    current = manifest_of(image, engine=engine)
    diff = diff_manifests(parent_manifest, current)
    added = set(diff.added) | {
        f"{c.name.rpartition(':')[0]} {c.new} {c.name.rpartition(':')[2]}" for c in diff.changed
    }
    removed = set(diff.removed) | {
        f"{c.name.rpartition(':')[0]} {c.old} {c.name.rpartition(':')[2]}" for c in diff.changed
    }
    deltas = {v: d for v, d in deltas.items() if v < version}
    deltas[version] = (tuple(sorted(added)), tuple(sorted(removed)))
    lockfile.write_packages(path, line=state.line.name, base=base, deltas=deltas)
    return diff


def manifest_of(image: str, *, engine: Engine) -> tuple[str, ...]:
    """The image's installed Debian packages; empty for an image without dpkg."""
    status = engine.read_file(image, DPKG_STATUS)
    return parse_dpkg_status(status.decode(errors="replace")) if status else ()


def resolve_parent(
    state: LineState, step: BuildStep, *, engine: Engine, registry: Registry, say: Say
) -> ResolvedParent:
    """Find the locked parent in the engine (pulling it if only the registry has it)."""
    if step.parent_is_base:
        return _resolve_base(state, step, engine=engine, registry=registry, say=say)
    return locate_head(state, engine=engine)


def locate_head(state: LineState, *, engine: Engine) -> ResolvedParent:
    """The newest locked version in the engine, pulled if only the registry has it, and the
    reference that names it (its local tag, or tag@digest once published)."""
    head = state.lock.head
    if head is None:
        raise PlanError(
            f"{state.line.name} has no version yet.",
            hint=f"Build it first: imagectl build next {state.line.name}.",
        )
    tagged = engine.inspect_image(head.tag)
    if tagged is not None and tagged.image_id == head.image_id:
        # The common case in one engine call: the tag still names the locked image.
        ref = f"{head.tag}@{head.digest}" if head.digest else head.tag
        return ResolvedParent(ref=ref, digest=head.digest or head.image_id, info=tagged)
    info = engine.inspect_image(head.image_id)
    if info is None and head.digest:
        engine.pull(f"{head.tag}@{head.digest}")
        info = engine.inspect_image(head.image_id)
    if info is None:
        raise PlanError(
            f"the lock records v{head.version} as image {head.image_id}, which is neither in "
            f"the engine nor (published) in the registry.",
            hint="Pull or load that image (e.g. from the machine that built it), or publish it "
            "from there; imagectl will not build on anything else.",
            path=state.lock_path,
        )
    if head.digest:
        return ResolvedParent(ref=f"{head.tag}@{head.digest}", digest=head.digest, info=info)
    if tagged is None:
        engine.tag(head.image_id, head.tag)  # restoring a removed tag is not overwriting one
    elif tagged.image_id != head.image_id:
        raise TagConflictError(
            f"the local tag {head.tag} names {tagged.image_id}, but the lock records "
            f"{head.image_id} for v{head.version}.",
            hint=f"Someone re-tagged it; restore it with `docker tag {head.image_id} {head.tag}` "
            "after checking what the other image is.",
            path=state.lock_path,
        )
    return ResolvedParent(ref=head.tag, digest=head.image_id, info=info)


def warn_if_base_moved(state: LineState, *, registry: Registry, say: Say) -> None:
    """Report, never follow, a base tag that now names another image than the pinned one."""
    line, lock = state.line, state.lock
    if not lock.base_digest or "@" in line.base:
        return
    current = registry.lookup(line.base)
    if current is None or current.digest != lock.base_digest:
        now = current.digest if current else "nothing"
        say(
            f"{line.name}: warning: the base tag {line.base} now names {now}, but this line is "
            f"pinned to {lock.base_digest} (recorded in {state.lock_path.name}); it stays on "
            "the pinned base. To move to the new base, start a new line."
        )


def _resolve_base(
    state: LineState, step: BuildStep, *, engine: Engine, registry: Registry, say: Say
) -> ResolvedParent:
    line, lock = state.line, state.lock
    base_name = line.base.split("@", 1)[0]
    repository = repository_of(base_name)
    pinned = step.parent
    info = engine.inspect_image(pinned)
    if info is None:
        remote = registry.lookup(pinned)
        if remote is not None:
            engine.pull(pinned)
            info = engine.inspect_image(pinned)
    if info is None:
        raise PlanError(
            f"the base image {pinned} is neither in the engine nor in the registry.",
            hint="Build or push it first (scripts/engine up makes the example bases), or fix "
            "`base` in the line file.",
            path=line.config_path,
        )
    if lock.base_image_id and not lock.base_digest and info.image_id != lock.base_image_id:
        raise PlanError(
            f"the base tag {base_name} now names {info.image_id}, but this line is pinned to "
            f"{lock.base_image_id}.",
            hint="Restore the pinned base image, or start a new line on the new base.",
            path=state.lock_path,
        )
    digest = lock.base_digest or _digest_from_pin(pinned) or info.digest_in(repository)
    if not digest:
        remote_base = registry.lookup(base_name)
        digest = remote_base.digest if remote_base is not None else ""
        if digest and info.digest_in(repository) not in ("", digest):
            digest = ""  # the registry's tag is another image than the local one
    if digest:
        ref = f"{base_name}@{digest}"
        return ResolvedParent(ref=ref, digest=digest, info=info)
    # Only the engine has this base: FROM its tag; the layer check proves what was used.
    return ResolvedParent(ref=base_name, digest=info.image_id, info=info)


def _check_layer_budget(step: BuildStep, info: ImageInfo, *, say: Say) -> None:
    layers = len(info.layers)
    if layers > LAYER_LIMIT:
        raise PlanError(
            f"v{step.version} would have {layers} layers; Docker refuses images deeper than "
            f"{LAYER_LIMIT} (`max depth exceeded`). Nothing was tagged or recorded.",
            hint=f"Run `imagectl checkpoint {step.line}` to add a one-layer copy of the newest "
            "version, then build again on top of it.",
        )
    if layers >= LAYER_WARNING:
        say(
            f"{step.line}: warning: v{step.version} has {layers} of at most {LAYER_LIMIT} "
            f"layers; run `imagectl checkpoint {step.line}` soon."
        )


def _check_built_on_parent(step: BuildStep, parent: ResolvedParent, info: ImageInfo) -> None:
    expected = parent.info.layers
    if info.layers[: len(expected)] != expected:
        raise PlanError(
            f"v{step.version} ({info.image_id}) was not built on its locked parent {parent.ref}: "
            "its layers do not start with the parent's layers. Nothing was tagged or recorded.",
            hint="Check that the parent tag in the engine is the locked image "
            "(docker image inspect), then build again.",
        )


def _check_tag_free(
    step: BuildStep, info: ImageInfo, remote: RemoteImage | None, *, engine: Engine
) -> bool:
    """True when the tag already names this very image; raise when it names another."""
    local = engine.inspect_image(step.tag)
    if local is not None and local.image_id != info.image_id:
        raise TagConflictError(
            f"the tag {step.tag} already exists in the engine as {local.image_id}; the image "
            f"just built is {info.image_id}. Nothing was re-tagged and the lock is unchanged.",
            hint="imagectl never overwrites a tag. If it was left by an interrupted build, "
            f"remove it (docker rmi {step.tag}) and build again; otherwise find out who made it.",
        )
    if remote is not None:
        if remote.config_digest != info.image_id:
            raise TagConflictError(
                f"the tag {step.tag} already exists in the registry as {remote.digest} (image "
                f"{remote.config_digest}); the image just built is {info.image_id}. Nothing was "
                "tagged and the lock is unchanged.",
                hint="imagectl never overwrites a tag. Someone published this version: pull the "
                "lockfile that records it (git pull) before building.",
            )
        return True
    return local is not None


def _digest_from_pin(reference: str) -> str:
    return reference.split("@", 1)[1] if "@" in reference else ""
