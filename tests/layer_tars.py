"""Hand-made layer tars for the restore-check tests: OCI and overlayfs forms, and broken ones."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field


@dataclass
class Member:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    xattrs: dict[str, str] = field(default_factory=dict)
    device: tuple[int, int] = (0, 0)
    uid: int = 0
    gid: int = 0


def file(name: str, data: bytes | str, **kw: object) -> Member:
    return Member(name, data=data.encode() if isinstance(data, str) else data, **kw)  # type: ignore[arg-type]


def folder(name: str, **xattrs: str) -> Member:
    return Member(name, tarfile.DIRTYPE, mode=0o755, xattrs=xattrs)


def symlink(name: str, target: str) -> Member:
    return Member(name, tarfile.SYMTYPE, link=target, mode=0o777)


def hardlink(name: str, target: str, **kw: object) -> Member:
    return Member(name, tarfile.LNKTYPE, link=target, **kw)  # type: ignore[arg-type]


def whiteout(name: str) -> Member:
    """The OCI form: an empty `.wh.NAME` beside NAME."""
    head, _, leaf = name.rpartition("/")
    return file(f"{head}/.wh.{leaf}" if head else f".wh.{leaf}", b"")


def opaque(name: str) -> Member:
    return file(f"{name}/.wh..wh..opq", b"")


def overlay_whiteout(name: str) -> Member:
    """overlayfs' form: a 0/0 character device."""
    return Member(name, tarfile.CHRTYPE, mode=0)


def overlay_opaque(name: str) -> Member:
    return folder(name, **{"SCHILY.xattr.trusted.overlay.opaque": "y"})


def layer(*members: Member) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.mode, info.linkname = member.kind, member.mode, member.link
            info.devmajor, info.devminor = member.device
            info.uid, info.gid = member.uid, member.gid
            info.pax_headers = dict(member.xattrs)
            if member.kind == tarfile.REGTYPE:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def content(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        found = tar.extractfile(name)
        assert found is not None
        return found.read()
