"""Input archives in the registry: `publish` stores each published version's archive under
`<repository>-inputs:v<N>` (never overwritten, each file one layer so that a file shared by
versions is stored once, the pinned images copied in by digest), and `imagectl archive` shows
one, from the registry once published, else from the record kept here."""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import PurePosixPath

from imagectl.app.archiving import read_record, stored_body
from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.results.publish import StoredArchive
from imagectl.core import lockfile
from imagectl.core.archive import (
    ARTIFACT_TYPE,
    CONFIG_MEDIA_TYPE,
    ArchiveFormatError,
    InputArchive,
    archive_from_json,
    archive_repository,
    archive_tag,
    distinct_files,
)
from imagectl.core.artifacts import ArchiveFile, Descriptor
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import ArchiveError, ImagectlError, PlanError
from imagectl.core.faults import pause_point
from imagectl.core.linestate import load_state
from imagectl.core.model import ImageLine, LockedVersion
from imagectl.core.ports import Registry, Say
from imagectl.core.references import pinned


class ArchiveStorer:
    """Stores the archives of a line's published versions, a few at a time on `pool` (while
    later versions are pushed), and records their digests in the lock once, at finish(). Made
    before the line's pushes: the versions published before and still without their archive
    in the registry are stored first; add() gives each version as publish pushes it."""

    def __init__(
        self, layout: RepositoryLayout, line: ImageLine, *, registry: Registry, pool: Executor
    ) -> None:
        self.layout, self.line, self.registry, self.pool = layout, line, registry, pool
        self.pending: list[tuple[LockedVersion, Future[StoredArchive | ImagectlError]]] = []
        for version in load_state(layout, line).lock.built_versions:
            self.add(version)

    def add(self, version: LockedVersion) -> None:
        """Store this version's archive, when it is published and has one to store."""
        if version.digest and version.archive_state and not version.archive:
            stored = self.pool.submit(
                _stored_or_error, self.layout, self.line, self.registry, version
            )
            self.pending.append((version, stored))

    def finish(self, say: Say) -> tuple[tuple[StoredArchive, ...], ImagectlError | None]:
        """Wait for them, then record their digests in the lock (one write; also when one
        failed, for the others): what was stored, and the first failure. A version whose record
        is not on this machine is a failure."""
        if not self.pending:
            return (), None
        results = [(version, stored.result()) for version, stored in self.pending]
        state = load_state(self.layout, self.line)
        done, lock = [], state.lock
        for version, result in results:
            if isinstance(result, StoredArchive):
                state_word = "complete" if result.complete else "incomplete"
                say(
                    f"{self.line.name}: stored the input archive of v{version.version} "
                    f"({archive_tag(self.line.repository, version.version)}, {result.files} "
                    f"files, {state_word}, {result.digest})"
                )
                done.append(result)
                lock = lock.with_archive(version.version, result.digest)
        # Stored but not recorded (a crash here): the next publish finds the same content under
        # the tag, which put_archive answers with the same digest, and records it then.
        pause_point("after-archive-push")
        if done:
            lockfile.write_lock(state.lock_path, lock)
        failed = [result for _, result in results if isinstance(result, ImagectlError)]
        return tuple(done), (failed[0] if failed else None)


def _stored_or_error(
    layout: RepositoryLayout, line: ImageLine, registry: Registry, version: LockedVersion
) -> StoredArchive | ImagectlError:
    try:
        return _store(layout, line, registry, version)
    except ImagectlError as exc:
        return exc


def _store(
    layout: RepositoryLayout, line: ImageLine, registry: Registry, version: LockedVersion
) -> StoredArchive:
    archived = read_record(layout, line.name, version.version)
    if archived is None or archived.image_id != version.image_id:
        raise ArchiveError(
            f"the input archive of {line.name} v{version.version} is not on this machine "
            f"(.imagectl/archive/records/{line.name}/v{version.version}.json), so it cannot be "
            "stored in the registry. The version itself is published.",
            hint="Publish from the machine that built it (its archive is kept beside the "
            "engine's images); `imagectl audit` lists the versions without an archive.",
        )
    target = archive_repository(line.repository)
    for image in archived.images:
        registry.copy_image(image.ref, target)
    files = []
    for file in distinct_files(archived):
        body = stored_body(layout, file)
        if not body.is_file():
            raise ArchiveError(
                f"the captured file {file.url} of {line.name} v{version.version} is gone from "
                f"{body}, so its archive cannot be stored.",
                hint="Something removed files under .imagectl/archive/; rebuild is the only "
                "way to capture them again. Nothing was stored for this version.",
            )
        name = PurePosixPath(file.url.split("?", 1)[0]).name or file.sha256
        files.append(
            ArchiveFile(
                path=body,
                sha256=file.sha256,
                size=file.size,
                media_type=file.media_type,
                title=name,
            )
        )
    digest = registry.put_archive(
        archive_tag(line.repository, version.version),
        artifact_type=ARTIFACT_TYPE,
        config=archived.config_bytes(),
        config_media_type=CONFIG_MEDIA_TYPE,
        files=tuple(files),
    )
    return StoredArchive(
        line=line.name, version=version.version, digest=digest, files=len(archived.files),
        complete=archived.complete,
    )  # fmt: skip


def stored_archive(
    registry: Registry, line: ImageLine, version: LockedVersion
) -> tuple[InputArchive, tuple[Descriptor, ...]]:
    """The archive `publish` stored for `version` (by its recorded digest) and its layers."""
    ref = pinned(archive_repository(line.repository), version.archive)
    found = registry.read_archive(ref)
    if found is None:
        raise ArchiveError(
            f"the registry no longer has the input archive of {line.name} v{version.version} "
            f"({ref}).",
            hint="Run `imagectl audit`; an archive deleted from the registry is lost unless a "
            "copy of the registry's storage has it.",
        )
    try:
        return archive_from_json(found[0]), found[1]
    except ArchiveFormatError as exc:
        raise ArchiveError(
            f"{ref} is not an imagectl input archive ({exc}).",
            hint="Someone stored something else there; see `imagectl audit`.",
        ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ShownArchive:
    """What `imagectl archive` shows: the archive and where it was read."""

    archive: InputArchive
    digest: str  # the artifact's, once stored
    source: str  # "registry" or "local"
    tag: str


def show_archive(project: Project, name: str, number: int | None) -> ShownArchive:
    line = project.line(name)
    lock = line_lock(project, line)
    built = lock.built_versions
    if not built:
        raise PlanError(
            f"{line.name} has no built version yet.",
            hint=f"Build one first: imagectl build next {line.name}.",
        )
    version = built[-1] if number is None else next((v for v in built if v.version == number), None)
    if version is None:
        raise PlanError(
            f"v{number} of {line.name} is not built.",
            hint=f"See `imagectl history {line.name}`.",
        )
    tag = archive_tag(line.repository, version.version)
    if not version.archive_state:
        raise PlanError(
            f"{line.name} v{version.version} has no input archive: it was built with "
            "[archive] enabled = false, or before imagectl kept archives.",
            hint="Versions built from now on keep theirs (unless the line disables it).",
        )
    if version.archive:
        archived, _layers = stored_archive(project.adapters.registry, line, version)
        return ShownArchive(archive=archived, digest=version.archive, source="registry", tag=tag)
    local = read_record(project.layout, line.name, version.version)
    if local is None:
        raise ArchiveError(
            f"the input archive of {line.name} v{version.version} is neither published nor "
            "on this machine.",
            hint="Its record is kept under .imagectl/archive/ on the machine that built it "
            "until `imagectl publish` stores it in the registry.",
        )
    return ShownArchive(archive=local, digest="", source="local", tag=tag)
