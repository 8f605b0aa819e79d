"""An image layer as a registry stores it (a tar in the OCI form, plain or gzip), read while
it streams: what it changes among the selected files, the same LayerChange the engine's
overlay2 store gives for that layer. Only the selected members' data is kept; the blob itself
is never held or written. Pure: it reads the streams it is given."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO

from imagectl.core.errors import RegistryError
from imagectl.core.layerfiles import FileSelection, LayerChange, Meta

# How each layer media type is compressed; tarfile's stream mode reads plain and gzip tars.
READABLE = {
    "application/vnd.oci.image.layer.v1.tar": "plain",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "plain",
}
WHITEOUT = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OpenBlob = Callable[[], AbstractContextManager[IO[bytes]]]  # the blob from its beginning


def readable(media_type: str) -> bool:
    """Whether a layer of this media type can be read here (zstd and foreign layers cannot)."""
    return media_type in READABLE


def layer_change(open_blob: OpenBlob, wanted: FileSelection, *, name: str) -> LayerChange:
    """What the layer `open_blob` streams changes among the `wanted` files: its whiteouts and
    opaque folders (all of them), and its selected files and symlinks. A selected hard link
    whose target was not selected gets the target's data from a second pass over the blob
    (a tar names a hard link's data only at its target, earlier in the stream)."""
    deleted: list[str] = []
    opaque: list[str] = []
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    meta: dict[str, Meta] = {}  # a hard link's own header says its mode and owner
    dirs: set[str] = set()
    parents: set[str] = set()  # the folders above the members so far
    hardlinks: dict[str, str] = {}  # selected hard link -> its target, not selected itself
    with open_blob() as stream, _tar(stream, name) as archive:
        for member in _members(archive, name):
            path = _path(member.name, name)
            if not path:
                continue
            base, leaf = posixpath.split(path)
            # A tar may leave out a member's folders, which unpacking makes (a layer folder
            # of the overlay2 store always has them): they are the layer's folders too.
            while base and base not in parents:
                parents.add(base)
                if wanted.match(base):
                    dirs.add(base)
                base = posixpath.dirname(base)
            base = posixpath.dirname(path)
            if leaf == OPAQUE_MARKER:
                opaque.append(base)
            elif leaf.startswith(WHITEOUT + WHITEOUT):
                continue  # aufs' own bookkeeping (.wh..wh.plnk, ...), no change of a path
            elif leaf.startswith(WHITEOUT):
                deleted.append(posixpath.join(base, leaf[len(WHITEOUT) :]))
            elif member.isdir() and wanted.match(path):
                dirs.add(path)
            elif member.isreg() and wanted.match(path):
                files[path] = _data(archive, member, name)
                meta[path] = (member.mode, member.uid, member.gid)
            elif member.islnk() and wanted.match(path):
                meta[path] = (member.mode, member.uid, member.gid)
                target = _path(member.linkname, name)
                if target in files:
                    files[path] = files[target]
                else:
                    hardlinks[path] = target
            elif member.issym() and wanted.match(path):
                links[path] = member.linkname
    if hardlinks:
        targets = set(hardlinks.values())
        found: dict[str, bytes] = {}
        with open_blob() as stream, _tar(stream, name) as archive:
            for member in _members(archive, name):
                path = _path(member.name, name)
                if path in targets and member.isreg():
                    found[path] = _data(archive, member, name)
        for path, target in hardlinks.items():
            if target not in found:
                raise RegistryError(
                    f"the layer {name} has a hard link {path!r} to {target!r}, which is not a "
                    "file earlier in it: it is not a valid image layer.",
                    hint="Rebuild and publish the version; the registry's copy is damaged.",
                )
            files[path] = found[target]
    return LayerChange(
        deleted=tuple(sorted(set(deleted))),
        opaque=tuple(sorted(set(opaque))),
        files=files,
        links=links,
        meta=meta,
        dirs=tuple(sorted(dirs)),
    )


def _tar(stream: IO[bytes], name: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=stream, mode="r|*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _not_a_layer(name, exc) from exc


def _members(archive: tarfile.TarFile, name: str) -> Iterator[tarfile.TarInfo]:
    """The archive's members; a damaged stream is a RegistryError naming the layer."""
    try:
        yield from archive
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _not_a_layer(name, exc) from exc


def _data(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> bytes:
    try:
        data = archive.extractfile(member)
        return data.read() if data is not None else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _not_a_layer(name, exc) from exc


def _path(raw: str, name: str) -> str:
    """A member's path from the root, as the engine unpacks it ("" for the root)."""
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise RegistryError(
            f"the layer {name} holds {raw!r}, a path that escapes the root: it is not a valid "
            "image layer.",
            hint="Rebuild and publish the version; nothing of that layer was used.",
        )
    return "/".join(parts)


def _not_a_layer(name: str, exc: BaseException) -> RegistryError:
    return RegistryError(
        f"the layer {name} the registry served is not a complete tar ({type(exc).__name__}).",
        hint="Run again; if it fails the same way, the registry's copy is damaged: rebuild and "
        "publish the version.",
    )
