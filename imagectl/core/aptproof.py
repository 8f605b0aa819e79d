"""The archive proof: are the apt downloads captured while a version was built exactly the files
that signed indexes name, and do they cover the packages the version installed?

The chain apt itself trusts: an InRelease (or Release + Release.gpg) whose signature verifies
against the image's keyrings lists the sha256 of each index (Packages, by path or by-hash); each
verified index lists the sha256 and size of each .deb at its `Filename:`. A download proved by
that chain is verified; anything else captured, and any package of the version's dpkg delta
without a verified .deb, is a line of `missing`. Pure: the signature checks are passed in.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote

from imagectl.core.archive import Download
from imagectl.core.deb822 import paragraphs
from imagectl.core.errors import ArchiveError

Kind = Literal["deb", "index", "file"]
_DECOMPRESS: Mapping[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".xz": lzma.decompress,
    ".bz2": bz2.decompress,
}
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledPackage:
    """A package the version's dpkg delta added or changed."""

    name: str
    version: str
    architecture: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvedFile:
    """A captured download and whether the signed chain names it."""

    url: str
    sha256: str
    size: int
    kind: Kind
    verified: bool
    package: str = ""  # "name=version/arch" for a verified deb


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """Every download, proved or not, and what keeps the archive from being complete."""

    files: tuple[ProvedFile, ...]
    missing: tuple[str, ...]  # human one-liners, sorted

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    """What a verified index says of one file: its hash, size and (for a deb) package."""

    sha256: str
    size: int
    path: str  # as the index names it: a Release's path of an index, a Packages' Filename
    base: str = ""  # of an index: the folder of the Release that lists it
    package: str = ""  # of a deb: "name=version/arch"


def _as_url(path: str) -> str:
    """An index's path as apt asks for it: percent-escaped, so that normalise() gives the path
    back as written (a file name may hold a literal `%`, as `apt-get download` writes `2%3a1.0`
    for an epoch)."""
    return quote(path, safe="/")


def normalise(url: str) -> str:
    """One spelling per URL: percent-escapes decoded (apt asks for `1.0%7e1` of `1.0~1`), a
    flat repo's `./` and doubled slashes dropped from the path."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    path = unquote(path)
    while "/./" in f"/{path}":
        path = f"/{path}".replace("/./", "/", 1)[1:]
    path = re.sub("/{2,}", "/", path)
    return f"{scheme}{sep}{host.lower()}{slash}{path}"


def prove(
    downloads: Sequence[Download],
    delta: Sequence[InstalledPackage],
    *,
    verify: Callable[[bytes], bytes | None],
    read: Callable[[Path], bytes] = Path.read_bytes,
    verify_detached: Callable[[bytes, bytes], bool] | None = None,
    now: datetime | None = None,
) -> Proof:
    """Prove `downloads` against the signed chain and check they cover `delta`. `verify` gives
    an InRelease's signed text or None; `verify_detached(release, signature)` judges a Release
    with its Release.gpg (none given: such a Release is unverified); with `now`, a Release
    past its Valid-Until is unverified, as apt refuses it. Raises ArchiveError when a verified
    index names a download's URL with another hash: the mirror served a file its signed index
    does not name, and nothing may be recorded from that build."""
    urls = [normalise(download.url) for download in downloads]
    by_url = dict(zip(urls, downloads, strict=True))
    proved: dict[int, ProvedFile] = {}  # by position: one URL may have been fetched twice
    missing: list[str] = []
    indexes: dict[str, list[_Entry]] = {}  # URL -> what verified Release files say of it
    for at, (url, download) in enumerate(zip(urls, downloads, strict=True)):
        signed = _release_text(
            url, download, by_url, verify=verify, detached=verify_detached, read=read
        )
        if signed is None:
            continue
        text = signed.decode("utf-8", "replace")
        why = _refusal(text, now=now) if signed else _unsigned(url, by_url)
        proved[at] = _file(download, "index", verified=not why)
        if why:
            missing.append(f"{download.url}: {why}")
            continue
        for index_url, entry in release_entries(url, text):
            indexes.setdefault(index_url, []).append(entry)
    for at, url in enumerate(urls):  # a Release.gpg is as good as the Release it signs
        release = url.removesuffix(".gpg")
        if url.endswith("/Release.gpg") and release in urls and at not in proved:
            verified = proved[urls.index(release)].verified
            proved[at] = _file(downloads[at], "file", verified=verified)
    debs: dict[str, list[_Entry]] = {}  # URL -> what verified Packages indexes say of it
    for at, (url, index) in enumerate(zip(urls, downloads, strict=True)):
        if at in proved or url not in indexes:
            continue
        matching = [entry for entry in indexes[url] if _same(index, entry)]
        proved[at] = _file(index, "index", verified=bool(matching))
        if not matching:
            missing.append(f"{index.url}: its hash differs from the one its signed Release lists")
            continue
        name = matching[0].path.rsplit("/", 1)[-1]
        if name.startswith("Packages"):
            unpack = _DECOMPRESS.get(Path(name).suffix, _as_is)
            text = unpack(read(index.path)).decode("utf-8", "replace")
            for deb_url, entry in _package_entries(matching[0].base, text):
                debs.setdefault(deb_url, []).append(entry)
    files = tuple(
        proved.get(at) or _deb(url, download, debs, missing)
        for at, (url, download) in enumerate(zip(urls, downloads, strict=True))
    )
    covered = {file.package for file in files if file.kind == "deb" and file.verified}
    for package in delta:
        wanted = f"{package.name}={package.version}/{package.architecture}"
        if wanted not in covered and f"{package.name}={package.version}/all" not in covered:
            missing.append(
                f"{wanted} installed but its .deb was not captured (downloaded over https or "
                "copied in?)"
            )
    return Proof(files=files, missing=tuple(sorted(set(missing))))


def _release_text(
    url: str,
    download: Download,
    by_url: Mapping[str, Download],
    *,
    verify: Callable[[bytes], bytes | None],
    detached: Callable[[bytes, bytes], bool] | None,
    read: Callable[[Path], bytes],
) -> bytes | None:
    """A Release file's verified text; b"" for a Release file that does not verify; None for
    a download that is no Release file (a Release.gpg is judged with its Release)."""
    name = url.rsplit("/", 1)[-1]
    if name == "InRelease":
        return verify(read(download.path)) or b""
    if name != "Release":
        return None
    signature = by_url.get(f"{url}.gpg")
    if signature is None or detached is None:
        return b""
    data = read(download.path)
    return data if detached(data, read(signature.path)) else b""


def _refusal(text: str, *, now: datetime | None) -> str:
    """Why apt would refuse a Release whose signature verifies; "" when it would not."""
    fields = paragraphs(text)[:1] or ({},)
    until = fields[0].get("Valid-Until", "")
    if now is None or not until:
        return ""
    try:
        when = parsedate_to_datetime(until)
    except (TypeError, ValueError):
        return f"its Valid-Until {until!r} is no date"
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)  # RFC 2822 "-0000" parses naive: UTC
    return f"it was valid until {until}" if aware < now.astimezone(UTC) else ""


def release_entries(url: str, text: str) -> list[tuple[str, _Entry]]:
    """(URL, entry) of every file the SHA256 list of a verified Release names, by path and,
    for a repo that says `Acquire-By-Hash: yes` or not, by hash (apt asks by-hash only when it
    does; a by-hash URL carries its own hash, so accepting one can never widen trust)."""
    base = url.rsplit("/", 1)[0] + "/"
    found = []
    for paragraph in paragraphs(text)[:1]:
        for line in paragraph.get("SHA256", "").splitlines():
            parts = line.split()
            if len(parts) != 3 or not _HASH.fullmatch(parts[0]) or not parts[1].isdigit():
                continue
            digest, size, path = parts[0], int(parts[1]), parts[2]
            entry = _Entry(sha256=digest, size=size, path=path, base=base)
            found.append((normalise(base + _as_url(path)), entry))
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            found.append((normalise(f"{base}{folder}by-hash/SHA256/{digest}"), entry))
    return found


def _package_entries(release_base: str, text: str) -> list[tuple[str, _Entry]]:
    """(URL, entry) of every deb a verified Packages index names. `Filename:` is relative to
    the archive root: the folder above `dists/` of a dists-style repo, the Release's folder of
    a flat one."""
    cut = release_base.rfind("/dists/")
    root = release_base[: cut + 1] if cut >= 0 else release_base
    found = []
    for paragraph in paragraphs(text):
        filename, digest = paragraph.get("Filename", ""), paragraph.get("SHA256", "").lower()
        if not filename or not _HASH.fullmatch(digest) or not paragraph.get("Size", "").isdigit():
            continue
        package = "{}={}/{}".format(
            paragraph.get("Package", ""), paragraph.get("Version", ""),
            paragraph.get("Architecture", ""),
        )  # fmt: skip
        entry = _Entry(sha256=digest, size=int(paragraph["Size"]), path=filename, package=package)
        found.append((normalise(root + _as_url(filename)), entry))
    return found


def _deb(
    url: str, download: Download, debs: Mapping[str, list[_Entry]], missing: list[str]
) -> ProvedFile:
    """A download no Release names: a deb a verified index names, or an unproved file."""
    name = url.rsplit("/", 1)[-1]
    kind: Kind = "deb" if name.endswith(".deb") or url in debs else "file"
    if kind == "file" and (name.startswith("Packages") or "/by-hash/" in url):
        kind = "index"
    entries = debs.get(url, [])
    matching = [entry for entry in entries if _same(download, entry)]
    if matching:
        return _file(download, kind, verified=True, package=matching[0].package)
    if entries:
        expected = ", ".join(f"sha256 {e.sha256} size {e.size}" for e in entries)
        raise ArchiveError(
            f"{download.url} has sha256 {download.sha256} size {download.size}; its signed "
            f"index names {expected}.",
            hint="The mirror served a file its signed index does not name; nothing is recorded.",
        )
    # A plain file (a tool's tarball over http) is kept and served offline as fetched, only
    # not proved; an apt file that no signature covers is one apt itself would not trust.
    what = {"deb": "a .deb no verified index", "index": "an index no verified Release"}
    if kind in what:
        missing.append(f"{download.url}: {what[kind]} names")
    return _file(download, kind, verified=False)


def _unsigned(url: str, by_url: Mapping[str, Download]) -> str:
    if url.endswith("/Release") and f"{url}.gpg" not in by_url:
        return "a Release without signature (no Release.gpg was captured)"
    return "its signature does not verify against the image's keyrings"


def _as_is(data: bytes) -> bytes:
    return data


def _same(download: Download, entry: _Entry) -> bool:
    return download.sha256.lower() == entry.sha256 and download.size == entry.size


def _file(download: Download, kind: Kind, *, verified: bool, package: str = "") -> ProvedFile:
    return ProvedFile(url=download.url, sha256=download.sha256, size=download.size, kind=kind,
                      verified=verified, package=package)  # fmt: skip
