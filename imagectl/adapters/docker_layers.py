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
    self-contained (then only the merged view tells the truth). A selection with `roots` is
    read below those paths only (and their parents' marks), never the rest of the layer."""
    walk = _LayerWalk(wanted)
    try:
        if wanted.roots is None:
            walk.folder("", folder)
        else:
            for root in _outermost(wanted.roots):
                walk.root(folder, root)
    except _NotSelfContainedError:
        return None
    return walk.change()


class _NotSelfContainedError(Exception):
    """An overlay redirect or metacopy mark: the layer's content stays partly below."""


class _LayerWalk:
    """One layer folder's selected changes, gathered as its entries are visited."""

    def __init__(self, wanted: FileSelection) -> None:
        self.wanted = wanted
        self.deleted: set[str] = set()
        self.opaque: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self.meta: dict[str, Meta] = {}
        self.dirs: set[str] = set()

    def change(self) -> LayerChange:
        return LayerChange(
            deleted=tuple(sorted(self.deleted)),
            opaque=tuple(sorted(self.opaque)),
            files=self.files,
            links=self.links,
            meta=self.meta,
            dirs=tuple(sorted(self.dirs)),
        )

    def root(self, folder: Path, root: str) -> None:
        """The layer below `root` and what it does to the folders above it: a whiteout or a
        non-folder put at one of them hides everything below it in the lower layers."""
        parts = root.split("/")
        for depth in range(1, len(parts) + 1):
            name = "/".join(parts[:depth])
            path = folder / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                return
            if not stat.S_ISDIR(info.st_mode):
                if depth == len(parts):
                    self.entry(name, str(path), info)
                else:  # a whiteout, file or symlink above the root hides what lies below
                    self.deleted.add(name)
                return
            self.mark_folder(name, str(path))
        self.folder(root, folder / root)

    def folder(self, relative: str, path: Path) -> None:
        pending = [(relative, path)]
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
                    self.mark_folder(name, entry.path)
                    pending.append((name, Path(entry.path)))
                else:
                    self.entry(name, entry.path, info)

    def mark_folder(self, name: str, path: str) -> None:
        marks = _marks(path)
        if marks & set(NOT_SELF_CONTAINED):
            raise _NotSelfContainedError(path)
        if marks & set(OPAQUE) and _is_opaque(path):
            self.opaque.add(name)
        if self.wanted.match(name):
            self.dirs.add(name)

    def entry(self, name: str, path: str, info: os.stat_result) -> None:
        """A layer entry that is not a folder."""
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
            self.deleted.add(name)  # overlay's whiteout: a 0/0 character device
        elif stat.S_ISREG(info.st_mode) and self.wanted.match(name):
            if _marks(path) & set(NOT_SELF_CONTAINED):
                raise _NotSelfContainedError(path)
            self.files[name] = Path(path).read_bytes()
            self.meta[name] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        elif stat.S_ISLNK(info.st_mode) and self.wanted.match(name):
            self.links[name] = os.readlink(path)


def _outermost(roots: tuple[str, ...]) -> list[str]:
    """The roots that lie below no other (a root inside another is walked with it)."""
    kept: list[str] = []
    for root in sorted({root.strip("/") for root in roots} - {""}):
        if not any(root.startswith(f"{k}/") for k in kept):  # sorted: a parent comes first
            kept.append(root)
    return kept


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
