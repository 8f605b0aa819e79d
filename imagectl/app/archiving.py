"""A version's input archive at build time: its downloads captured by a proxy that lives only
for its build, proved against the signed indexes they came from and its package delta before
it is tagged, and kept beside the engine's images (`.imagectl/archive/`) until `publish`
stores them in the registry.

The record is written before the tag, so a tag whose version the lock does not know yet (a
crash after tagging) finds its proved archive on the rerun, which adopts both instead of
building again: a capture build runs without BuildKit's cache (a cached step downloads
nothing), so a second build would be another image.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from imagectl.core.aptkeys import KEYRINGS
from imagectl.core.archive import (
    ArchivedFile,
    ArchivedImage,
    ArchiveFormatError,
    Download,
    InputArchive,
    Missing,
    archive_from_json,
)
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import ArchiveError
from imagectl.core.files import ReplaceError, replace_durably
from imagectl.core.model import ImageLine
from imagectl.core.packages import Package, PackageDiff, parse_entry
from imagectl.core.ports import Capture, ImageStore, Inputs

CONTEXT_INPUTS = (".whl", ".tar.gz", ".zip", ".tar.bz2")  # wheels and sdists pip installs


def store_dir(layout: RepositoryLayout) -> Path:
    """The captured bodies (`sha256/<hex>`, each content once) and the records."""
    return layout.state_dir / "archive"


def record_path(layout: RepositoryLayout, line: str, version: int) -> Path:
    return store_dir(layout) / "records" / line / f"v{version}.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Captured:
    """What the proxy kept during one build, or why nothing could be."""

    downloads: tuple[Download, ...] = ()
    missing: tuple[Missing, ...] = ()
    impossible: str = ""  # no capture at all: the reason


@dataclass(slots=True)
class CaptureRun:
    """The capture of one build: its proxy's URL while it runs, what it kept after."""

    url: str = ""
    captured: Captured | None = None  # None: the line keeps no archive
    _result: list[Captured] = field(default_factory=list)
    _capture: Capture | None = None

    def serve(self) -> None:
        """Start answering the build's requests (its proxy listens from the start): called
        while the build runs, so that loading the proxy is not on the build's path."""
        if self._capture is not None:
            self._capture.serve()


@contextmanager
def capturing(
    layout: RepositoryLayout, line: ImageLine, *, images: ImageStore, inputs: Inputs
) -> Iterator[CaptureRun]:
    """A record proxy for the build inside the block (none for a line without an archive);
    it listens only on the engine's bridge and stops when the block ends."""
    run = CaptureRun()
    if not line.archive:
        yield run
        return
    host = images.capture_address()
    if host is None:
        run.captured = Captured(
            impossible="the engine runs on another host, so its builds cannot fetch through a "
            "capture proxy on this one; nothing was captured"
        )
        yield run
        return
    with inputs.record(host, store_dir(layout)) as proxy:
        run.url, run._capture = proxy.url, proxy
        try:
            yield run
        finally:
            run.captured = Captured(downloads=proxy.captured(), missing=proxy.missing())


def prove_inputs(
    captured: Captured,
    *,
    line: ImageLine,
    version: int,
    image_id: str,
    diff: PackageDiff,
    pinned: Sequence[ArchivedImage],
    context: Path | None,
    layout: RepositoryLayout,
    images: ImageStore,
    inputs: Inputs,
) -> InputArchive:
    """The version's archive: every download proved against its signed index and the debs the
    version installed, the pinned images it started from, the wheels of its folder."""
    missing = [f"{item.url}: {item.reason}" for item in captured.missing]
    if captured.impossible:
        missing.append(captured.impossible)
    files, unproved = _proved(captured, _installed_debs(diff), image_id, images, inputs)
    if context is not None:
        files += _context_inputs(context, layout)
    return InputArchive(
        line=line.name,
        version=version,
        image_id=image_id,
        files=tuple(files),
        images=tuple(pinned),
        missing=tuple(sorted({*missing, *unproved})),
    )


def _proved(
    captured: Captured,
    debs: Sequence[Package],
    image_id: str,
    images: ImageStore,
    inputs: Inputs,
) -> tuple[list[ArchivedFile], tuple[str, ...]]:
    """The downloads as proved, and what the proof found missing; nothing to prove (no
    download, no deb installed: most busybox steps) costs nothing, not even the import."""
    if not captured.downloads and not debs:
        return [], ()
    from imagectl.core.aptproof import InstalledPackage, prove  # noqa: PLC0415 (apt work only)

    keyrings: tuple[bytes, ...] = ()
    if captured.downloads:
        keyrings = tuple(images.read_files(image_id, KEYRINGS).values())
    delta = [InstalledPackage(name=p.name, version=p.version, architecture=p.arch) for p in debs]
    proof = prove(
        captured.downloads,
        delta if not captured.impossible else (),
        verify=lambda data: inputs.verify_signed(data, keyrings),
        verify_detached=lambda data, signature: inputs.verify_detached(data, signature, keyrings),
    )
    files = [
        ArchivedFile(
            url=f.url,
            sha256=f.sha256,
            size=f.size,
            kind=f.kind,
            verified=f.verified,
            package=f.package,
        )
        for f in proof.files
    ]
    return files, proof.missing


def _installed_debs(diff: PackageDiff) -> tuple[Package, ...]:
    """The debs the version added or changed: each must come from a captured, proved .deb."""
    packages = [*map(parse_entry, diff.added), *(change.after for change in diff.changed)]
    return tuple(p for p in packages if p.kind == "deb")


def _context_inputs(context: Path, layout: RepositoryLayout) -> list[ArchivedFile]:
    """Wheels and sdists in the increment's folder: inputs already (they are in git), kept in
    the archive too so that it alone rebuilds the version."""
    found = []
    for path in sorted(context.rglob("*")):
        if not path.is_file() or not path.name.endswith(CONTEXT_INPUTS):
            continue
        digest = _store_file(path, store_dir(layout))
        found.append(
            ArchivedFile(
                url=f"context:{path.relative_to(context).as_posix()}",
                sha256=digest,
                size=path.stat().st_size,
                kind="wheel",
                verified=True,
            )
        )
    return found


def _store_file(path: Path, store: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    digest = sha.hexdigest()
    target = store / "sha256" / digest
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as source:
            replace_durably(target, lambda out: shutil.copyfileobj(source, out))
    return digest


def require_complete(line: ImageLine, archive: InputArchive) -> None:
    """`[archive] require = "complete"`: an incomplete version is not tagged."""
    if not line.archive_complete or archive.complete:
        return
    shown = "; ".join(archive.missing[:5])
    more = f" (and {len(archive.missing) - 5} more)" if len(archive.missing) > 5 else ""
    raise ArchiveError(
        f"v{archive.version} of {line.name} was built, but its inputs were not all captured: "
        f"{shown}{more}. Nothing was tagged or recorded.",
        hint="Fetch over http from an apt repository with a signed index (not https, not "
        "curl | sh), or put the file in the increment's folder; or drop "
        f'[archive] require = "complete" from {line.config_path.as_posix()} to record '
        "incomplete versions.",
        path=line.config_path.as_posix(),
    )


def keep_record(layout: RepositoryLayout, archive: InputArchive) -> None:
    """The proved archive, written whole before the version is tagged."""
    path = record_path(layout, archive.line, archive.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = archive.config_bytes()
    try:
        replace_durably(path, lambda handle: handle.write(data))
    except ReplaceError as exc:
        raise ArchiveError(
            f"cannot write the input archive's record {path} ({exc.strerror}).",
            hint="Check that .imagectl/ is writable; nothing was tagged or recorded.",
            path=str(path),
        ) from exc


def read_record(layout: RepositoryLayout, line: str, version: int) -> InputArchive | None:
    """The record of `version` kept here, or None (absent, or not one imagectl wrote)."""
    path = record_path(layout, line, version)
    try:
        return archive_from_json(path.read_bytes())
    except (OSError, ArchiveFormatError):
        return None


def stored_body(layout: RepositoryLayout, file: ArchivedFile) -> Path:
    return store_dir(layout) / "sha256" / file.sha256
