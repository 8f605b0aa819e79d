"""The registry's use cases: `publish` (every built but unpublished version pushed, oldest first,
each line on its own) and `audit`; they load no build or test code."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from imagectl.app.archives import ArchiveStorer
from imagectl.app.audit import audit_locks
from imagectl.app.locks import locked_and_swept, publish_lock
from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.publisher import SbomAttacher, publish_line
from imagectl.app.results.publish import (
    AttachedSbom,
    AuditReport,
    PublishedVersion,
    PublishResult,
    StoredArchive,
)
from imagectl.core import lockfile
from imagectl.core.archive import archive_repository
from imagectl.core.errors import ImagectlError
from imagectl.core.linestate import load_state
from imagectl.core.model import ImageLine, LockedVersion
from imagectl.core.planner import pending_publication
from imagectl.core.ports import Say

# SBOMs and archives stored at once. A line's archives share most files: the registry adapter
# sends one request at a time on each blob (distribution 2.8 answers a HEAD racing another
# request's write of the same blob's link with HTTP 500), so the files they share go once.
STORE_CONCURRENCY = 4


def referrers_lock_name(repository: str) -> str:
    """What the host lock of a repository's referrers tags is named after: attaching reads
    and rewrites a referrers index, so two publishers of one repository on a host take turns."""
    return f"{repository} referrers"


def publish_plan(project: Project, names: Sequence[str]) -> PublishResult:
    """The versions `publish` would push, oldest first, in publish's own shape; reads files only."""
    planned = [
        PublishedVersion(
            line=line.name, version=v.version, tag=v.tag, digest="", action="would push"
        )
        for line in project.select(names)
        for v in pending_publication(load_state(project.layout, line).lock)
    ]
    return PublishResult(published=tuple(planned), failures=(), dry_run=True)


def publish(
    project: Project, names: Sequence[str], *, wait: float, say: Say, output: Say
) -> PublishResult:
    """Push every built but unpublished version; one line's refusal does not stop the others."""
    layout, adapters = project.layout, project.adapters
    lines = project.select(names)
    published: list[PublishedVersion] = []
    sboms: list[AttachedSbom] = []
    archives: list[StoredArchive] = []
    failures: list[tuple[str, ImagectlError]] = []
    with locked_and_swept(project, wait=wait, say=say):
        for line in lines:
            load_state(layout, line)  # every line valid before anything is pushed
        lockfile.ensure_writable(layout.lock_dir)
        adapters.builder.check()
        say(adapters.builder.describe())
        for line in lines:
            try:
                done = _publish_line(project, line, say=say, output=output)
            except ImagectlError as exc:
                failures.append((line.name, exc))
                continue
            published.extend(done.published)
            sboms.extend(done.sboms)
            archives.extend(done.archives)
            if done.failure is not None:
                failures.append((line.name, done.failure))
    return PublishResult(
        published=tuple(published), failures=tuple(failures), sboms=tuple(sboms),
        archives=tuple(archives),
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class LinePublished:
    """What publishing one line did, and its first failure (a push's before an SBOM's before
    an archive's)."""

    published: tuple[PublishedVersion, ...]
    sboms: tuple[AttachedSbom, ...]
    archives: tuple[StoredArchive, ...]
    failure: ImagectlError | None


def _publish_line(project: Project, line: ImageLine, *, say: Say, output: Say) -> LinePublished:
    """Push the line's versions one by one; each pushed version's SBOM and input archive are
    stored beside the next pushes (the engine pushes, this process talks to the registry),
    then recorded in the lock, each kind in one write. A failed push stops the pushes; what
    was attached or stored by then is recorded still. Referrers and archives have locks of
    their own, beside the pushes' lock of the repository: they write other tags."""
    layout, adapters = project.layout, project.adapters
    registry = adapters.registry
    failures: list[ImagectlError] = []
    published: tuple[PublishedVersion, ...] = ()
    with (
        publish_lock(referrers_lock_name(line.repository)),
        publish_lock(archive_repository(line.repository)),
        ThreadPoolExecutor(STORE_CONCURRENCY) as pool,
    ):
        attacher = SbomAttacher(layout, line, registry=registry, pool=pool)
        storer = ArchiveStorer(layout, line, registry=registry, pool=pool)

        def follow(version: LockedVersion) -> None:
            attacher.add(version)
            storer.add(version)

        try:
            published = publish_line(
                layout, line, images=adapters.images, registry=registry, say=say,
                output=output, on_published=follow,
            )  # fmt: skip
        except ImagectlError as exc:
            failures.append(exc)
        try:
            sboms = attacher.finish(say)
        except ImagectlError as exc:
            sboms = ()
            failures.append(exc)
        archives, refused = storer.finish(say)
    if refused is not None:
        failures.append(refused)
    return LinePublished(
        published=published, sboms=sboms, archives=archives, failure=next(iter(failures), None)
    )


def audit(project: Project, names: Sequence[str]) -> AuditReport:
    """What the registry serves now for every published version of the selected lines."""
    locks = [line_lock(project, line) for line in project.select(names)]
    return audit_locks(locks, registry=project.adapters.registry)
