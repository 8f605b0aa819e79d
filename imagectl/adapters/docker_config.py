"""What docker's own client configuration says: the engine to talk to (DOCKER_HOST, docker
contexts) and registry credentials (`docker login`: config.json or a credential helper).

imagectl reads these files the way the docker CLI does, so that it reaches the same engine and
registries with the same identity. Credentials stay in memory: never logged, printed, written
or put on a command line.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagectl.core.errors import EngineError

DEFAULT_HOST = "unix:///var/run/docker.sock"


def config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


# Where the docker CLI looks for plugins after $DOCKER_CONFIG/cli-plugins and the config's
# cliPluginsExtraDirs (docker/cli's defaultSystemPluginDirs on Linux), in its order.
SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def buildx_plugin() -> Path | None:
    """The buildx plugin binary `docker buildx` would run (the first one the docker CLI's own
    search finds), or None when there is none in any of its folders."""
    extra = _config().get("cliPluginsExtraDirs")
    extra_dirs = [str(d) for d in extra] if isinstance(extra, list) else []
    for folder in (str(config_dir() / "cli-plugins"), *extra_dirs, *SYSTEM_PLUGIN_DIRS):
        candidate = Path(folder).expanduser() / "docker-buildx"
        if os.access(candidate, os.X_OK) and candidate.is_file():
            return candidate
    return None


def _config() -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads((config_dir() / "config.json").read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            return loaded
    return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """Client TLS for a tcp engine: docker's ca.pem, cert.pem and key.pem (any may be absent)."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    verify: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineEndpoint:
    """Where the engine is, as the docker CLI would find it."""

    host: str  # unix:///..., tcp://host:port, ssh://...
    tls: TlsFiles | None = None
    context: str = ""  # the docker context it comes from; "" for DOCKER_HOST or the default

    @property
    def is_default(self) -> bool:
        return self.host == DEFAULT_HOST and not self.context

    def describe(self) -> str:
        return f"docker context {self.context}" if self.context else self.host


def engine_endpoint() -> EngineEndpoint:
    """DOCKER_HOST, else the docker context (DOCKER_CONTEXT, else config.json's current one),
    else the local socket."""
    host = os.environ.get("DOCKER_HOST", "")
    if host:
        return EngineEndpoint(host=host, tls=_env_tls() if host.startswith("tcp://") else None)
    context = os.environ.get("DOCKER_CONTEXT") or str(_config().get("currentContext") or "")
    if context and context != "default":
        return context_endpoint(context)
    return EngineEndpoint(host=DEFAULT_HOST)


def _env_tls() -> TlsFiles | None:
    verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
    if not verify and not os.environ.get("DOCKER_TLS"):
        return None
    folder = Path(os.environ.get("DOCKER_CERT_PATH") or config_dir())
    return _tls_in(folder, verify=verify)


def _tls_in(folder: Path, *, verify: bool) -> TlsFiles:
    def found(name: str) -> str:
        path = folder / name
        return str(path) if path.is_file() else ""

    return TlsFiles(ca=found("ca.pem"), cert=found("cert.pem"), key=found("key.pem"), verify=verify)


def context_endpoint(name: str) -> EngineEndpoint:
    """A docker context's engine: contexts/meta/<sha256 of the name>/meta.json, and its TLS
    files in contexts/tls/<the same>/docker/."""
    key = hashlib.sha256(name.encode()).hexdigest()
    meta_path = config_dir() / "contexts" / "meta" / key / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        docker = meta["Endpoints"]["docker"]
        host = str(docker["Host"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(
            f"the docker context {name!r} does not exist (or has no docker endpoint).",
            hint="`docker context ls` lists the contexts; fix DOCKER_CONTEXT or `docker context "
            "use` one that exists.",
        ) from exc
    tls_dir = config_dir() / "contexts" / "tls" / key / "docker"
    tls = None
    if host.startswith("tcp://") and tls_dir.is_dir():
        tls = _tls_in(tls_dir, verify=not bool(docker.get("SkipTLSVerify")))
    return EngineEndpoint(host=host, tls=tls, context=name)


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, secret) for `host` from docker's config: its credential helper, else `auths`."""
    config = _config()
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        found = _from_helper(str(helper), host)
        if found is not None:
            return found
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"):
        entry = (config.get("auths") or {}).get(key) or {}
        encoded = entry.get("auth") if isinstance(entry, dict) else None
        if encoded:
            user, _, secret = base64.b64decode(encoded).decode().partition(":")
            return user, secret
    return None


def _from_helper(helper: str, host: str) -> tuple[str, str] | None:
    """Ask `docker-credential-<helper> get`: the host goes in on stdin, the secret comes back
    on stdout; neither is ever on a command line."""
    try:
        done = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=host,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
        answer = json.loads(done.stdout)
        return str(answer["Username"]), str(answer["Secret"])
    return None


def registry_auth_header(host: str) -> str:
    """The Engine API's X-Registry-Auth for a pull or push from `host`: docker's credentials
    as base64url JSON ("e30=", i.e. {}, without any)."""
    found = docker_credentials(host)
    data = {"username": found[0], "password": found[1], "serveraddress": host} if found else {}
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
