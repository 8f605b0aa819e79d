"""The registry adapter: look-ups over the registry's HTTP API, pushes through `docker push`.

A look-up asks for the manifest with the proper Accept headers (so distribution never converts
it to a schema 1 manifest with another digest) and reads the manifest digest and the config
digest (the image id) from the answer. What the registry says is read from its HTTP status and
error code: 404 MANIFEST_UNKNOWN is "absent", 401/403 is an auth failure and stops the command,
never "absent". A push goes through docker, which uploads the layers with docker's own
credentials; its failures are read from docker's text with the image's names cut out first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from imagectl.errors import EngineError, RegistryError, TagImmutableError
from imagectl.ports import RemoteImage, Say
from imagectl.process import last_line, stream, without_names
from imagectl.registry_http import (
    Reference,
    RegistryAuthError,
    RegistryTransport,
    Response,
    parse_reference,
)

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
PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
DAEMON_DOWN = ("cannot connect to the docker daemon", "is the docker daemon running")
# docker's wording for a push refused by an immutable tag (ECR's TAG_INVALID prints as "tag
# invalid", Harbor's 412 as "unknown: ..."), read with names cut out. Only for the message:
# publish decides by looking the tag up again after any failed push.
IMMUTABLE = ("immutable", "imagetagalreadyexists", "tag invalid", "412 precondition")
PUSH_AUTH = ("unauthorized", "denied", "authentication required", "no basic auth credentials")
REGISTRY_HINT = (
    "Start it (scripts/engine up starts the local one on 127.0.0.1:5000) or check "
    "the repository name; nothing was changed."
)


class RegistryClient:
    """Look-ups over HTTP (docker's credential store, docker's TLS rules), pushes via docker."""

    def __init__(self, transport: RegistryTransport | None = None) -> None:
        self._transport = transport or RegistryTransport()

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
        path = f"/v2/{ref.path}/manifests/{ref.digest or ref.tag}"
        response = self._transport.get(ref, path, accept=ACCEPT, method=method)
        if response.status == 200:
            return response
        if response.status == 404 and (
            not response.error_codes() or set(response.error_codes()) & ABSENT_CODES
        ):
            return None
        raise status_error(ref, response)

    def push(self, ref: str, *, on_output: Say) -> str:
        """Push `ref` and return the manifest digest docker reports for it."""
        command = ("docker", "push", ref)
        code, output = stream(command, env=dict(os.environ), on_output=on_output)
        if code != 0:
            text = without_names(output, names_in(ref))
            if any(marker in text for marker in DAEMON_DOWN):
                raise EngineError(
                    f"the Docker engine does not answer while pushing {ref}.",
                    hint="Start it, or check DOCKER_HOST; nothing was changed.",
                    command=command,
                    exit_code=code,
                    stderr=output,
                )
            raise push_failure(ref, text, last_line(output), command=command, code=code)
        match = PUSHED_DIGEST.search(output)
        if match is None:
            raise RegistryError(f"docker pushed {ref} but reported no digest.", details=output)
        return match.group(1)


def status_error(ref: Reference, response: Response) -> RegistryError:
    """The error an unexpected HTTP answer amounts to, from its status and error codes."""
    where = f"{ref.host}/{ref.path}:{ref.tag}" if ref.tag else f"{ref.host}/{ref.path}"
    codes = ", ".join(response.error_codes()) or "no error code"
    if response.status in (401, 403):
        return RegistryAuthError(
            f"the registry {ref.host} refused access to {where} (HTTP {response.status}, "
            f"{codes}): not logged in, or the credentials are wrong or expired. Nothing was "
            "built, pushed or recorded.",
            hint=f"Log in with `docker login {ref.host}` and run again; imagectl reads docker's "
            "credential store and never prints, logs or records credentials.",
        )
    if response.status >= 500:
        return RegistryError(
            f"the registry {ref.host} failed with a server error (HTTP {response.status}) "
            f"looking up {where}.",
            hint="Check the registry's health and logs, then run again; nothing was changed.",
        )
    return RegistryError(
        f"the registry {ref.host} answered HTTP {response.status} ({codes}) looking up {where}.",
        hint=REGISTRY_HINT,
    )


def push_failure(
    ref: str, text: str, reason: str, *, command: tuple[str, ...], code: int
) -> RegistryError:
    """What docker's complaint about a push amounts to (`text` has the names cut out)."""
    error: RegistryError
    if any(marker in text for marker in IMMUTABLE):
        error = TagImmutableError(
            f"the registry refused to change the immutable tag {ref} ({reason}).",
            hint="An immutable tag cannot be pushed again; imagectl checks what it names.",
        )
    elif any(marker in text for marker in PUSH_AUTH):
        host = parse_reference(ref).host
        error = RegistryAuthError(
            f"the registry refused the push of {ref} ({reason}).",
            hint=f"Log in with `docker login {host}`; imagectl uses docker's credential store.",
        )
    else:
        error = RegistryError(
            f"docker could not push {ref} ({reason}).",
            hint="Check the registry's health and logs, then run again; the lock records "
            "nothing that was not pushed.",
        )
    error.command, error.exit_code, error.stderr = command, code, reason
    return error


def names_in(ref: str) -> tuple[str, ...]:
    """Every form in which docker or a registry echoes `ref`: whole, without digest, without
    tag, and the path without the host (Harbor's messages). Never a bare word: cutting "tls" out
    of the text would cut docker's own "tls:" too."""
    plain = ref.split("@", 1)[0]
    head, _, tail = plain.rpartition("/")
    repository = f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]
    path = repository.split("/", 1)[1] if "/" in repository else ""
    return (ref, plain, repository, *([path] if "/" in path else []))


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
