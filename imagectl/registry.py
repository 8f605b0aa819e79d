"""The registry adapter: look a tag up without pulling, through the docker CLI.

`docker manifest inspect` sends the proper Accept headers (so distribution never converts to a
schema 1 manifest with another digest), uses docker's own credential store (`docker login`), and
answers with both the manifest digest and the config digest (the image id) in one call. imagectl
never handles credentials itself.
"""

from __future__ import annotations

import json
import os
import subprocess

from imagectl.errors import RegistryError, TagImmutableError
from imagectl.ports import RemoteImage

NOT_FOUND = ("no such manifest", "manifest unknown", "not found", "name unknown")
UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "connection reset",
    "network is unreachable",
    "dial tcp",
    "timeout",
    "error pinging",
)
AUTH = ("unauthorized", "denied", "authentication required", "forbidden")
TLS = ("x509", "certificate", "http response to https client", "tls:")
SERVER = (
    "500 internal",
    "502 bad gateway",
    "503 service",
    "internal server error",
    "received unexpected http status",
    "unknown: ",
)
IMMUTABLE = ("immutable", "imagetagalreadyexists", "412 precondition", "tag already exists")
# Registries docker itself treats as plain HTTP; others keep full TLS verification.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class DockerCliRegistry:
    """Registry look-ups through `docker manifest inspect --verbose`."""

    def lookup(self, ref: str) -> RemoteImage | None:
        command = ["docker", "manifest", "inspect", "--verbose", ref]
        if _is_insecure(ref):
            command.insert(3, "--insecure")
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise RegistryError(
                f"the registry did not answer within 120 s looking up {ref}.", hint=REGISTRY_HINT
            ) from exc
        if result.returncode == 0:
            return remote_image_from(result.stdout, ref)
        raise_unless_absent(ref, result.stderr)
        return None


REGISTRY_HINT = (
    "Start it (scripts/engine up starts the local one on 127.0.0.1:5000) or check "
    "the repository name; nothing was changed."
)


def _is_insecure(ref: str) -> bool:
    host = ref.split("/", 1)[0] if "/" in ref else ""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    extra = os.environ.get("IMAGECTL_INSECURE_REGISTRIES", "").split(",")
    return name in LOCAL_HOSTS or name.startswith("127.") or host in [e.strip() for e in extra]


def raise_unless_absent(ref: str, stderr: str) -> None:
    """Return quietly when the answer means 'no such tag'; raise a RegistryError otherwise."""
    if any(marker in stderr.lower() for marker in NOT_FOUND) and not any(
        marker in stderr.lower() for marker in (*AUTH, *TLS, *UNREACHABLE)
    ):
        return
    raise registry_failure(ref, stderr)


def registry_failure(ref: str, stderr: str) -> RegistryError:
    """The RegistryError that docker's complaint about `ref` amounts to."""
    text = stderr.lower()
    reason = last_line(stderr)
    if any(marker in text for marker in IMMUTABLE):
        return TagImmutableError(
            f"the registry refused to change the immutable tag {ref} ({reason}).",
            hint="An immutable tag cannot be pushed again; imagectl checks what it names.",
        )
    if any(marker in text for marker in AUTH):
        return RegistryError(
            f"the registry refused access to {ref} ({reason}).",
            hint="Log in with `docker login <registry>`; imagectl uses docker's credential store "
            "and never sees the credentials.",
        )
    if any(marker in text for marker in TLS):
        return RegistryError(
            f"TLS failed talking to the registry of {ref} ({reason}).",
            hint="Give docker the registry's CA certificate (/etc/docker/certs.d/<host>/ca.crt), "
            "or add the host to IMAGECTL_INSECURE_REGISTRIES if it speaks plain HTTP.",
        )
    if any(marker in text for marker in UNREACHABLE):
        return RegistryError(
            f"the registry of {ref} is unreachable ({reason}).", hint=REGISTRY_HINT
        )
    if any(marker in text for marker in SERVER):
        return RegistryError(
            f"the registry of {ref} failed with a server error ({reason}).",
            hint="Check the registry's health and logs, then run again; nothing was changed.",
        )
    return RegistryError(
        f"the registry answered {ref} with an error ({reason}).", hint=REGISTRY_HINT
    )


def remote_image_from(stdout: str, ref: str) -> RemoteImage:
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"unexpected answer looking up {ref}: {stdout[:200]!r}") from exc
    if isinstance(data, list):
        raise RegistryError(
            f"{ref} is a multi-platform index; imagectl manages single-platform images.",
            hint="Use a single-platform base image or tag.",
        )
    digest = data.get("Descriptor", {}).get("digest", "")
    manifest = data.get("SchemaV2Manifest") or data.get("OCIManifest") or {}
    config = manifest.get("config", {}).get("digest", "")
    if not str(digest).startswith("sha256:"):
        raise RegistryError(f"the registry's answer for {ref} carries no digest.")
    return RemoteImage(digest=str(digest), config_digest=str(config))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
