"""restore-check: a pod backup taken on REF, checked against the successor a restored pod
starts on (`resolve`), from the successor's own layers above REF; with --write, the merged
layer to lay over the successor instead of the raw backup, written atomically."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from imagectl.app.lookups import resolve
from imagectl.app.project import Project
from imagectl.app.results.restore import RestoreReport
from imagectl.core.errors import BackupError, EngineError, PlanError
from imagectl.core.layerfiles import FileSelection
from imagectl.core.layertar import LayerTar, read_layer_tar, write_layer_tar
from imagectl.core.model import LockedVersion
from imagectl.core.ports import ImageInfo, ImageStore
from imagectl.core.references import pinned
from imagectl.core.restores import Verdict, check_restore, fix_changes, relevant_to
from imagectl.core.sysdbs import merge_for

PLAIN_NAME = re.compile(r"[A-Za-z0-9._+-]+")


def restore_check(
    project: Project, backup: Path, *, on: str, write: Path | None = None
) -> RestoreReport:
    if write is not None and _same_file(write, backup):
        raise BackupError(
            "--write names the backup itself.",
            hint="Write the merged layer to another file; the backup is kept as it was.",
            path=backup,
        )
    found = resolve(project, on)  # an unknown REF: a PlanError naming what resolve knows
    tar = _read_backup(backup)  # bad input fails before the engine is asked anything
    images = project.adapters.images
    ref = _image(images, found.matched)
    successor = _image(images, found.newest)
    above = len(ref.layers)
    if successor.layers[:above] != ref.layers:
        raise PlanError(
            f"{found.newest.tag} (the successor of {found.matched.tag}) is not built on "
            f"{found.matched.tag}'s layers, so what it changed cannot be told from its own "
            "layers.",
            hint=f"Check the lock of {found.line} (`imagectl history {found.line}`); a "
            "backup is only ever restored on a version built on the one it was taken on.",
        )
    # No layer above REF's (REF is the newest kept version): the fix changed nothing.
    added = len(successor.layers) > above
    wanted = FileSelection(match=relevant_to(tar), globs=("*",))
    layers = images.layer_changes(successor.image_id, wanted, above=above) if added else ()
    if layers is None:
        raise EngineError(
            f"the layers {found.newest.tag} added above {found.matched.tag} cannot be read "
            "one by one from here (the engine is not on this host, does not use overlay2, or "
            "a layer has an overlay redirect or metacopy).",
            hint="Run restore-check on the engine's host, as root or a user who may read "
            "its data root.",
        )
    files = sorted(p for p, e in tar.entries.items() if e.kind in ("file", "hardlink"))
    ref_files = images.read_files(ref.image_id, _selection(files)) if files else {}
    check = check_restore(tar, ref_files=ref_files, fix=fix_changes(layers))
    written = ""
    if write is not None and check.verdict in (Verdict.SAFE, Verdict.SAFE_AFTER_MERGE):
        _write_merged(backup, write, dropped=check.dropped, replaced=check.merged_content)
        written = str(write)
    return RestoreReport(
        backup=str(backup),
        resolution=found,
        check=check,
        added_layers=len(successor.layers) - above,
        written=written,
    )


def _image(images: ImageStore, version: LockedVersion) -> ImageInfo:
    """The version's image in the engine, pulled from the registry when only it has it."""
    info = images.inspect_image(version.image_id)
    if info is None and version.digest:
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
    """The merged layer at `target`, all of it or nothing: a temporary file beside it,
    flushed to disk, then renamed over it."""
    folder = target.parent if str(target.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackupError(
            f"cannot be written ({exc.strerror}).",
            hint="Check that its folder exists and may be written; nothing was written.",
            path=target,
        ) from exc
    try:
        with os.fdopen(fd, "wb") as out, backup.open("rb") as source:
            write_layer_tar(source, out, dropped=dropped, replaced=replaced, name=str(backup))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BackupError(
            f"cannot be written ({exc.strerror}).",
            hint="Check free disk space and permissions; nothing was written.",
            path=target,
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve() or (one.exists() and one.samefile(other))
    except OSError:
        return False
