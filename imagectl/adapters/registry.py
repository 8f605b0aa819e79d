"""The registry adapter: look-ups over the registry's HTTP API; pushes are the engine's.

A look-up asks for the manifest with the proper Accept headers (so distribution never converts
it to a schema 1 manifest with another digest) and reads the manifest digest and the config
digest (the image id) from the answer. What the registry says is read from its HTTP status and
error code: 404 MANIFEST_UNKNOWN is "absent", 401/403 is an auth failure and stops the command,
never "absent". A push goes through the engine (`docker_engine`), which uploads the layers
with docker's own credentials. Artifacts attached to a version (its SBOM) are uploaded here:
two small blobs, their manifest by digest, and the referrers tag's index (`core/artifacts`).
Archives (a version's input files under a tag) and copies by digest are `registry_archive`'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from typing import IO, Protocol

from imagectl.adapters.registry_archive import (
    BlobTurns,
    RegistryArchive,
    find_manifest,
    put_manifest,
    upload_blob,
)
from imagectl.adapters.registry_http import (
    INDEX_TYPES,
    RegistryTransport,
    Response,
    status_error,
)
from imagectl.core.artifacts import (
    EMPTY_DATA,
    INDEX,
    MANIFEST,
    ArchiveFile,
    Artifact,
    Descriptor,
    NotAnIndexError,
    artifact_manifest,
    blob_digest,
    referrers_in,
    referrers_tag,
    with_referrer,
)
from imagectl.core.errors import RegistryError
from imagectl.core.ports import RemoteImage, RemoteLayers, Say
from imagectl.core.references import ImageRef as Reference
from imagectl.core.references import parse_reference

MOST_CONFIG = 4 << 20  # bytes of an image config read whole (configs are a few KiB)


class Pusher(Protocol):
    def __call__(self, ref: str, *, on_output: Say) -> str: ...


class RegistryClient:
    """Look-ups over HTTP (docker's credential store, docker's TLS rules); pushes are the
    engine's (the Engine API's push, which uploads with docker's credentials)."""

    def __init__(
        self, transport: RegistryTransport | None = None, *, push: Pusher | None = None
    ) -> None:
        self._transport = transport or RegistryTransport()
        self._push = push  # the engine's push: images go to a registry from the engine
        self._stored: set[tuple[str, str, str]] = set()  # (host, repository, blob digest)
        self._turns = BlobTurns()
        self._archive = RegistryArchive(
            self._transport, open_blob=self.open_blob, turns=self._turns
        )

    def lookup(self, ref: str) -> RemoteImage | None:
        """What `ref` names (tag or digest) in its registry, or None when it is absent."""
        parsed = parse_reference(ref)
        response = self._manifest(parsed, "GET")
        if response is None:
            return None
        return remote_image_from(response, ref)

    def exists(self, ref: str) -> str | None:
        """The manifest digest `ref` names now (one HEAD), or None when it is absent."""
        response = self._manifest(parse_reference(ref), "HEAD")
        if response is None:
            return None
        return response.headers.get("docker-content-digest") or None

    def _manifest(self, ref: Reference, method: str) -> Response | None:
        return find_manifest(self._transport, ref, ref.digest or ref.tag or "latest", method=method)

    def push(self, ref: str, *, on_output: Say) -> str:
        """Push the local `ref` (the engine uploads it) and return the manifest digest the
        registry stored."""
        if self._push is None:
            raise RegistryError(f"no engine to push {ref} from.")
        return self._push(ref, on_output=on_output)

    def attach(self, subject: str, artifact: Artifact) -> str:
        """Store `artifact` as a referrer of `subject` (repo@digest) and list it under the
        referrers tag; returns the artifact manifest's digest. Storing it again is a no-op."""
        ref = parse_reference(subject)
        image = self._manifest(ref, "HEAD")  # its type and size are all the subject needs
        if image is not None and not image.headers.get("content-length", "").isdigit():
            image = self._manifest(ref, "GET")
        if image is None:
            raise RegistryError(
                f"{subject} is not in the registry, so nothing can be attached to it."
            )
        media = image.headers.get("content-type", "").split(";")[0] or MANIFEST
        size = len(image.body) or int(image.headers["content-length"])
        described = Descriptor(media_type=media, digest=ref.digest, size=size)
        self._put_blob(ref, EMPTY_DATA, ask_first=True)  # the same `{}` for every artifact
        self._put_blob(ref, artifact.data, ask_first=False)  # new, as a rule: just upload it
        manifest = artifact_manifest(artifact, described)
        digest = blob_digest(manifest)
        put_manifest(self._transport, ref, digest, manifest, MANIFEST)
        tag = referrers_tag(ref.digest)
        listed = self._index(ref, tag)
        entry = Descriptor(
            media_type=MANIFEST, digest=digest, size=len(manifest),
            artifact_type=artifact.artifact_type, annotations=artifact.annotations,
        )  # fmt: skip
        index = with_referrer(listed, entry)
        if index is not None:
            put_manifest(self._transport, ref, tag, index, INDEX)
        return digest

    def put_archive(
        self,
        ref: str,
        *,
        artifact_type: str,
        config: bytes,
        config_media_type: str,
        files: Sequence[ArchiveFile],
    ) -> str:
        """Store `files` as the archive under the tag `ref` (`registry_archive`)."""
        return self._archive.put_archive(
            ref, artifact_type=artifact_type, config=config,
            config_media_type=config_media_type, files=files,
        )  # fmt: skip

    def read_archive(self, ref: str) -> tuple[bytes, tuple[Descriptor, ...]] | None:
        """The config and layers of the archive `ref` names, or None (`registry_archive`)."""
        return self._archive.read_archive(ref)

    def copy_image(self, source: str, repository: str) -> str:
        """Copy `source` into `repository` by digest (`registry_archive`)."""
        return self._archive.copy_image(source, repository)

    def referrers(self, subject: str) -> tuple[Descriptor, ...]:
        """The artifacts the referrers tag of `subject` (repo@digest) lists."""
        ref = parse_reference(subject)
        listed = self._index(ref, referrers_tag(ref.digest))
        return referrers_in(listed) if listed is not None else ()

    def image_layers(self, ref: str) -> RemoteLayers | None:
        """The layers of the image `ref` names, from its manifest (checked against the digest
        `ref` pins) and its config's rootfs; None when the registry does not have it."""
        parsed = parse_reference(ref)
        response = self._manifest(parsed, "GET")
        if response is None:
            return None
        if parsed.digest and blob_digest(response.body) != parsed.digest:
            raise RegistryError(
                f"the registry {parsed.host} served a manifest for {ref} whose content does "
                "not have that digest.",
                hint="Check the registry (a proxy or cache in between may alter what it "
                "serves); nothing was read from it.",
            )
        image = remote_image_from(response, ref)
        manifest = json.loads(response.body)
        try:
            blobs = tuple(
                Descriptor(
                    media_type=str(layer["mediaType"]),
                    digest=str(layer["digest"]),
                    size=int(layer["size"]),
                )
                for layer in manifest.get("layers") or ()
            )
            config = self._config(parsed, image.config_digest)
            diff_ids = tuple(str(d) for d in json.loads(config)["rootfs"]["diff_ids"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"the registry's manifest or image config for {ref} does not list its layers "
                f"({type(exc).__name__}).",
                hint="It is not an image imagectl published; check the lock's digest.",
            ) from exc
        if len(diff_ids) != len(blobs):
            raise RegistryError(
                f"the manifest of {ref} has {len(blobs)} layers and its config {len(diff_ids)}.",
                hint="It is not an image imagectl published; check the lock's digest.",
            )
        return RemoteLayers(
            digest=image.digest, image_id=image.config_digest, blobs=blobs, diff_ids=diff_ids
        )

    def _config(self, ref: Reference, digest: str) -> bytes:
        config = Descriptor(media_type="application/octet-stream", digest=digest, size=0)
        with self.open_blob(ref.repository, config) as stream:
            data = stream.read(MOST_CONFIG + 1)
            if len(data) > MOST_CONFIG:
                raise RegistryError(
                    f"the image config {digest} in {ref.host}/{ref.path} is larger than "
                    f"{MOST_CONFIG >> 20} MiB.",
                    hint="It is not an image config imagectl can read; check the lock's digest.",
                )
        return data

    @contextlib.contextmanager
    def open_blob(self, ref: str, blob: Descriptor) -> Iterator[IO[bytes]]:
        """The blob streamed from `ref`'s repository (GET /v2/<repo>/blobs/<digest>, a
        redirect to the registry's storage followed); its digest is checked once it has been
        read to the end, which leaving the block does (draining what was left unread)."""
        parsed = parse_reference(ref)
        path = f"/v2/{parsed.path}/blobs/{blob.digest}"
        with self._transport.stream(parsed, path, accept="*/*") as answer:
            if answer.status != 200:
                failed = Response(status=answer.status, headers=answer.headers, body=answer.read())
                if failed.status == 404:
                    raise RegistryError(
                        f"the registry {parsed.host} has no blob {blob.digest} in "
                        f"{parsed.path} (HTTP 404, {', '.join(failed.error_codes()) or 'no code'}"
                        "), though the image's manifest names it.",
                        hint="The registry lost part of the image (garbage collection, or a "
                        "repository moved): publish the version again from an engine that "
                        "has it.",
                    )
                raise status_error(parsed, failed)
            checked = _CheckedBlob(answer.chunks(), blob.digest)
            yield io.BufferedReader(checked)
            checked.finish(f"{parsed.host}/{parsed.path}")

    def _index(self, ref: Reference, tag: str) -> bytes | None:
        path = f"/v2/{ref.path}/manifests/{tag}"
        response = self._transport.get(ref, path, accept=INDEX)
        if response.status == 404:
            return None
        if response.status != 200:
            raise status_error(ref, response)
        try:
            referrers_in(response.body)
        except NotAnIndexError:
            raise RegistryError(
                f"{ref.host}/{ref.path}:{tag} is not an image index, so it cannot list the "
                "artifacts of that image (the OCI referrers tag scheme).",
                hint="Someone pushed something else under that tag: move it away, then publish "
                "again.",
            ) from None
        return response.body

    def _put_blob(self, ref: Reference, data: bytes, *, ask_first: bool) -> None:
        """Upload `data` in one PUT (monolithic); with `ask_first`, not when the repository
        has it already (asked once per repository and process). An upload of a blob the
        registry has is harmless: it stores each digest once."""
        digest = blob_digest(data)
        known = (ref.api_host, ref.path, digest)
        with self._turns(ref, digest):  # the `{}` of every SBOM, attached a few at once
            if ask_first:
                if known in self._stored:
                    return
                head = self._transport.send(
                    ref, f"/v2/{ref.path}/blobs/{digest}", method="HEAD", headers={}, push=True
                )
                if head.status == 200:
                    self._stored.add(known)
                    return  # stored once, whoever stored it
            upload_blob(self._transport, ref, digest, data)
            self._stored.add(known)


class _CheckedBlob(io.RawIOBase):
    """A blob's body as a readable stream, hashed as it goes by."""

    def __init__(self, chunks: Iterator[bytes], digest: str) -> None:
        self._chunks = chunks
        self._digest = digest
        self._hash = hashlib.sha256()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = next(self._chunks, b"")
            self._hash.update(self._pending)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def finish(self, repository: str) -> None:
        """Read the rest, then compare the content's digest with the one it was asked by."""
        for chunk in self._chunks:
            self._hash.update(chunk)
        if f"sha256:{self._hash.hexdigest()}" != self._digest:
            raise RegistryError(
                f"the registry served a blob of {repository} whose content does not have its "
                f"digest {self._digest}.",
                hint="Run again; if it fails the same way, the registry's copy is damaged or a "
                "proxy alters it. Nothing was decided on it.",
            )


def remote_image_from(response: Response, ref: str) -> RemoteImage:
    """Manifest digest and config digest (the image id) of a single-platform manifest."""
    try:
        manifest = json.loads(response.body)
    except ValueError as exc:
        raise RegistryError(f"the registry's manifest for {ref} is not JSON.") from exc
    media = str(manifest.get("mediaType") or response.headers.get("content-type", ""))
    if media in INDEX_TYPES or "manifests" in manifest:
        raise RegistryError(
            f"{ref} is a multi-platform index; imagectl manages single-platform images.",
            hint="Use a single-platform base image or tag.",
        )
    digest = response.headers.get("docker-content-digest") or (
        "sha256:" + hashlib.sha256(response.body).hexdigest()
    )
    config = str((manifest.get("config") or {}).get("digest", ""))
    if not config.startswith("sha256:"):
        raise RegistryError(f"the registry's manifest for {ref} names no image config.")
    return RemoteImage(digest=digest, config_digest=config)
