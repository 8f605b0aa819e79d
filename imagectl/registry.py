"""The registry adapter: look a tag up without pulling, through the docker CLI's own resolver.

The docker CLI already knows the machine's credential store (`docker login`) and which
registries speak plain HTTP, so imagectl never handles credentials itself.
"""

from __future__ import annotations

import json
import subprocess

from imagectl.errors import RegistryError
from imagectl.model import Builder

NOT_FOUND = ("not found", "manifest unknown", "no such manifest", "name unknown")
UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "connection reset",
    "network is unreachable",
    "dial tcp",
    "eof",
    "timeout",
)
AUTH = ("unauthorized", "denied", "authentication required", "forbidden")
TLS = ("x509", "tls", "certificate", "http response to https client")


class DockerCliRegistry:
    """Registry look-ups through `docker buildx imagetools` or `docker manifest`."""

    def __init__(self, builder: Builder) -> None:
        self._builder = builder

    def lookup(self, ref: str) -> str | None:
        if self._builder == "buildx":
            command = [
                "docker",
                "buildx",
                "imagetools",
                "inspect",
                "--format",
                "{{json .Manifest}}",
                ref,
            ]
        else:
            command = ["docker", "manifest", "inspect", "--insecure", "--verbose", ref]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=120
            )
        except subprocess.TimeoutExpired as exc:
            raise RegistryError(
                f"the registry did not answer within 120 s looking up {ref}.", hint=_REGISTRY_HINT
            ) from exc
        if result.returncode == 0:
            return _digest_from(result.stdout, ref)
        raise_for_lookup(ref, result.stderr)
        return None


_REGISTRY_HINT = (
    "Start it (scripts/engine up starts the local one on 127.0.0.1:5000) or check "
    "the repository name; nothing was changed."
)


def raise_for_lookup(ref: str, stderr: str) -> None:
    """Return quietly when the answer means 'absent'; raise a RegistryError otherwise."""
    text = stderr.lower()
    if any(marker in text for marker in AUTH):
        raise RegistryError(
            f"the registry refused access to {ref} ({_last_line(stderr)}).",
            hint="Log in with `docker login <registry>`; imagectl uses docker's credential store.",
        )
    if any(marker in text for marker in TLS):
        raise RegistryError(
            f"TLS failed talking to the registry of {ref} ({_last_line(stderr)}).",
            hint="Give docker the registry's CA certificate, or list it in the daemon's "
            "insecure-registries if it speaks plain HTTP.",
        )
    if any(marker in text for marker in NOT_FOUND):
        return
    if any(marker in text for marker in UNREACHABLE):
        raise RegistryError(
            f"the registry of {ref} is unreachable ({_last_line(stderr)}).", hint=_REGISTRY_HINT
        )
    raise RegistryError(
        f"looking up {ref} in its registry failed ({_last_line(stderr)}).", hint=_REGISTRY_HINT
    )


def _digest_from(stdout: str, ref: str) -> str:
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"unexpected answer looking up {ref}: {stdout[:200]!r}") from exc
    if isinstance(data, list):  # `docker manifest inspect -v` on a manifest list
        data = data[0] if data else {}
    digest = data.get("digest") or data.get("Descriptor", {}).get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise RegistryError(f"the registry's answer for {ref} carries no digest.")
    return digest


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
