"""OCI artifacts attached to an image (pure): the artifact's manifest with its `subject`, and the
referrers tag scheme that finds it on a registry without the referrers API (CNCF distribution
2.8): an image index under the tag `sha256-<subject hex>` listing every artifact of that image
(OCI distribution spec 1.1, "Referrers Tag Schema"). The artifact is stored by its digest and
never changed; the index only ever gains entries.

An archive (a version's input files) is an artifact of its own under a tag: a config the caller
writes, each file one layer named by its title, in the caller's order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"  # the config of an artifact that needs none
EMPTY_DATA = b"{}"
TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says of a blob."""

    media_type: str
    digest: str
    size: int
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_oci(self) -> dict[str, object]:
        found: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            found["artifactType"] = self.artifact_type
        if self.annotations:
            found["annotations"] = dict(self.annotations)
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """One file attached to an image: what it is (`artifact_type`), its bytes and name."""

    artifact_type: str
    media_type: str
    data: bytes
    title: str
    annotations: Mapping[str, str] = field(default_factory=dict)  # the manifest's


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveFile:
    """One file of an archive: where it is on disk, its content's sha256 (hex) and size, and
    how the archive names it (`title`, the layer's org.opencontainers.image.title)."""

    path: Path
    sha256: str
    size: int
    media_type: str
    title: str

    def descriptor(self) -> Descriptor:
        return Descriptor(
            media_type=self.media_type, digest=f"sha256:{self.sha256}", size=self.size,
            annotations={TITLE: self.title},
        )  # fmt: skip


class NotAnArchiveError(ValueError):
    """A manifest that is not an image manifest with a config and layers."""


def blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor_of(data: bytes, media_type: str) -> Descriptor:
    return Descriptor(media_type=media_type, digest=blob_digest(data), size=len(data))


def artifact_manifest(artifact: Artifact, subject: Descriptor) -> bytes:
    """The artifact's image manifest (an empty config, the file as its one layer, the image as
    its subject), as bytes: the same artifact on the same image always has the same digest."""
    layer = descriptor_of(artifact.data, artifact.media_type)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": descriptor_of(EMPTY_DATA, EMPTY).to_oci(),
        "layers": [
            Descriptor(
                media_type=layer.media_type,
                digest=layer.digest,
                size=layer.size,
                annotations={TITLE: artifact.title},
            ).to_oci()
        ],
        "subject": subject.to_oci(),
        "annotations": dict(artifact.annotations),
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def referrers_tag(subject_digest: str) -> str:
    """The tag whose index lists the artifacts of `subject_digest`: `sha256-<hex>`."""
    algorithm, _, hexed = subject_digest.partition(":")
    return f"{algorithm}-{hexed}"


class NotAnIndexError(ValueError):
    """What the referrers tag names is not an image index."""


def referrers_in(index: bytes) -> tuple[Descriptor, ...]:
    """The artifacts an index under the referrers tag lists."""
    try:
        data = json.loads(index)
        entries = data.get("manifests", [])
        return tuple(
            Descriptor(
                media_type=str(entry["mediaType"]),
                digest=str(entry["digest"]),
                size=int(entry["size"]),
                artifact_type=str(entry.get("artifactType", "")),
                annotations={str(k): str(v) for k, v in entry.get("annotations", {}).items()},
            )
            for entry in entries
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise NotAnIndexError(str(exc)) from None


def with_referrer(index: bytes | None, referrer: Descriptor) -> bytes | None:
    """The referrers index with `referrer` added (made when there is none yet); None when it
    lists it already. Entries that are there stay as they are, in their order."""
    if index is None:
        data: dict[str, object] = {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
    else:
        if any(found.digest == referrer.digest for found in referrers_in(index)):
            return None
        data = json.loads(index)
    manifests = data.get("manifests")
    assert isinstance(manifests, list)  # referrers_in has read it as a list
    manifests.append(referrer.to_oci())
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def archive_manifest(
    *, artifact_type: str, config: Descriptor, layers: tuple[Descriptor, ...]
) -> bytes:
    """The archive's image manifest as bytes: the same files in the same order with the same
    config always make the same digest (sorted keys, no spaces)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": config.to_oci(),
        "layers": [layer.to_oci() for layer in layers],
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def archive_parts(manifest: bytes) -> tuple[Descriptor, tuple[Descriptor, ...]]:
    """The config and the layers (with their annotations) an image manifest lists."""
    try:
        data = json.loads(manifest)
        config, layers = data["config"], data["layers"]
        return _descriptor(config), tuple(_descriptor(layer) for layer in layers)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise NotAnArchiveError(f"{type(exc).__name__}: {exc}") from None


def _descriptor(entry: Mapping[str, object]) -> Descriptor:
    annotations = entry.get("annotations") or {}
    size = entry["size"]
    if not isinstance(annotations, dict) or not isinstance(size, int):
        raise TypeError("a descriptor's size or annotations have the wrong type")
    return Descriptor(
        media_type=str(entry["mediaType"]),
        digest=str(entry["digest"]),
        size=size,
        artifact_type=str(entry.get("artifactType", "")),
        annotations={str(k): str(v) for k, v in annotations.items()},
    )
