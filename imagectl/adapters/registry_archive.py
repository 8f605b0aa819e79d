"""Archives and copies on a registry: a version's input files stored as one tagged OCI artifact
(each file a blob streamed from disk and stored once per repository; a tag never overwritten),
and an image copied by digest into another repository (its blobs mounted across repositories
of the same registry, streamed otherwise). Also the blob and manifest requests the registry
adapter (`registry`) shares with it: over the same transport, with the same auth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import IO, BinaryIO

from imagectl.adapters.registry_http import (
    ABSENT_CODES,
    ACCEPT,
    INDEX_TYPES,
    RegistryTransport,
    Response,
    registry_hint,
    same_registry_path,
    status_error,
)
from imagectl.core.artifacts import (
    MANIFEST,
    ArchiveFile,
    Descriptor,
    NotAnArchiveError,
    archive_manifest,
    archive_parts,
    blob_digest,
    descriptor_of,
)
from imagectl.core.errors import RegistryError
from imagectl.core.references import ImageRef as Reference
from imagectl.core.references import parse_reference

OpenBlob = Callable[[str, Descriptor], AbstractContextManager[IO[bytes]]]
MOST_CONFIG = 4 << 20  # bytes of an archive's config read whole (the caller's small JSON)
COPY_CHUNK = 1 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BlobTurns:
    """One request at a time on a blob of a repository, among this process's threads:
    distribution 2.8 answers a HEAD of a blob whose link another request is writing with HTTP
    500 ("invalid checksum digest format"; seen with four archives of a line sharing a file
    stored at once)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def __call__(self, ref: Reference, digest: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((ref.api_host, ref.path, digest), threading.Lock())
        with lock:
            yield


class RegistryArchive:
    """put_archive, read_archive and copy_image of `RegistryClient`, on its transport."""

    def __init__(
        self, transport: RegistryTransport, *, open_blob: OpenBlob, turns: BlobTurns
    ) -> None:
        self._transport = transport
        self._open_blob = open_blob
        self._blob = turns

    def put_archive(
        self,
        ref: str,
        *,
        artifact_type: str,
        config: bytes,
        config_media_type: str,
        files: Sequence[ArchiveFile],
    ) -> str:
        """Store `files` (one layer each, in order) with `config` as an artifact under the tag
        `ref` (host/repo:tag); returns the manifest digest. Blobs the repository has are not
        sent again; a tag that names another manifest is never overwritten."""
        parsed = parse_reference(ref)
        if not parsed.tag or parsed.digest:
            raise RegistryError(
                f"an archive is stored under a tag (host/repo:tag), and {ref} names none.",
                hint="Give the archive's reference with its tag.",
            )
        for file in files:
            if not SHA256_HEX.fullmatch(file.sha256):
                raise RegistryError(
                    f"the archive {ref} lists {file.path} with the sha256 {file.sha256!r}, "
                    "which is not 64 lowercase hex digits.",
                    hint="List the file with the hex sha256 of its content.",
                )
        config_blob = descriptor_of(config, config_media_type)
        manifest = archive_manifest(
            artifact_type=artifact_type,
            config=config_blob,
            layers=tuple(file.descriptor() for file in files),
        )
        digest = blob_digest(manifest)
        there = self._tag_digest(parsed)
        if there == digest:
            return digest  # stored before, the same files: a rerun
        if there is not None:
            raise _overwrite_error(ref, there, digest)
        with self._blob(parsed, config_blob.digest):
            # Not asked first: the config names its version, so it is new but on a rerun (and
            # an upload of a blob the registry has is harmless).
            upload_blob(self._transport, parsed, config_blob.digest, config)
        sent = {config_blob.digest}
        for file in files:
            blob = f"sha256:{file.sha256}"
            # a file shared with another version's archive (or listed twice): stored once
            if blob not in sent:
                with self._blob(parsed, blob):
                    if not has_blob(self._transport, parsed, blob):
                        self._upload_file(parsed, file)
            sent.add(blob)
        put_manifest(self._transport, parsed, parsed.tag, manifest, MANIFEST)
        # Distribution has no conditional PUT: reading the tag back catches another writer
        # that put its archive under the same tag at the same time (one of the two fails).
        stored = self._tag_digest(parsed)
        if stored != digest:
            raise RegistryError(
                f"after storing the archive {ref} ({digest}), the tag names {stored or 'nothing'}.",
                hint="Another process wrote the same tag at the same time; find out which "
                "archive is the right one before running again.",
            )
        return digest

    def read_archive(self, ref: str) -> tuple[bytes, tuple[Descriptor, ...]] | None:
        """The config and the layers (titles in their annotations) of the archive `ref` (tag
        or digest) names; None when the registry does not have it."""
        parsed = parse_reference(ref)
        found = find_manifest(self._transport, parsed, _name(parsed), method="GET")
        if found is None:
            return None
        if parsed.digest and blob_digest(found.body) != parsed.digest:
            raise RegistryError(
                f"the registry {parsed.host} served a manifest for {ref} whose content does "
                "not have that digest.",
                hint="Check the registry (a proxy or cache in between may alter what it "
                "serves); nothing was read from it.",
            )
        try:
            config, layers = archive_parts(found.body)
        except NotAnArchiveError:
            raise RegistryError(
                f"{ref} is not an archive: its manifest lists no config and layers.",
                hint="Something else was stored under that name; check the reference.",
            ) from None
        with self._open_blob(parsed.repository, config) as stream:
            data = stream.read(MOST_CONFIG + 1)
        if len(data) > MOST_CONFIG:
            raise RegistryError(
                f"the config of the archive {ref} is larger than {MOST_CONFIG >> 20} MiB.",
                hint="It is not an archive imagectl stored; check the reference.",
            )
        return data, layers

    def copy_image(self, source: str, repository: str) -> str:
        """Copy the image `source` (repo@digest or repo:tag; an index with its manifests) into
        `repository` (host/repo), kept there by digest (no tag); returns the digest."""
        src, target = parse_reference(source), parse_reference(repository)
        if target.tag or target.digest:
            raise RegistryError(
                f"an image is copied into a repository (host/repo), and {repository} names a "
                "tag or digest.",
                hint="Give the target repository without a tag: the copy is kept by digest.",
            )
        found = find_manifest(self._transport, src, _name(src), method="GET")
        if found is None:
            raise RegistryError(
                f"{source} is not in the registry {src.host}, so it cannot be copied.",
                hint=registry_hint(src.host),
            )
        # By tag, the digest the registry gives for it is the one the copy must have.
        expected = src.digest or found.headers.get("docker-content-digest", "")
        digest = self._copy_manifest(src, target, found, expected)
        if find_manifest(self._transport, target, digest, method="HEAD") is None:
            raise RegistryError(
                f"the registry {target.host} accepted {target.repository}@{digest} but does not "
                "have it when asked.",
                hint="Check the registry (a proxy or cache in between?), then copy again.",
            )
        return digest

    def _copy_manifest(
        self, src: Reference, target: Reference, found: Response, expected: str
    ) -> str:
        """Copy the blobs (or, for an index, the manifests) `found` lists, then the manifest
        itself under its digest, which must be `expected` when that is given."""
        digest = blob_digest(found.body)
        where = f"{src.repository}@{expected}" if expected else src.repository
        if expected and digest != expected:
            raise RegistryError(
                f"the registry {src.host} served a manifest for {where} whose content does "
                "not have that digest.",
                hint="Check the registry (a proxy or cache in between may alter what it "
                "serves); nothing was copied.",
            )
        try:
            manifest = json.loads(found.body)
            media = str(manifest.get("mediaType") or found.headers.get("content-type", ""))
            media = media.split(";", maxsplit=1)[0]
            if media in INDEX_TYPES or "manifests" in manifest:
                children = [str(child["digest"]) for child in manifest["manifests"]]
                blobs: list[Descriptor] = []
            else:
                children = []
                listed = [manifest["config"], *manifest["layers"]]
                blobs = [
                    Descriptor(media_type=str(b["mediaType"]), digest=str(b["digest"]),
                               size=int(b["size"]))
                    for b in listed
                ]  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RegistryError(
                f"the manifest of {where} lists no config and layers nor manifests "
                f"({type(exc).__name__}).",
                hint="It is not an image or index imagectl can copy (a schema 1 manifest?).",
            ) from exc
        for child in children:
            answer = find_manifest(self._transport, src, child, method="GET")
            if answer is None:
                raise RegistryError(
                    f"the index {where} lists {child}, which the registry {src.host} does not "
                    "have.",
                    hint="The source is incomplete; nothing of it was tagged in the target.",
                )
            self._copy_manifest(src, target, answer, child)
        for blob in blobs:
            self._copy_blob(src, target, blob)
        put_manifest(self._transport, target, digest, found.body, media)
        return digest

    def _copy_blob(self, src: Reference, target: Reference, blob: Descriptor) -> None:
        with self._blob(target, blob.digest):
            self._copy_blob_alone(src, target, blob)

    def _copy_blob_alone(self, src: Reference, target: Reference, blob: Descriptor) -> None:
        if has_blob(self._transport, target, blob.digest):
            return
        mount = (blob.digest, src.path) if src.api_host == target.api_host else None
        location = start_upload(self._transport, target, mount=mount)
        if location is None:
            return  # mounted: the registry linked the blob it has, nothing sent
        # Spooled to a temporary file, not streamed straight across: one connection per
        # registry and thread carries the read and the upload (the same registry when a mount
        # was refused), and the upload can be sent again after an auth handshake.
        with tempfile.TemporaryFile() as spool:
            with self._open_blob(src.repository, blob) as stream:
                shutil.copyfileobj(stream, spool, COPY_CHUNK)
            size = spool.tell()
            spool.seek(0)
            finish_upload(self._transport, target, location, blob.digest, spool, size=size)

    def _upload_file(self, ref: Reference, file: ArchiveFile) -> None:
        digest = f"sha256:{file.sha256}"
        try:
            stream = file.path.open("rb")
        except OSError as exc:
            raise RegistryError(
                f"cannot read {file.path} to archive it ({exc.strerror or type(exc).__name__}).",
                hint="Check that the file is there and readable.",
            ) from exc
        with stream:
            size = os.fstat(stream.fileno()).st_size
            if size != file.size:
                raise RegistryError(
                    f"{file.path} has {size} bytes, not the {file.size} its listing in the "
                    "archive says.",
                    hint="The file changed after it was listed: list the archive's files again.",
                )
            location = start_upload(self._transport, ref, mount=None)
            assert location is not None  # no mount asked for
            finish_upload(self._transport, ref, location, digest, stream, size=size)

    def _tag_digest(self, ref: Reference) -> str | None:
        """The digest of the manifest the tag names, computed from its bytes (not a header)."""
        found = find_manifest(self._transport, ref, ref.tag, method="GET")
        return blob_digest(found.body) if found is not None else None


def _name(ref: Reference) -> str:
    return ref.digest or ref.tag or "latest"


def _overwrite_error(ref: str, there: str, digest: str) -> RegistryError:
    return RegistryError(
        f"the archive tag {ref} already names {there}; the archive as given now is {digest}.",
        hint="An archive tag is never overwritten: a version's inputs are archived once. Store "
        "different inputs under a new tag, or find out why the inputs of that version changed.",
    )


# -- requests shared with the registry adapter ------------------------------------------------


def find_manifest(
    transport: RegistryTransport, ref: Reference, name: str, *, method: str
) -> Response | None:
    """The manifest `name` (tag or digest) of `ref`'s repository, or None when it is absent
    (404 with no code or an "unknown" one); any other answer is an error."""
    path = f"/v2/{ref.path}/manifests/{name}"
    response = transport.get(ref, path, accept=ACCEPT, method=method)
    if response.status == 200:
        return response
    if response.status == 404 and (
        not response.error_codes() or set(response.error_codes()) & ABSENT_CODES
    ):
        return None
    raise status_error(ref, response)


def has_blob(transport: RegistryTransport, ref: Reference, digest: str) -> bool:
    """Whether `ref`'s repository has the blob (one HEAD, with push auth as uploads need)."""
    head = transport.send(
        ref, f"/v2/{ref.path}/blobs/{digest}", method="HEAD", headers={}, push=True
    )
    if head.status == 200:
        return True
    if head.status == 404:
        return False
    raise status_error(ref, head)


def start_upload(
    transport: RegistryTransport, ref: Reference, *, mount: tuple[str, str] | None
) -> str | None:
    """Start a blob upload to `ref`'s repository: its upload path, or None when `mount`
    (digest, source repository path) was mounted (201) instead of an upload started (202)."""
    path = f"/v2/{ref.path}/blobs/uploads/"
    if mount is not None:
        path += f"?mount={mount[0]}&from={mount[1]}"
    started = transport.send(
        ref, path, method="POST", headers={"Content-Length": "0"}, body=b"", push=True
    )
    if mount is not None and started.status == 201:
        return None
    location = started.headers.get("location", "")
    if started.status != 202 or not location:
        raise status_error(ref, started)
    return same_registry_path(location, ref)


def finish_upload(
    transport: RegistryTransport,
    ref: Reference,
    location: str,
    digest: str,
    body: bytes | BinaryIO,
    *,
    size: int = 0,
) -> None:
    """The blob's content in one PUT (monolithic) to the upload `location`; a file body is
    streamed with `size` as its Content-Length, never read whole."""
    headers = {"Content-Type": "application/octet-stream"}
    if not isinstance(body, bytes):
        headers["Content-Length"] = str(size)
    joined = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    done = transport.send(ref, joined, method="PUT", headers=headers, body=body, push=True)
    if done.status == 400 and {"DIGEST_INVALID", "SIZE_INVALID"} & set(done.error_codes()):
        raise RegistryError(
            f"the registry {ref.host} found that the content sent as {digest} does not have "
            f"that digest ({', '.join(done.error_codes())}).",
            hint="The file changed while it was read, or its sha256 was listed wrong: list it "
            "again.",
        )
    if done.status != 201:
        raise status_error(ref, done)


def upload_blob(transport: RegistryTransport, ref: Reference, digest: str, data: bytes) -> None:
    """A small blob uploaded whole (a config, an SBOM)."""
    location = start_upload(transport, ref, mount=None)
    assert location is not None  # no mount asked for
    finish_upload(transport, ref, location, digest, data)


def put_manifest(
    transport: RegistryTransport, ref: Reference, name: str, data: bytes, media_type: str
) -> None:
    """PUT a manifest under `name` (a tag, or its digest: kept without a tag)."""
    done = transport.send(
        ref, f"/v2/{ref.path}/manifests/{name}", method="PUT",
        headers={"Content-Type": media_type}, body=data, push=True,
    )  # fmt: skip
    if done.status != 201:
        raise status_error(ref, done)
