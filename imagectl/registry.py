"""The registry adapter: look a tag up without pulling, through the docker CLI.

`docker manifest inspect` sends the proper Accept headers (so distribution never converts to a
schema 1 manifest with another digest), uses docker's own credential store (`docker login`), and
answers with both the manifest digest and the config digest (the image id) in one call. imagectl
never handles credentials itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from imagectl.errors import EngineError, RegistryError, TagImmutableError
from imagectl.ports import RemoteImage, Say
from imagectl.process import last_line, run, stream, without_names

PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
DAEMON_DOWN = ("cannot connect to the docker daemon", "is the docker daemon running")

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
    """Registry look-ups through `docker manifest inspect --verbose`, pushes through
    `docker push`: docker's own credential store, never imagectl's."""

    def lookup(self, ref: str) -> RemoteImage | None:
        command = ["docker", "manifest", "inspect", "--verbose", ref]
        if _is_insecure(ref):
            command.insert(3, "--insecure")
        try:
            result = run(command, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise RegistryError(
                f"the registry did not answer within 120 s looking up {ref}.",
                hint=REGISTRY_HINT,
                command=tuple(command),
            ) from exc
        if result.returncode == 0:
            return remote_image_from(result.stdout, ref)
        raise_unless_absent(ref, result.stderr, command=tuple(command), code=result.returncode)
        return None

    def push(self, ref: str, *, on_output: Say) -> str:
        """Push `ref` and return the manifest digest docker reports for it."""
        command = ("docker", "push", ref)
        code, output = stream(command, env=dict(os.environ), on_output=on_output)
        if code != 0:
            if any(marker in without_names(output, names_in(ref)) for marker in DAEMON_DOWN):
                raise EngineError(
                    f"the Docker engine does not answer while pushing {ref}.",
                    hint="Start it with `scripts/engine up` (or check DOCKER_HOST).",
                    command=command,
                    exit_code=code,
                    stderr=output,
                )
            raise registry_failure(ref, output, command=command, code=code)
        match = PUSHED_DIGEST.search(output)
        if match is None:
            raise RegistryError(f"docker pushed {ref} but reported no digest.", details=output)
        return match.group(1)


REGISTRY_HINT = (
    "Start it (scripts/engine up starts the local one on 127.0.0.1:5000) or check "
    "the repository name; nothing was changed."
)


def _is_insecure(ref: str) -> bool:
    host = ref.split("/", 1)[0] if "/" in ref else ""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    extra = os.environ.get("IMAGECTL_INSECURE_REGISTRIES", "").split(",")
    return name in LOCAL_HOSTS or name.startswith("127.") or host in [e.strip() for e in extra]


def raise_unless_absent(
    ref: str, stderr: str, *, command: tuple[str, ...] = (), code: int | None = None
) -> None:
    """Return quietly when the answer means 'no such tag'; raise a RegistryError otherwise."""
    text = without_names(stderr, names_in(ref))
    if any(marker in text for marker in NOT_FOUND) and not any(
        marker in text for marker in (*AUTH, *TLS, *UNREACHABLE)
    ):
        return
    raise registry_failure(ref, stderr, command=command, code=code)


def registry_failure(
    ref: str, stderr: str, *, command: tuple[str, ...] = (), code: int | None = None
) -> RegistryError:
    """The RegistryError that docker's complaint about `ref` amounts to (read with `ref` cut
    out, so that a repository named like an error never decides the kind)."""
    error = _classified(ref, without_names(stderr, names_in(ref)), last_line(stderr))
    error.command, error.exit_code, error.stderr = command, code, stderr
    return error


def names_in(ref: str) -> tuple[str, ...]:
    """Every form in which docker echoes `ref`: whole, without digest, without tag. (Never a
    bare word: cutting "tls" out of the text would cut docker's own "tls:" too.)"""
    plain = ref.split("@", 1)[0]
    head, _, tail = plain.rpartition("/")
    repository = f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]
    return (ref, plain, repository)


def _classified(ref: str, text: str, reason: str) -> RegistryError:
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
