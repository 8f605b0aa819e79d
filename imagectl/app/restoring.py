"""restore-check: a pod backup taken on REF, checked against the successor a restored pod
starts on (`resolve`), from the successor's own layers above REF; with --write, the merged
layer to lay over the successor instead of the raw backup, written atomically."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from imagectl.app.lookups import resolve
from imagectl.app.project import Project
from imagectl.app.results.restore import RestoreReport
from imagectl.core.artifacts import Descriptor
from imagectl.core.errors import BackupError, EngineError, PlanError, RegistryError
from imagectl.core.files import ReplaceError, replace_durably
from imagectl.core.layerblobs import layer_change, readable
from imagectl.core.layerfiles import FileSelection, LayerChange, Meta, merged_dirs, merged_view
from imagectl.core.layertar import LayerTar, read_layer_tar, write_layer_tar
from imagectl.core.model import LockedVersion
from imagectl.core.ports import ImageInfo, ImageStore, Registry, RemoteLayers
from imagectl.core.references import pinned, repository_of
from imagectl.core.resolver import Resolution
from imagectl.core.restores import (
    FixChanges,
    Verdict,
    check_restore,
    fix_changes,
    folders_to_ask,
    relevant_to,
)
from imagectl.core.sysdbs import merge_for

PLAIN_NAME = re.compile(r"[A-Za-z0-9._+-]+")
Source = Literal["auto", "engine", "registry"]  # where the layers are read (--from)


def restore_check(
    project: Project,
    backup: Path,
    *,
    on: str,
    write: Path | None = None,
    source: Source = "auto",
) -> RestoreReport:
    """`source`: where the successor's added layers and REF's files are read. "engine": the
    engine's overlay2 store on this host; "registry": the published versions' blobs; "auto":
    the engine's store when it has both versions and they can be read one by one from here,
    else the registry when both are published."""
    if write is not None and _same_file(write, backup):
        raise BackupError(
            "--write names the backup itself.",
            hint="Write the merged layer to another file; the backup is kept as it was.",
            path=backup,
        )
    found = resolve(project, on)  # an unknown REF: a PlanError naming what resolve knows
    tar = _read_backup(backup)  # bad input fails before the engine is asked anything
    read = _read_versions(project, found, tar=tar, source=source)
    check = check_restore(
        tar, ref_files=read.ref_files, ref_meta=read.ref_meta, ref_dirs=read.ref_dirs,
        fix=read.fix,
    )  # fmt: skip
    written = ""
    if write is not None and check.verdict in (Verdict.SAFE, Verdict.SAFE_AFTER_MERGE):
        _write_merged(backup, write, dropped=check.dropped, replaced=check.merged_content)
        written = str(write)
    return RestoreReport(
        backup=str(backup),
        resolution=found,
        check=check,
        added_layers=read.added,
        read_from=read.source,
        written=written,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Read:
    """What was read of REF and its successor, from one source."""

    source: Literal["engine", "registry"]
    added: int  # the successor's layers above REF's
    fix: FixChanges  # what they change among the files the check needs
    ref_files: Mapping[str, bytes]  # REF's regular files at the backup's paths
    ref_meta: Mapping[str, Meta]  # their mode and owner (none from a reader container)
    ref_dirs: frozenset[str] | None  # REF's folders among those asked (None: not known)


@dataclass(frozen=True, slots=True, kw_only=True)
class _OfRef:
    """What is asked of REF once the successor's layers are read."""

    fix: FixChanges
    files: tuple[str, ...]  # the backup's files: REF's content, mode and owner there
    wanted: FileSelection | None  # those files and the fix's folders that decide (None: none)


def _of_ref(tar: LayerTar, layers: tuple[LayerChange, ...]) -> _OfRef:
    fix = fix_changes(layers)
    files = tuple(sorted(p for p, e in tar.entries.items() if e.kind in ("file", "hardlink")))
    asked = frozenset(files) | folders_to_ask(tar, fix)
    wanted = FileSelection(match=asked.__contains__, globs=()) if asked else None
    return _OfRef(fix=fix, files=files, wanted=wanted)


def _read_versions(project: Project, found: Resolution, *, tar: LayerTar, source: Source) -> _Read:
    published = bool(found.matched.digest and found.newest.digest)
    if source == "registry":
        if not published:
            raise _publish_first(
                found, why="restore-check --from registry reads the layers of published versions"
            )
        return _from_registry(project.adapters.registry, found, tar=tar)
    # auto: a version the engine lacks is read from the registry, not pulled whole, once
    # both are published; before, it is pulled if the registry has it (or named as missing)
    images = project.adapters.images
    read = _from_engine(images, found, tar=tar, pull=source == "engine" or not published)
    if read is not None:
        return read
    if source == "auto" and published:
        return _from_registry(project.adapters.registry, found, tar=tar)
    if source == "auto":
        raise _publish_first(
            found,
            why=f"the layers {found.newest.tag} added above {found.matched.tag} cannot be read "
            f"from the engine's store ({_NOT_ONE_BY_ONE})",
        )
    raise EngineError(
        f"the layers {found.newest.tag} added above {found.matched.tag} cannot be read "
        f"one by one from here ({_NOT_ONE_BY_ONE}).",
        hint="Run restore-check on the engine's host, as root or a user who may read its "
        "data root, or read the versions from the registry ("
        + ("`--from registry`" if published else f"`imagectl publish {found.line}` first")
        + ").",
    )


_NOT_ONE_BY_ONE = (
    "the engine is not on this host, does not use overlay2, or a layer has an overlay "
    "redirect or metacopy"
)


def _publish_first(found: Resolution, *, why: str) -> EngineError:
    unpublished = [v.tag for v in (found.matched, found.newest) if not v.digest]
    return EngineError(
        f"{why}, and {' and '.join(unpublished)} {'is' if len(unpublished) == 1 else 'are'} "
        "not published, so the registry cannot serve them.",
        hint=f"Publish the line first (`imagectl publish {found.line}`), then run "
        "restore-check again: it reads the successor's added layers and REF's files from the "
        "registry; or run it on the engine's host.",
    )


def _from_engine(
    images: ImageStore, found: Resolution, *, tar: LayerTar, pull: bool
) -> _Read | None:
    """From the engine's overlay2 store on this host; None when it cannot be read one by one
    from here (or, without `pull`, when the engine lacks a version)."""
    ref = _image(images, found.matched, pull=pull)
    successor = _image(images, found.newest, pull=pull)
    if ref is None or successor is None:
        return None
    _check_built_on(found, ref=ref.layers, successor=successor.layers)
    above = len(ref.layers)
    # No layer above REF's (REF is the newest kept version): the fix changed nothing.
    added = len(successor.layers) - above
    wanted = FileSelection(match=relevant_to(tar), globs=("*",))
    layers = images.layer_changes(successor.image_id, wanted, above=above) if added else ()
    if layers is None:
        return None
    asked = _of_ref(tar, layers)
    ref_files: Mapping[str, bytes] = {}
    ref_meta: Mapping[str, Meta] = {}
    ref_dirs: frozenset[str] | None = frozenset()
    own = images.layer_changes(ref.image_id, asked.wanted, above=0) if asked.wanted else ()
    if own is not None:
        ref_files, ref_meta = merged_view(own)
        ref_dirs = merged_dirs(own)
    else:  # REF is the newest version on a remote engine: its files by a container
        files = asked.files
        ref_files = images.read_files(ref.image_id, _selection(list(files))) if files else {}
        ref_dirs = None
    return _Read(
        source="engine", added=added, fix=asked.fix, ref_files=ref_files, ref_meta=ref_meta,
        ref_dirs=ref_dirs,
    )  # fmt: skip


def _from_registry(registry: Registry, found: Resolution, *, tar: LayerTar) -> _Read:
    """From the registry: the blobs of the successor's layers above REF's, and REF's own
    blobs for its files at the backup's paths, each streamed, never stored."""
    ref = _remote(registry, found.matched)
    successor = _remote(registry, found.newest)
    _check_built_on(found, ref=ref.diff_ids, successor=successor.diff_ids)
    above = len(ref.diff_ids)
    wanted = FileSelection(match=relevant_to(tar), globs=("*",))
    layers = _blob_changes(registry, found.newest, successor.blobs[above:], wanted, first=above)
    asked = _of_ref(tar, layers)
    own = _blob_changes(registry, found.matched, ref.blobs, asked.wanted) if asked.wanted else ()
    ref_files, ref_meta = merged_view(own)
    return _Read(
        source="registry", added=len(successor.blobs) - above, fix=asked.fix,
        ref_files=ref_files, ref_meta=ref_meta, ref_dirs=merged_dirs(own),
    )  # fmt: skip


def _remote(registry: Registry, version: LockedVersion) -> RemoteLayers:
    ref = pinned(version.tag, version.digest)
    layers = registry.image_layers(ref)
    if layers is None:
        raise RegistryError(
            f"the registry no longer serves {ref}, which the lock records as {version.tag}.",
            hint="Check the line with `imagectl audit`; run restore-check on the engine's host "
            "if it still has the version.",
        )
    if layers.image_id != version.image_id:
        raise RegistryError(
            f"the registry's {ref} is the image {layers.image_id}, but the lock records "
            f"{version.tag} as {version.image_id}: they are not the same image.",
            hint="Check the lock and the registry with `imagectl audit`; nothing was read "
            "from the registry's layers.",
        )
    return layers


def _blob_changes(
    registry: Registry,
    version: LockedVersion,
    blobs: tuple[Descriptor, ...],
    wanted: FileSelection,
    *,
    first: int = 0,
) -> tuple[LayerChange, ...]:
    repository = repository_of(version.tag)
    for number, blob in enumerate(blobs, start=first + 1):
        if not readable(blob.media_type):
            raise RegistryError(
                f"layer {number} of {version.tag} is stored as {blob.media_type}, which "
                "restore-check does not read (it reads plain and gzip layers).",
                hint="Run restore-check on the engine's host, which reads the engine's own "
                "store, or publish the line with gzip layers (docker's default).",
            )
    return tuple(
        layer_change(
            functools.partial(registry.open_blob, repository, blob),
            wanted,
            name=f"{number} of {version.tag} ({blob.digest})",
        )
        for number, blob in enumerate(blobs, start=first + 1)
    )


def _check_built_on(found: Resolution, *, ref: tuple[str, ...], successor: tuple[str, ...]) -> None:
    """The successor's layers (diff ids) must start with exactly REF's: else what it changed
    cannot be told from its own layers."""
    if successor[: len(ref)] != ref:
        raise PlanError(
            f"{found.newest.tag} (the successor of {found.matched.tag}) is not built on "
            f"{found.matched.tag}'s layers, so what it changed cannot be told from its own "
            "layers.",
            hint=f"Check the lock of {found.line} (`imagectl history {found.line}`); a "
            "backup is only ever restored on a version built on the one it was taken on.",
        )


def _image(images: ImageStore, version: LockedVersion, *, pull: bool) -> ImageInfo | None:
    """The version's image in the engine; with `pull`, pulled from the registry when only it
    has it (else None)."""
    info = images.inspect_image(version.image_id)
    if info is not None or not pull:
        return info
    if version.digest:
        images.pull(pinned(version.tag, version.digest))
        info = images.inspect_image(version.image_id)
    if info is None:
        raise EngineError(
            f"the engine has no image of {version.tag} ({version.image_id}) and the registry "
            "serves none that imagectl recorded.",
            hint="Publish the line (`imagectl publish`) or pull the version first.",
        )
    return info


def _read_backup(backup: Path) -> LayerTar:
    try:
        with backup.open("rb") as stream:
            return read_layer_tar(stream, name=str(backup), keep=lambda p: merge_for(p) is not None)
    except OSError as exc:
        raise BackupError(
            f"cannot be read ({exc.strerror}).",
            hint="Give the path of the backup's layer tar.",
            path=backup,
        ) from exc


def _selection(paths: list[str]) -> FileSelection:
    """REF's files at the backup's paths: `match` decides; the globs (for an engine whose
    layers are read by a container) name the backup's top folders, or everything when a
    name is not plain (a glob is written into the reader's shell command)."""
    wanted = frozenset(paths)
    tops = {path.split("/", 1)[0] for path in paths}
    plain = all(PLAIN_NAME.fullmatch(top) for top in tops)
    globs = tuple(sorted(f"/{top}*" for top in tops)) if plain else ("*",)
    return FileSelection(match=wanted.__contains__, globs=globs)


def _write_merged(
    backup: Path, target: Path, *, dropped: frozenset[str], replaced: Mapping[str, bytes]
) -> None:
    """The merged layer at `target`, all of it or nothing (core/files)."""

    def write(out: BinaryIO) -> None:
        with backup.open("rb") as source:
            write_layer_tar(source, out, dropped=dropped, replaced=replaced, name=str(backup))

    try:
        replace_durably(target, write)
    except ReplaceError as exc:
        hint = (
            "Check free disk space and permissions; nothing was written."
            if exc.begun
            else "Check that its folder exists and may be written; nothing was written."
        )
        raise BackupError(f"cannot be written ({exc.strerror}).", hint=hint, path=target) from exc


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve() or (one.exists() and one.samefile(other))
    except OSError:
        return False
