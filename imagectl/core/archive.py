"""A version's input archive (pure): what its build downloaded and which pinned images it used,
proved or not, as the capture record kept beside the engine's images and as the configuration
of the OCI artifact `publish` stores under `<repository>-inputs:v<N>`.

The same record is both, so what `imagectl archive` shows before publishing is what the
registry holds after it: one JSON form, keys sorted, no credentials (URLs are recorded without
user information, and nothing of a request's headers is kept).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ARTIFACT_TYPE = "application/vnd.imagectl.inputs.v1+json"  # the artifact's artifactType
CONFIG_MEDIA_TYPE = "application/vnd.imagectl.inputs.config.v1+json"
DEB_MEDIA_TYPE = "application/vnd.debian.binary-package"
FILE_MEDIA_TYPE = "application/octet-stream"
FORMAT = 1
FileKind = Literal["deb", "index", "wheel", "file"]
FILE_KINDS: tuple[FileKind, ...] = ("deb", "index", "wheel", "file")


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchivedFile:
    """One input: a download (its URL), or a file of the increment's folder (`context:` and its
    path), with its content hash; `package` names a deb's package ("name=version/arch")."""

    url: str
    sha256: str  # hex
    size: int
    kind: FileKind
    verified: bool = False  # named by a signed index whose signature verified at capture
    package: str = ""

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def media_type(self) -> str:
        return DEB_MEDIA_TYPE if self.kind == "deb" else FILE_MEDIA_TYPE


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchivedImage:
    """An image the build started from (the base, a helper stage's image), pinned by digest."""

    ref: str  # as the increment named it, pinned: "name@sha256:..."
    role: Literal["base", "helper"]

    @property
    def digest(self) -> str:
        return self.ref.rpartition("@")[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class InputArchive:
    """Everything one version was made from, and what could not be kept."""

    line: str
    version: int
    image_id: str
    files: tuple[ArchivedFile, ...] = ()
    images: tuple[ArchivedImage, ...] = ()
    missing: tuple[str, ...] = ()  # one line each: what was not captured, and why

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def state(self) -> str:
        """As the lock's `archive_state` records it."""
        return "complete" if self.complete else "incomplete"

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "line": self.line,
            "version": self.version,
            "image_id": self.image_id,
            "complete": self.complete,
            "files": [_file_json(f) for f in self.files],
            "images": [{"ref": i.ref, "role": i.role} for i in self.images],
            "missing": list(self.missing),
        }

    def config_bytes(self) -> bytes:
        """The artifact's configuration: the same archive always gives the same bytes."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Download:
    """One http response a build fetched through the capture proxy, stored at `path`."""

    url: str  # as requested, without user information
    sha256: str  # hex
    size: int
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Missing:
    """What a proxy could not keep (an https tunnel, an upstream failure) or serve."""

    url: str
    reason: str


def _file_json(file: ArchivedFile) -> dict[str, object]:
    return {
        "url": file.url, "sha256": file.sha256, "size": file.size, "kind": file.kind,
        "verified": file.verified, "package": file.package,
    }  # fmt: skip


class ArchiveFormatError(ValueError):
    """A capture record or artifact configuration that is not one imagectl wrote."""


def archive_from_json(data: bytes) -> InputArchive:
    """The archive a record's bytes describe; ArchiveFormatError when they are not one."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ArchiveFormatError("not an imagectl input archive (format 1)")
        files = tuple(_file(entry) for entry in raw["files"])
        images = tuple(
            ArchivedImage(ref=str(entry["ref"]), role=_role(entry["role"]))
            for entry in raw["images"]
        )
        archive = InputArchive(
            line=str(raw["line"]),
            version=int(raw["version"]),
            image_id=str(raw["image_id"]),
            files=files,
            images=images,
            missing=tuple(str(item) for item in raw["missing"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ArchiveFormatError):
            raise
        raise ArchiveFormatError(f"malformed input archive: {exc}") from exc
    return archive


def _file(entry: Mapping[str, object]) -> ArchivedFile:
    kind = entry["kind"]
    sha256 = str(entry["sha256"])
    if kind not in FILE_KINDS or len(sha256) != 64:
        raise ArchiveFormatError(f"bad file entry {entry!r}")
    size = entry["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveFormatError(f"bad size in {entry!r}")
    return ArchivedFile(
        url=str(entry["url"]), sha256=sha256, size=size, kind=kind,
        verified=bool(entry.get("verified", False)), package=str(entry.get("package", "")),
    )  # fmt: skip


def _role(value: object) -> Literal["base", "helper"]:
    if value not in ("base", "helper"):
        raise ArchiveFormatError(f"bad image role {value!r}")
    return value


def archive_repository(repository: str) -> str:
    """Where a line's archives are stored: beside its images, never among its tags."""
    return f"{repository}-inputs"


def archive_tag(repository: str, version: int) -> str:
    return f"{archive_repository(repository)}:v{version}"


def distinct_files(archive: InputArchive) -> tuple[ArchivedFile, ...]:
    """Each content once (two URLs of the same bytes, as by-hash and plain index paths are,
    are one layer of the artifact)."""
    seen: dict[str, ArchivedFile] = {}
    for file in archive.files:
        seen.setdefault(file.sha256, file)
    return tuple(seen.values())
