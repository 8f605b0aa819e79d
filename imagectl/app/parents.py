"""Finding a version's locked parent in the engine: the pinned base, or the newest version."""

from __future__ import annotations

from dataclasses import dataclass

from imagectl.core.errors import PlanError
from imagectl.core.linestate import LineState
from imagectl.core.model import BuildStep, LockedVersion
from imagectl.core.notices import warn
from imagectl.core.ports import ImageInfo, ImageStore, Registry, Say
from imagectl.core.positions import build_parent, head_reference
from imagectl.core.references import (
    digest_of,
    is_pinned,
    pinned,
    repository_of,
    without_digest,
)
from imagectl.core.rendering import RenderedStep
from imagectl.core.tags import Holder, holder, retagged


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedParent:
    """The image a version is built FROM, as found in the engine."""

    ref: str  # what FROM names
    digest: str  # registry digest, or the image id for an unpublished parent
    info: ImageInfo


def resolve_parent(
    state: LineState, step: BuildStep, *, images: ImageStore, registry: Registry, say: Say
) -> ResolvedParent:
    """Find the locked parent in the engine (pulling it if only the registry has it)."""
    if step.parent_is_base:
        return _resolve_base(state, step, images=images, registry=registry, say=say)
    # The version positions built the step's FROM on: the newest, or the newest kept one.
    return locate_built(state, build_parent(state.line, state.lock), images=images)


def locate_head(state: LineState, *, images: ImageStore) -> ResolvedParent:
    """The newest locked version in the engine, pulled if only the registry has it, and the
    reference that names it (its local tag, or tag@digest once published)."""
    return locate_built(state, state.lock.head, images=images)


def locate_built(
    state: LineState, head: LockedVersion | None, *, images: ImageStore
) -> ResolvedParent:
    """Version `head` in the engine (see locate_head)."""
    if head is None:
        raise PlanError(
            f"{state.line.name} has no version yet.",
            hint=f"Build it first: imagectl build next {state.line.name}.",
        )
    tagged = images.inspect_image(head.tag)
    if tagged is not None and holder(tagged.image_id, ours=head.image_id) is Holder.OURS:
        # The common case in one engine call: the tag still names the locked image.
        ref = head_reference(head)  # as the plan named it (positions): one rule for both
        return ResolvedParent(ref=ref, digest=head.digest or head.image_id, info=tagged)
    info = images.inspect_image(head.image_id)
    if info is None and head.digest:
        images.pull(pinned(head.tag, head.digest))
        info = images.inspect_image(head.image_id)
    if info is None:
        raise PlanError(
            f"the lock records v{head.version} as image {head.image_id}, which is neither in "
            f"the engine nor (published) in the registry.",
            hint="An image built on another engine reaches this one only through the "
            "registry: publish it from the engine that built it (imagectl uses the engine "
            "DOCKER_HOST or the docker context names), or load it here; imagectl will not "
            "build on anything else.",
            path=state.lock_path,
        )
    if head.digest:
        return ResolvedParent(ref=head_reference(head), digest=head.digest, info=info)
    named = tagged.image_id if tagged is not None else None
    held = holder(named, ours=head.image_id)
    if held is Holder.FREE:
        images.tag(head.image_id, head.tag)  # restoring a removed tag is not overwriting one
    elif held is Holder.THEIRS:
        assert named is not None
        raise retagged(
            head.tag, named, recorded=head.image_id, version=head.version,
            unchanged="nothing was built or tagged", path=str(state.lock_path),
        )  # fmt: skip
    return ResolvedParent(ref=head.tag, digest=head.image_id, info=info)


def warn_if_parent_tag_moved(state: LineState, *, registry: Registry, say: Say) -> None:
    """One HEAD: the newest published version's tag must still name its recorded digest; a
    tag overwritten in the registry is reported (the line keeps building on the digest)."""
    published = [v for v in state.lock.built_versions if v.digest]
    if not published:
        return
    newest = published[-1]
    now = registry.exists(newest.tag)
    if now != newest.digest:
        warn(
            say,
            state.line.name,
            f"the registry's {newest.tag} now names {now or 'nothing'}, but the lock records "
            f"{newest.digest}: the tag was overwritten or deleted out of band. imagectl keeps "
            f"building on the recorded digest; run `imagectl audit {state.line.name}` for "
            "every tag.",
        )


def locate_version(state: LineState, version: LockedVersion, *, images: ImageStore) -> str:
    """The image of a built version in the engine, pulled by digest if only the registry has
    it; its image id."""
    if images.inspect_image(version.image_id) is None and version.digest:
        images.pull(pinned(version.tag, version.digest))
    if images.inspect_image(version.image_id) is None:
        raise PlanError(
            f"the lock records v{version.version} as image {version.image_id}, which is neither "
            "in the engine nor (published) in the registry.",
            hint="Pull or load that image (e.g. from the machine that built it), or publish it "
            "from there.",
            path=state.lock_path,
        )
    return version.image_id


def warn_if_base_moved(state: LineState, *, registry: Registry, say: Say) -> None:
    """Report, never follow, a base tag that now names another image than the pinned one."""
    line, lock = state.line, state.lock
    if not lock.base_digest or is_pinned(line.base):
        return
    current = registry.lookup(line.base)
    if current is None or current.digest != lock.base_digest:
        now = current.digest if current else "nothing"
        warn(
            say,
            line.name,
            f"the base tag {line.base} now names {now}, but this line is pinned to "
            f"{lock.base_digest} (recorded in {state.lock_path.name}); it stays on the pinned "
            "base. To move to the new base, start a new line.",
        )


def _resolve_base(
    state: LineState, step: BuildStep, *, images: ImageStore, registry: Registry, say: Say
) -> ResolvedParent:
    line, lock = state.line, state.lock
    base_name = without_digest(line.base)
    repository = repository_of(base_name)
    base_ref = step.parent
    info = images.inspect_image(base_ref)
    if info is None:
        remote = registry.lookup(base_ref)
        if remote is not None:
            images.pull(base_ref)
            info = images.inspect_image(base_ref)
    if info is None:
        raise PlanError(
            f"the base image {base_ref} is neither in the engine nor in the registry.",
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
    digest = lock.base_digest or digest_of(base_ref) or info.digest_in(repository)
    if not digest:
        remote_base = registry.lookup(base_name)
        digest = remote_base.digest if remote_base is not None else ""
        if digest and info.digest_in(repository) not in ("", digest):
            digest = ""  # the registry's tag is another image than the local one
    if digest:
        ref = pinned(base_name, digest)
        return ResolvedParent(ref=ref, digest=digest, info=info)
    # Only the engine has this base: FROM its tag; the layer check proves what was used.
    return ResolvedParent(ref=base_name, digest=info.image_id, info=info)


def pin_images(rendered: RenderedStep, *, images: ImageStore, registry: Registry) -> dict[str, str]:
    """Each image the increment names besides its parent, by registry digest: a moved tag is
    never followed silently, and the lock and the reference say exactly what was used."""
    pins: dict[str, str] = {}
    for image in rendered.recipe.images:
        if is_pinned(image):
            pins[image] = image
            continue
        remote = registry.lookup(image)
        digest = remote.digest if remote is not None else ""
        if not digest:
            local = images.inspect_image(image)
            digest = local.digest_in(repository_of(image)) if local is not None else ""
        if not digest:
            raise PlanError(
                f"the increment names the image {image}, which no registry has, so it cannot "
                "be pinned by digest.",
                hint="Push that image to a registry first (or name it by digest, "
                f"{image}@sha256:...); imagectl builds only on images it can pin.",
                path=rendered.template,
            )
        pins[image] = pinned(image, digest)
    return pins
