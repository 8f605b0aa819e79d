"""A container's writable layer as a tar (a pod backup): read it in the OCI layer format
(whiteouts `.wh.NAME`, opaque folders `.wh..wh..opq`) or in overlayfs' own form (a tar of an
upper directory: 0/0 character devices as whiteouts, the `overlay.opaque` xattr), refuse what
would escape the root, and write a layer back in the OCI form with some paths dropped or
replaced. Pure: it reads and writes the streams it is given."""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Literal

from imagectl.core.errors import BackupError

Kind = Literal["file", "dir", "symlink", "hardlink", "device", "fifo"]

WHITEOUT = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
XATTR = "SCHILY.xattr."  # how GNU tar and Go's archive/tar carry an xattr in a pax header
# overlayfs' marks, as root writes them (trusted.*) and as a rootless engine does (user.*)
OVERLAY_PREFIXES = ("trusted.overlay.", "user.overlay.")
# A folder whose content stays below (redirect) or a file whose data stays below (metacopy):
# the layer alone does not say what the pod saw, so a restore of it is undefined.
UNDEFINED_MARKS = ("redirect", "metacopy")
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerEntry:
    """One path a layer adds or replaces (not a whiteout)."""

    path: str  # from the root, no leading /
    kind: Kind
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""  # a file's content (a hard link: its target's)
    link: str = ""  # a symlink's or hard link's target


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerTar:
    """What one layer tar changes: its entries, whiteouts and opaque folders."""

    entries: Mapping[str, LayerEntry] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()  # whiteouts: the path and everything below it are gone
    opaque: tuple[str, ...] = ()  # folders whose content in the layers below is hidden
    undefined: tuple[tuple[str, str], ...] = ()  # (path, overlay mark): redirect or metacopy
    contents: Mapping[str, bytes] = field(default_factory=dict)  # the files `keep` asked for
    form: Literal["oci", "overlay", "none"] = "none"  # how its whiteouts were written


def read_layer_tar(
    stream: IO[bytes], *, name: str, keep: Callable[[str], bool] = lambda _path: False
) -> LayerTar:
    """Read a layer tar (plain or compressed); `keep` selects files whose content is kept.
    A stream that is not a tar, a path that escapes the root, a link pointing out of it, a
    path given twice, or a whiteout beside an entry of the same path is a BackupError."""
    entries: dict[str, LayerEntry] = {}
    deleted: list[str] = []
    opaque: list[str] = []
    undefined: list[tuple[str, str]] = []
    contents: dict[str, bytes] = {}
    forms: set[str] = set()
    try:
        archive = tarfile.open(fileobj=stream, mode="r:*")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(
            f"is not a layer tar ({exc}).",
            hint="Give the writable layer as a tar: the top layer of `docker commit`'s image "
            "(from `docker save`), or `tar --xattrs -C UPPERDIR -cf backup.tar .` of an "
            "overlay upper directory.",
            path=name,
        ) from exc
    with archive:
        try:
            for member in archive:
                path = member_path(member.name, name=name)
                if not path:
                    continue  # the root folder itself
                base, leaf = posixpath.split(path)
                marks = _overlay_marks(member)
                for mark in UNDEFINED_MARKS:
                    if mark in marks:
                        undefined.append((path, f"overlay.{mark}"))
                if leaf == OPAQUE_MARKER:
                    _add_opaque(opaque, base, forms, "oci")
                    continue
                if leaf.startswith(WHITEOUT + WHITEOUT) or any(
                    part.startswith(WHITEOUT) for part in base.split("/")
                ):
                    raise BackupError(
                        f"holds {path!r}, an aufs-internal file or a whiteout used as a "
                        "folder, which no OCI layer has.",
                        hint="Take the backup from an overlay2 engine (docker commit + docker "
                        "save), or remove that file from the tar.",
                        path=name,
                    )
                if leaf.startswith(WHITEOUT):
                    deleted.append(posixpath.join(base, leaf[len(WHITEOUT) :]))
                    forms.add("oci")
                    continue
                if member.ischr() and member.devmajor == 0 and member.devminor == 0:
                    deleted.append(path)  # overlayfs' whiteout: a 0/0 character device
                    forms.add("overlay")
                    continue
                if member.isreg() and "whiteout" in marks:
                    deleted.append(path)  # an overlay "xwhiteout": a file marked as one
                    forms.add("overlay")
                    continue
                if member.isdir() and marks.get("opaque") == "y":
                    _add_opaque(opaque, path, forms, "overlay")
                if path in entries:
                    raise BackupError(
                        f"holds {path!r} twice.",
                        hint="A layer names each path once; take the backup again.",
                        path=name,
                    )
                entry = _entry(archive, member, path, entries, name=name)
                entries[path] = entry
                if entry.kind == "file" and keep(path):
                    contents[path] = _read(archive, member)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(
                f"is not a complete layer tar ({exc}).",
                hint="The file is cut short or damaged; take the backup again.",
                path=name,
            ) from exc
    both = sorted(set(deleted) & set(entries))
    if both:
        raise BackupError(
            f"holds both a whiteout and an entry for {both[0]!r}.",
            hint="A layer either deletes a path or adds it; take the backup again.",
            path=name,
        )
    return LayerTar(
        entries=entries,
        deleted=tuple(sorted(set(deleted))),
        opaque=tuple(sorted(set(opaque))),
        undefined=tuple(undefined),
        contents=contents,
        form="overlay" if "overlay" in forms else "oci" if forms else "none",
    )


def member_path(raw: str, *, name: str) -> str:
    """A member's path from the root ("" for the root), refusing one that escapes it."""
    if raw.startswith("/"):
        raise BackupError(
            f"holds an absolute path, {raw!r}: a layer's paths are relative to its root.",
            hint="Make the tar from inside the layer: `tar -C UPPERDIR -cf backup.tar .`.",
            path=name,
        )
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BackupError(
            f"holds {raw!r}, a path that escapes the root with '..'.",
            hint="This is not a container's layer; nothing of it was used.",
            path=name,
        )
    return "/".join(parts)


def _add_opaque(opaque: list[str], path: str, forms: set[str], form: str) -> None:
    opaque.append(path)
    forms.add(form)


def _overlay_marks(member: tarfile.TarInfo) -> dict[str, str]:
    """The overlay xattrs of a member, by their short name (opaque, redirect, ...)."""
    marks = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(XATTR):
            continue
        attr = key[len(XATTR) :]
        for prefix in OVERLAY_PREFIXES:
            if attr.startswith(prefix):
                marks[attr[len(prefix) :]] = value
    return marks


def _entry(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    path: str,
    entries: Mapping[str, LayerEntry],
    *,
    name: str,
) -> LayerEntry:
    def made(kind: Kind, *, size: int = 0, sha256: str = "", link: str = "") -> LayerEntry:
        return LayerEntry(
            path=path, kind=kind, mode=member.mode, uid=member.uid, gid=member.gid,
            size=size, sha256=sha256, link=link,
        )  # fmt: skip

    if member.isreg():
        digest, size = _hash(archive, member)
        return made("file", size=size, sha256=digest)
    if member.isdir():
        return made("dir")
    if member.issym():
        _check_symlink(path, member.linkname, name=name)
        return made("symlink", link=member.linkname)
    if member.islnk():
        target = member_path(member.linkname, name=name) if member.linkname else ""
        found = entries.get(target)
        if found is None or found.kind != "file":
            raise BackupError(
                f"holds {path!r}, a hard link to {member.linkname!r}, which is not a file "
                "earlier in the same tar.",
                hint="A layer's hard links point at files of that layer; take the backup again.",
                path=name,
            )
        return made("hardlink", size=found.size, sha256=found.sha256, link=target)
    if member.ischr() or member.isblk():
        return made("device")
    if member.isfifo():
        return made("fifo")
    raise BackupError(
        f"holds {path!r} of tar type {member.type!r}, which no layer has.",
        hint="Take the backup again as a plain tar of the layer.",
        path=name,
    )


def _check_symlink(path: str, target: str, *, name: str) -> None:
    """A relative symlink must stay inside the root (an absolute one is resolved inside the
    pod's root, as the engine does); one that climbs out would point at the host when the tar
    is unpacked outside a container."""
    if target.startswith("/"):
        return
    depth = path.count("/")  # folders above the link, from the root
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise BackupError(
                    f"holds {path!r}, a symlink to {target!r}, which points out of the root.",
                    hint="This is not a container's layer; nothing of it was used.",
                    path=name,
                )
        elif part not in ("", "."):
            depth += 1


def _hash(archive: tarfile.TarFile, member: tarfile.TarInfo) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    data = archive.extractfile(member)
    if data is not None:
        with data:
            while chunk := data.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    data = archive.extractfile(member)
    if data is None:
        return b""
    with data:
        return data.read()


def content_hash(data: bytes) -> str:
    """A file's content as LayerEntry.sha256 writes it."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def write_layer_tar(
    source: IO[bytes],
    out: IO[bytes],
    *,
    dropped: frozenset[str] | set[str],
    replaced: Mapping[str, bytes],
    name: str,
) -> None:
    """Copy the layer tar `source` to `out` in the OCI form, without the `dropped` paths and
    with the `replaced` files' new content: overlay whiteouts become `.wh.` files, overlay
    opaque folders get `.wh..wh..opq`, overlay xattrs are left out. A hard link whose target
    is dropped or replaced is written as a file of its own. `source` was read by
    read_layer_tar already (its paths are known to be safe)."""
    written: set[str] = set()
    files: dict[str, tarfile.TarInfo] = {}  # the regular files so far, by path
    with (
        tarfile.open(fileobj=source, mode="r:*") as archive,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as merged,
    ):
        for member in archive:
            path = member_path(member.name, name=name)
            if not path:
                continue
            base, leaf = posixpath.split(path)
            marks = _overlay_marks(member)
            headers = {
                key: value
                for key, value in member.pax_headers.items()
                if not (key.startswith(XATTR) and key[len(XATTR) :].startswith(OVERLAY_PREFIXES))
            }
            if leaf == OPAQUE_MARKER or leaf.startswith(WHITEOUT):
                target = base if leaf == OPAQUE_MARKER else posixpath.join(base, leaf[4:])
                if target not in dropped:
                    merged.addfile(_marker(path, member))
                continue
            whiteout = (member.ischr() and member.devmajor == 0 and member.devminor == 0) or (
                member.isreg() and "whiteout" in marks
            )
            if member.isreg() and not whiteout:
                files[path] = member  # a hard link's data, even when this path is dropped
            if path in dropped:
                continue
            if whiteout:
                merged.addfile(_marker(posixpath.join(base, WHITEOUT + leaf), member))
                continue
            copy = _copy(member, path, headers)
            if member.islnk():
                copy.linkname = _link_target(member, name)
            if path in replaced:
                data = replaced[path]
                copy.type, copy.size, copy.linkname = tarfile.REGTYPE, len(data), ""
                merged.addfile(copy, io.BytesIO(data))
            elif member.islnk() and _link_target(member, name) not in written:
                target = _link_target(member, name)
                copy.type, copy.linkname = tarfile.REGTYPE, ""
                if target in replaced:
                    copy.size = len(replaced[target])
                    merged.addfile(copy, io.BytesIO(replaced[target]))
                else:
                    copy.size = files[target].size
                    merged.addfile(copy, archive.extractfile(files[target]))
            elif member.isreg():
                merged.addfile(copy, archive.extractfile(member))
            else:
                merged.addfile(copy)
            written.add(path)
            if member.isdir() and marks.get("opaque") == "y":
                merged.addfile(_marker(posixpath.join(path, OPAQUE_MARKER), member))


def _link_target(member: tarfile.TarInfo, name: str) -> str:
    return member_path(member.linkname, name=name)


def _copy(member: tarfile.TarInfo, path: str, headers: Mapping[str, str]) -> tarfile.TarInfo:
    copy = tarfile.TarInfo(path)
    for attr in ("mode", "uid", "gid", "mtime", "type", "linkname", "uname", "gname", "size"):
        setattr(copy, attr, getattr(member, attr))
    copy.devmajor, copy.devminor = member.devmajor, member.devminor
    if member.isreg():
        copy.type = tarfile.REGTYPE  # a sparse or contiguous file is written as a plain one
    copy.pax_headers = {k: v for k, v in headers.items() if k.startswith(XATTR)}
    return copy


def _marker(path: str, like: tarfile.TarInfo) -> tarfile.TarInfo:
    """An empty file: an OCI whiteout or opaque marker."""
    marker = tarfile.TarInfo(path)
    marker.mtime, marker.uid, marker.gid, marker.mode = like.mtime, 0, 0, 0o644
    return marker
