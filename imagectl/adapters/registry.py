"""The registry adapter: look-ups over the registry's HTTP API; pushes are the engine's.

A look-up asks for the manifest with the proper Accept headers (so distribution never converts
it to a schema 1 manifest with another digest) and reads the manifest digest and the config
digest (the image id) from the answer. What the registry says is read from its HTTP status and
error code: 404 MANIFEST_UNKNOWN is "absent", 401/403 is an auth failure and stops the command,
never "absent". A push goes through the engine (`docker_engine`), which uploads the layers
with docker's own credentials.
"""

from __future__ import annotations

import hashlib
import json
from typing import Protocol

from imagectl.adapters.registry_http import RegistryTransport, Response, registry_hint
from imagectl.core.errors import RegistryAuthError, RegistryError
from imagectl.core.ports import RemoteImage, Say
from imagectl.core.references import ImageRef as Reference
from imagectl.core.references import parse_reference

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
ABSENT_CODES = {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"}


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
        path = f"/v2/{ref.path}/manifests/{ref.digest or ref.tag or 'latest'}"
        response = self._transport.get(ref, path, accept=ACCEPT, method=method)
        if response.status == 200:
            return response
        if response.status == 404 and (
            not response.error_codes() or set(response.error_codes()) & ABSENT_CODES
        ):
            return None
        raise status_error(ref, response)

    def push(self, ref: str, *, on_output: Say) -> str:
        """Push the local `ref` (the engine uploads it) and return the manifest digest the
        registry stored."""
        if self._push is None:
            raise RegistryError(f"no engine to push {ref} from.")
        return self._push(ref, on_output=on_output)


def status_error(ref: Reference, response: Response) -> RegistryError:
    """The error an unexpected HTTP answer amounts to, from its status and error codes."""
    where = f"{ref.host}/{ref.path}:{ref.tag}" if ref.tag else f"{ref.host}/{ref.path}"
    codes = ", ".join(response.error_codes()) or "no error code"
    if response.status in (401, 403):
        return RegistryAuthError(
            f"the registry {ref.host} refused access to {where} (HTTP {response.status}, "
            f"{codes}): not logged in, or the credentials are wrong or expired.",
            hint=f"Log in with `docker login {ref.host}` and run again; imagectl reads docker's "
            "credential store and never prints, logs or records credentials.",
        )
    if response.status >= 500:
        return RegistryError(
            f"the registry {ref.host} failed with a server error (HTTP {response.status}) "
            f"looking up {where}.",
            hint="Check the registry's health and logs, then run again.",
        )
    return RegistryError(
        f"the registry {ref.host} answered HTTP {response.status} ({codes}) looking up {where}.",
        hint=registry_hint(ref.host),
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
