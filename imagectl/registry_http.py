"""The registry's HTTP API (OCI distribution) for look-ups: one request, its auth handshake,
TLS as docker does it, and failures classified by HTTP status, error code or exception type,
never by searching text (which would contain the image's own name).

Credentials come from docker's own store (`docker login`): its config.json or the credential
helper it names. They stay in memory: never logged, printed, written or put on a command line.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imagectl.errors import RegistryError

# Registries docker itself treats as insecure (HTTPS without verification, then plain HTTP).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
CERTS_DIR = Path("/etc/docker/certs.d")  # docker's per-registry CA folder
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
Credentials = Callable[[str], tuple[str, str] | None]


class RegistryAuthError(RegistryError):
    """The registry answered 401 or 403: not logged in, wrong or expired credentials."""

    kind = "registry refused access"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """An image reference split the way the registry API addresses it."""

    host: str  # with port, as docker names it (the key of docker's credential store)
    path: str  # the repository inside the registry, e.g. pods/noble
    tag: str = ""
    digest: str = ""

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.host == "docker.io" else self.host


def parse_reference(ref: str) -> Reference:
    """`host:5000/a/b:v3@sha256:...` -> Reference; names without a host are Docker Hub's."""
    name, _, digest = ref.partition("@")
    head, slash, last = name.rpartition("/")
    repository, _, tag = last.partition(":")
    full = f"{head}{slash}{repository}"
    first = full.split("/", 1)[0]
    if "/" in full and ("." in first or ":" in first or first == "localhost"):
        host, path = full.split("/", 1)
    else:
        host, path = "docker.io", full if "/" in full else f"library/{full}"
    if not tag and not digest:
        tag = "latest"
    return Reference(host=host, path=path, tag=tag, digest=digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names lowercased
    body: bytes = b""

    def error_codes(self) -> tuple[str, ...]:
        """The distribution error codes of the body (`{"errors": [{"code": ...}]}`)."""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            errors = json.loads(self.body or b"{}").get("errors") or []
            return tuple(str(error.get("code", "")) for error in errors)
        return ()


def docker_credentials(host: str) -> tuple[str, str] | None:
    """(user, secret) for `host` from docker's config: its credential helper, else `auths`."""
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
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
    with contextlib.suppress(ValueError, AttributeError):
        answer = json.loads(done.stdout)
        return str(answer["Username"]), str(answer["Secret"])
    return None


@dataclass
class RegistryTransport:
    """HTTP to registries, with docker's TLS rules and the token or basic auth handshake."""

    credentials: Credentials = docker_credentials
    timeout: float = 30.0
    _schemes: dict[str, str] = field(default_factory=dict)  # host -> the scheme that answered
    _auth: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, scope) -> header
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def get(self, ref: Reference, path: str, *, accept: str, method: str = "GET") -> Response:
        """Request `path` of `ref`'s registry, authenticating for pulls of its repository."""
        scope = f"repository:{ref.path}:pull"
        headers = {"Accept": accept}
        with self._guard:
            known = self._auth.get((ref.api_host, scope))
        if known:
            headers["Authorization"] = known
        response = self._send(method, ref.api_host, path, headers)
        if response.status == 401 and "Authorization" not in headers:
            header = self._authorize(ref, response.headers.get("www-authenticate", ""), scope)
            if header:
                with self._guard:
                    self._auth[(ref.api_host, scope)] = header
                response = self._send(
                    method, ref.api_host, path, {**headers, "Authorization": header}
                )
        return response

    def _authorize(self, ref: Reference, challenge: str, scope: str) -> str:
        """The Authorization header the challenge asks for, or "" when none can be made."""
        creds = self.credentials(ref.host)
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            return _basic(creds) if creds else ""
        if scheme != "bearer":
            return ""
        params = dict(CHALLENGE.findall(challenge))
        if not params.get("realm"):
            return ""
        query = urllib.parse.urlencode(
            {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        )
        headers = {"Authorization": _basic(creds)} if creds else {}
        try:
            reply = _open(f"{params['realm']}?{query}", "GET", headers, ref.api_host, self.timeout)
            token = json.loads(reply.body).get("token") or ""
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return ""  # the retry without a token answers 401 again, which says what to do
        return f"Bearer {token}" if reply.status == 200 and token else ""

    def _send(self, method: str, host: str, path: str, headers: Mapping[str, str]) -> Response:
        schemes = [self._schemes[host]] if host in self._schemes else _schemes_for(host)
        failure: BaseException | None = None
        for scheme in schemes:
            try:
                response = _open(f"{scheme}://{host}{path}", method, headers, host, self.timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                failure = error
                continue
            with self._guard:
                self._schemes[host] = scheme
            return response
        raise _unreachable(host, failure)


def _open(url: str, method: str, headers: Mapping[str, str], host: str, timeout: float) -> Response:
    """One HTTP(S) request; an HTTP error status is an answer, not an exception."""
    if not url.startswith(("https://", "http://")):
        raise urllib.error.URLError(f"not an http(s) URL: {url.split(':', 1)[0]}")
    request = urllib.request.Request(url, method=method, headers=dict(headers))  # noqa: S310
    try:
        context = _tls(host) if url.startswith("https://") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:  # noqa: S310
            return Response(status=reply.status, headers=_lower(reply.headers), body=reply.read())
    except urllib.error.HTTPError as error:
        return Response(status=error.code, headers=_lower(error.headers), body=error.read())


def _schemes_for(host: str) -> list[str]:
    """HTTPS first; plain HTTP only where docker would fall back to it (insecure registries)."""
    return ["https", "http"] if insecure(host) else ["https"]


def insecure(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    extra = [e.strip() for e in os.environ.get("IMAGECTL_INSECURE_REGISTRIES", "").split(",")]
    return name in LOCAL_HOSTS or name.startswith("127.") or host in extra


@functools.lru_cache(maxsize=64)
def _tls(host: str) -> ssl.SSLContext:
    """Docker's rules: system CAs plus /etc/docker/certs.d/<host>/*.crt; insecure registries
    are not verified (docker does not verify them either). One context per host: loading the
    system CAs costs ~15 ms."""
    context = ssl.create_default_context()
    if insecure(host):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    folder = CERTS_DIR / host
    if folder.is_dir():
        for ca in sorted(folder.glob("*.crt")):
            with contextlib.suppress(OSError, ssl.SSLError):
                context.load_verify_locations(cafile=str(ca))
    return context


def _unreachable(host: str, failure: BaseException | None) -> RegistryError:
    """A transport failure, classified by its exception type."""
    reason = getattr(failure, "reason", failure)
    if isinstance(reason, ssl.SSLCertVerificationError | ssl.SSLError):
        return RegistryError(
            f"TLS failed talking to the registry {host} ({type(reason).__name__}).",
            hint=f"Give docker the registry's CA certificate ({CERTS_DIR}/{host}/ca.crt), or "
            "add the host to IMAGECTL_INSECURE_REGISTRIES if it speaks plain HTTP.",
        )
    if isinstance(reason, TimeoutError | socket.timeout):
        what = "did not answer in time"
    elif isinstance(reason, socket.gaierror):
        what = "has a name that does not resolve"
    elif isinstance(reason, ConnectionRefusedError):
        what = "refused the connection"
    else:
        what = f"is unreachable ({type(reason).__name__})"
    return RegistryError(
        f"the registry {host} {what}.",
        hint="Start it (scripts/engine up starts the local one on 127.0.0.1:5000) or check "
        "the repository name; nothing was changed.",
    )


def _basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def _lower(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {str(k).lower(): str(v) for k, v in items}
