"""Reading an image's layers one by one from the engine's own overlay2 store, when imagectl
runs on the engine's host: what a version changed is in its own new layers, so reading them
costs what the version added, never what the image weighs.

Used only when it is provably this engine's store (`local_store`): the engine reports the
overlay2 driver, and its data root on this host holds the engine's own id. A layer is read
only when it is self-contained: an overlay redirect (a renamed folder whose content stays
below) or metacopy (a file whose data stays below) makes it None, and the caller reads the
merged view instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagectl.core.layerfiles import FileSelection, LayerChange, Meta

# overlayfs marks, as root writes them (trusted.*) and as rootless dockerd does (user.*)
OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
NOT_SELF_CONTAINED = (
    "trusted.overlay.redirect",
    "user.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.metacopy",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalStore:
    """The engine's overlay2 store, seen from this host."""

    root: Path  # the engine's data root (DockerRootDir)


def engine_on_this_host(info: dict[str, Any]) -> bool:
    """Whether the engine that answered `/info` keeps its data here: its data root's
    engine-id file, read on this host, names the engine (another host's has its own)."""
    root = Path(str(info.get("DockerRootDir") or ""))
    try:
        engine_id = (root / "engine-id").read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return bool(engine_id) and engine_id == info.get("ID")


def local_store(info: dict[str, Any]) -> LocalStore | None:
    """The store, when the engine that answered `/info` is this host's and uses overlay2."""
    if info.get("Driver") != "overlay2":
        return None
    root = Path(str(info.get("DockerRootDir") or ""))
    try:
        engine_id = (root / "engine-id").read_text(encoding="utf-8").strip()
    except OSError:
        return None  # another host's engine, or a data root this process may not read
    return LocalStore(root=root) if engine_id and engine_id == info.get("ID") else None


def layer_folders(store: LocalStore, image: dict[str, Any]) -> tuple[Path, ...] | None:
    """Each layer's folder (its overlay `diff`), bottom first, from `GET /images/{id}/json`;
    None when they do not match the image's layers one to one or lie outside the store."""
    driver = image.get("GraphDriver") or {}
    data = driver.get("Data") or {}
    if driver.get("Name") != "overlay2" or not data.get("UpperDir"):
        return None
    top_first = [data["UpperDir"], *filter(None, str(data.get("LowerDir") or "").split(":"))]
    folders = tuple(Path(folder) for folder in reversed(top_first))
    layers = (image.get("RootFS") or {}).get("Layers") or ()
    inside = all(folder.is_relative_to(store.root) for folder in folders)
    return folders if len(folders) == len(layers) and inside else None


def read_layer(folder: Path, wanted: FileSelection) -> LayerChange | None:
    """What one layer folder changes among the selected files; None when it is not
    self-contained (then only the merged view tells the truth)."""
    deleted: list[str] = []
    opaque: list[str] = []
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    meta: dict[str, Meta] = {}
    dirs: list[str] = []
    pending = [("", folder)]
    while pending:
        relative, path = pending.pop()
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            continue
        for entry in entries:
            name = f"{relative}/{entry.name}" if relative else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                marks = _marks(entry.path)
                if marks & set(NOT_SELF_CONTAINED):
                    return None
                if marks & set(OPAQUE) and _is_opaque(entry.path):
                    opaque.append(name)
                if wanted.match(name):
                    dirs.append(name)
                pending.append((name, Path(entry.path)))
            elif stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                deleted.append(name)  # overlay's whiteout: a 0/0 character device
            elif stat.S_ISREG(info.st_mode) and wanted.match(name):
                if _marks(entry.path) & set(NOT_SELF_CONTAINED):
                    return None
                files[name] = Path(entry.path).read_bytes()
                meta[name] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
            elif stat.S_ISLNK(info.st_mode) and wanted.match(name):
                links[name] = os.readlink(entry.path)
    return LayerChange(
        deleted=tuple(sorted(deleted)),
        opaque=tuple(sorted(opaque)),
        files=files,
        links=links,
        meta=meta,
        dirs=tuple(sorted(dirs)),
    )


def _marks(path: str) -> set[str]:
    try:
        return set(os.listxattr(path, follow_symlinks=False))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return set()
        raise


def _is_opaque(path: str) -> bool:
    for name in OPAQUE:
        with contextlib.suppress(OSError):
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
    return False
