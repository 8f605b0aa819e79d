"""Carrying out `publish`: push built versions oldest first, never overwriting a tag."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Literal

from imagectl.app.locks import publish_lock
from imagectl.app.parents import warn_if_parent_tag_moved
from imagectl.app.results.lookup import SbomMade
from imagectl.app.results.publish import AttachedSbom, PublishedVersion
from imagectl.app.sboms import made_sbom
from imagectl.core import lockfile, sidecar
from imagectl.core.artifacts import Artifact
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import ImagectlError, PlanError, RegistryError
from imagectl.core.faults import pause_point
from imagectl.core.linestate import load_state
from imagectl.core.model import ImageLine, LockedVersion
from imagectl.core.notices import warn
from imagectl.core.planner import pending_publication
from imagectl.core.ports import ImageStore, Registry, RemoteImage, Say
from imagectl.core.references import pinned, repository_of
from imagectl.core.sbom import MEDIA_TYPE as SBOM_TYPE
from imagectl.core.tags import Holder, holder, published_over, retagged


def publish_line(
    layout: RepositoryLayout,
    line: ImageLine,
    *,
    images: ImageStore,
    registry: Registry,
    say: Say,
    output: Say,
    on_published: Callable[[LockedVersion], None] = lambda version: None,
) -> tuple[PublishedVersion, ...]:
    """Publish every unpublished version of `line`, recording each digest right after its push;
    `on_published` is then given the version as recorded (its SBOM and archive follow it)."""
    state = load_state(layout, line)
    warn_if_parent_tag_moved(state, registry=registry, say=say)
    lock = state.lock
    pending = pending_publication(lock)
    results: list[PublishedVersion] = []
    if not pending:
        return ()
    # The host lock for the whole line: no publisher on this host pushes to the repository
    # between the look-ups, all made at once before the first push, and each push.
    with publish_lock(line.repository):
        try:
            before = _looked_up(registry, [version.tag for version in pending])
        except ImagectlError as exc:
            exc.done = (published_so_far(line.name, results, pending[0].version), *exc.done)
            raise
        for version in pending:
            try:
                digest, action = publish_version(
                    version, images=images, registry=registry, say=say, output=output,
                    before=before[version.tag],
                )  # fmt: skip
            except ImagectlError as exc:
                exc.done = (published_so_far(line.name, results, version.version), *exc.done)
                raise
            pause_point("after-push")  # pushed, the lock does not have the digest yet
            lock = lock.with_published(version.version, digest)
            lockfile.write_lock(state.lock_path, lock)  # at once: a crash loses nothing
            on_published(next(v for v in lock.versions if v.version == version.version))
            say(f"{line.name}: {action} {version.tag}@{digest}")
            results.append(
                PublishedVersion(
                    line=line.name, version=version.version, tag=version.tag, digest=digest,
                    action=action,
                )
            )  # fmt: skip
    return tuple(results)


LOOKUP_CONCURRENCY = 4  # tags looked up at once before a line's pushes


def _looked_up(registry: Registry, tags: list[str]) -> dict[str, RemoteImage | None]:
    """What the registry holds under each tag now (the first error raised)."""
    if len(tags) == 1:
        return {tags[0]: registry.lookup(tags[0])}
    with ThreadPoolExecutor(min(LOOKUP_CONCURRENCY, len(tags))) as pool:
        return dict(zip(tags, pool.map(registry.lookup, tags), strict=True))


class SbomAttacher:
    """Attaches their SBOMs to a line's published versions, a few at a time on `pool` (while
    later versions are pushed), and records their digests in the lock once, at finish(). Made
    before the line's pushes: the versions published before and still without an SBOM are
    attached first; add() gives each version as publish pushes it. A version without a package
    record has no SBOM to attach and is passed over."""

    def __init__(
        self, layout: RepositoryLayout, line: ImageLine, *, registry: Registry, pool: Executor
    ) -> None:
        self.layout, self.line, self.registry, self.pool = layout, line, registry, pool
        state = load_state(layout, line)
        self.record = sidecar.read_packages(sidecar.packages_path(state.lock_path))
        # One pass over the record for every version that may want an SBOM in this run.
        self.manifests = self.record.manifests(
            v.version
            for v in state.lock.built_versions
            if not v.sbom and self.record.complete(v.version)
        )
        self.pending: list[tuple[SbomMade, Future[str | ImagectlError]]] = []
        for version in state.lock.built_versions:
            self.add(version)

    def add(self, version: LockedVersion) -> None:
        """Attach this version's SBOM, when it is published and has none yet."""
        if version.digest and not version.sbom and version.version in self.manifests:
            made = made_sbom(self.line, self.manifests[version.version], version)
            stored = self.pool.submit(_stored_or_error, self.registry, self.line.name, made)
            self.pending.append((made, stored))

    def finish(self, say: Say) -> tuple[AttachedSbom, ...]:
        """Wait for them, then record their digests in the lock (once; also when one failed,
        for the others); the first failure is raised after that."""
        if not self.pending:
            return ()
        for text in self.pending[0][0].warnings:  # said once per line, not per version
            warn(say, self.line.name, text)
        results = [(sbom, stored.result()) for sbom, stored in self.pending]
        state = load_state(self.layout, self.line)
        attached, lock = [], state.lock
        for sbom, digest in results:
            if isinstance(digest, str):
                n = sbom.version.version
                say(f"{self.line.name}: attached the SBOM of v{n} ({digest})")
                attached.append(AttachedSbom(line=self.line.name, version=n, digest=digest))
                lock = lock.with_sbom(n, digest)
        # One lock write for all of them: an SBOM stored but not recorded (a crash here) is
        # stored again by the next publish under the same digest, listed once, recorded then.
        pause_point("after-sbom-push")
        if attached:
            lockfile.write_lock(state.lock_path, lock)
        failed = [digest for _, digest in results if isinstance(digest, ImagectlError)]
        if failed:
            raise failed[0]
        return tuple(attached)


def _stored_or_error(registry: Registry, line: str, made: SbomMade) -> str | ImagectlError:
    """The SBOM's artifact digest once stored, or why the registry did not store it."""
    artifact = Artifact(
        artifact_type=SBOM_TYPE, media_type=SBOM_TYPE, data=made.data,
        title=f"{line}-v{made.version.version}.spdx.json",
        annotations={"org.opencontainers.image.created": made.version.built_at},
    )  # fmt: skip
    try:
        return registry.attach(
            pinned(repository_of(made.version.tag), made.version.digest), artifact
        )
    except ImagectlError as exc:
        return exc


def published_so_far(line: str, results: list[PublishedVersion], failed: int) -> str:
    """What a publish of `line` had done when v`failed` failed, as the error's hint says it."""
    if not results:
        return f"nothing of {line} was pushed or recorded before v{failed}"
    versions = ", ".join(f"v{r.version}" for r in results)
    return f"{versions} of {line} {'were' if len(results) > 1 else 'was'} published and recorded"


def publish_version(
    version: LockedVersion,
    *,
    images: ImageStore,
    registry: Registry,
    say: Say,
    output: Say,
    before: RemoteImage | Literal["ask"] | None = "ask",
) -> tuple[str, Literal["pushed", "recorded"]]:
    """Push the version's tag unless the registry has it (`before`: what it holds under the
    tag, looked up by the caller under the host lock; "ask": look it up here)."""
    tag = version.tag
    remote = registry.lookup(tag) if before == "ask" else before
    if remote is not None:
        if holder(remote.config_digest, ours=version.image_id) is Holder.OURS:
            return remote.digest, "recorded"  # a rerun after a crash: success, not an error
        raise published_over(tag, remote, recorded=version.image_id, version=version.version)
    _ensure_local_tag(version, images=images)
    say(f"pushing {tag}")
    try:
        pushed = registry.push(tag, on_output=output)
    except RegistryError:
        # Whatever docker's wording (ECR's "tag invalid", Harbor's 412 ...), what the registry
        # holds under the tag now decides: this very image is a success, another is a conflict.
        again = registry.lookup(tag)
        if again is None:
            raise
        if holder(again.config_digest, ours=version.image_id) is Holder.OURS:
            return again.digest, "recorded"
        raise published_over(
            tag, again, recorded=version.image_id, version=version.version
        ) from None
    try:
        back = registry.lookup(tag)
    except ImagectlError as exc:
        exc.done = (
            *exc.done,
            f"{tag} was pushed and the registry may serve it now, but its digest is not "
            "recorded yet: `imagectl publish` again reads it back and records it",
        )
        raise
    if back is None or back.digest != pushed or back.config_digest != version.image_id:
        found = f"{back.digest} (image {back.config_digest})" if back else "nothing"
        raise RegistryError(
            f"after pushing {tag} as {pushed}, the registry names {found}: another publisher "
            "pushed the same tag at the same moment. The lock does not record it.",
            hint="Serialize publish jobs (one CI concurrency group), check which image the tag "
            "names now, and fetch the lockfile that records it.",
        )
    return pushed, "pushed"


def _ensure_local_tag(version: LockedVersion, *, images: ImageStore) -> None:
    local = images.inspect_image(version.tag)
    named = local.image_id if local is not None else None
    held = holder(named, ours=version.image_id)
    if held is Holder.FREE:
        if images.inspect_image(version.image_id) is None:
            raise PlanError(
                f"v{version.version} ({version.image_id}) is not in this engine, so it cannot be "
                "published from here.",
                hint="Publish from the engine that built it (DOCKER_HOST or the docker "
                "context choose it), or load the image here first.",
            )
        images.tag(version.image_id, version.tag)  # restoring a removed local tag
    elif held is Holder.THEIRS:
        assert named is not None
        raise retagged(
            version.tag, named, recorded=version.image_id, version=version.version,
            unchanged="nothing was pushed",
        )  # fmt: skip
