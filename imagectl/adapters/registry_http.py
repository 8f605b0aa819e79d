"""The registry's HTTP API (OCI distribution): one request (a look-up, or an upload whose body
is streamed from a file), its auth handshake, TLS as docker does it, and failures classified by
HTTP status, error code or exception type, never by searching text (which would contain the
image's own name).

Credentials come from docker's own store (`docker_config`). They stay in memory: never logged,
printed, written or put on a command line. Requests go through `http_client` on connections
kept per registry and thread, through HTTPS_PROXY/HTTP_PROXY when set (NO_PROXY honoured).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from imagectl.adapters.docker_config import docker_credentials
from imagectl.adapters.http_client import (
    Connection,
    Opener,
    ProtocolError,
    StreamedResponse,
    tcp_opener,
    tls_opener,
    tunnel_opener,
)
from imagectl.core.errors import RegistryAuthError, RegistryError
from imagectl.core.references import ImageRef

# Registries docker itself treats as insecure (HTTPS without verification, then plain HTTP).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
CERTS_DIR = Path("/etc/docker/certs.d")  # docker's per-registry CA folder
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
REDIRECTS = (301, 302, 303, 307, 308)  # a blob served from elsewhere (S3, a CDN)
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
Credentials = Callable[[str], tuple[str, str] | None]
Reference = ImageRef  # what the registry API addresses


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A registry's answer: status, headers, the body read whole."""

    status: int
    headers: Mapping[str, str]  # names lowercased
    body: bytes = b""

    def error_codes(self) -> tuple[str, ...]:
        """The distribution error codes of the body (`{"errors": [{"code": ...}]}`)."""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            errors = json.loads(self.body or b"{}").get("errors") or []
            return tuple(str(error.get("code", "")) for error in errors)
        return ()


@dataclass
class RegistryTransport:
    """HTTP to registries, with docker's TLS rules and the token or basic auth handshake."""

    credentials: Credentials = docker_credentials
    timeout: float = 30.0
    _schemes: dict[str, str] = field(default_factory=dict)  # host -> the scheme that answered
    _auth: dict[tuple[str, str], str] = field(default_factory=dict)  # (host, scope) -> header
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _local: Any = field(default_factory=threading.local)  # this thread's connections

    def get(self, ref: Reference, path: str, *, accept: str, method: str = "GET") -> Response:
        """Request `path` of `ref`'s registry, authenticating for pulls of its repository."""
        return self.send(ref, path, method=method, headers={"Accept": accept})

    def send(
        self,
        ref: Reference,
        path: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
        push: bool = False,
    ) -> Response:
        """One request to `ref`'s registry, authenticating for pulls of its repository (and
        pushes to it, with `push`): the token or basic handshake once per scope. A file body
        (a blob upload, with its Content-Length in `headers`) is streamed from where it stands
        and sent again from there after the handshake; it should go once the scope's
        Authorization is known (the upload's POST made it), since a server may cut a large
        body it answers 401 to."""
        scope = f"repository:{ref.path}:{'pull,push' if push else 'pull'}"
        headers = self._with_known_auth(ref, scope, headers)
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        response = self._send(method, ref.api_host, path, headers, body)
        if response.status == 401 and "Authorization" not in headers:
            header = self._authorized(ref, scope, response.headers.get("www-authenticate", ""))
            if header:
                if body is not None and not isinstance(body, bytes):
                    body.seek(start)
                response = self._send(
                    method, ref.api_host, path, {**headers, "Authorization": header}, body
                )
        return response

    def _with_known_auth(
        self, ref: Reference, scope: str, headers: Mapping[str, str]
    ) -> dict[str, str]:
        """`headers` with the Authorization this scope was given before, if any."""
        with self._guard:
            known = self._auth.get((ref.api_host, scope))
        return {**headers, "Authorization": known} if known else dict(headers)

    def _authorized(self, ref: Reference, scope: str, challenge: str) -> str:
        """The Authorization header the challenge asks for, remembered for the scope; ""."""
        header = self._authorize(ref, challenge, scope)
        if header:
            with self._guard:
                self._auth[(ref.api_host, scope)] = header
        return header

    @contextlib.contextmanager
    def stream(self, ref: Reference, path: str, *, accept: str) -> Iterator[StreamedResponse]:
        """A GET of `path` whose body is read as it arrives (a layer blob): the same auth
        handshake as `send`, and a redirect followed once, to a server that is not the
        registry without the registry's credentials (a presigned storage URL carries its
        own)."""
        scope = f"repository:{ref.path}:pull"
        headers = self._with_known_auth(ref, scope, {"Accept": accept})
        with contextlib.ExitStack() as first:
            answer = first.enter_context(self._stream_to(ref.api_host, path, headers))
            if answer.status == 401 and "Authorization" not in headers:
                challenge = answer.headers.get("www-authenticate", "")
                header = self._authorized(ref, scope, challenge)
                if header:
                    headers["Authorization"] = header
                    first.close()  # the 401's connection, its small body unread
                    answer = first.enter_context(self._stream_to(ref.api_host, path, headers))
            location = answer.headers.get("location", "")
            if answer.status not in REDIRECTS or not location:
                yield answer
                return
            first.close()
            if location.startswith("/"):
                scheme, host, where = "", ref.api_host, location
            else:
                scheme, _, rest = location.partition("://")
                host, slash, tail = rest.partition("/")
                where = slash + tail
                if host != ref.api_host:
                    headers.pop("Authorization", None)
            target = self._stream_to(host, where, headers, schemes=[scheme] if scheme else None)
            with target as moved:
                yield moved

    @contextlib.contextmanager
    def _stream_to(
        self,
        host: str,
        path: str,
        headers: Mapping[str, str],
        *,
        schemes: list[str] | None = None,
    ) -> Iterator[StreamedResponse]:
        if schemes is None:
            # a streamed answer is not checked for a TLS server's 400: https first here
            schemes = [self._schemes[host]] if host in self._schemes else _schemes_for(host)
        failure: BaseException | None = None
        for scheme in schemes:
            for attempt in (1, 2):
                url = f"{scheme}://{host}{path}"
                opened = self._stream_url(url, headers)
                try:
                    answer = opened.__enter__()
                except (OSError, ProtocolError) as error:
                    failure = error
                    self._connection(scheme, host).close()
                    # a kept connection the server closed while idle: once more on a new one
                    if attempt == 1 and isinstance(error, ProtocolError):
                        continue
                    break
                with self._guard:
                    self._schemes[host] = scheme
                with contextlib.ExitStack() as stack:
                    stack.push(opened)  # its exit: the connection kept or closed
                    yield answer
                return
        raise _unreachable(host, failure)

    def _stream_url(
        self, url: str, headers: Mapping[str, str]
    ) -> contextlib.AbstractContextManager[StreamedResponse]:
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https"):
            raise ProtocolError(f"not an http(s) URL: {scheme}")
        host, slash, path = rest.partition("/")
        connection = self._connection(scheme, host)
        target = slash + path if slash else "/"
        if _proxy(scheme, host) and scheme == "http":
            target = url
        return connection.stream("GET", target, headers=dict(headers), timeout=self.timeout)

    def close(self) -> None:
        """Close this thread's kept connections (a process's last request needs none)."""
        connections: dict[str, Connection] = self._local.__dict__.setdefault("connections", {})
        for connection in connections.values():
            connection.close()
        connections.clear()

    def _connection(self, scheme: str, host: str) -> Connection:
        """This thread's kept connection to that server."""
        connections: dict[str, Connection] = self._local.__dict__.setdefault("connections", {})
        key = f"{scheme}://{host}"
        connection = connections.get(key)
        if connection is None:
            connection = Connection(_opener(scheme, host, self.timeout), host=host)
            connections[key] = connection
        return connection

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
        query = "&".join(
            f"{key}={_quote(value)}"
            for key, value in (("service", params.get("service", "")),
                               ("scope", params.get("scope", scope)))
        )  # fmt: skip
        headers = {"Authorization": _basic(creds)} if creds else {}
        realm = params["realm"]
        try:
            reply = self._open(f"{realm}{'&' if '?' in realm else '?'}{query}", "GET", headers)
            token = json.loads(reply.body).get("token") or ""
        except (OSError, ProtocolError, ValueError, AttributeError):
            return ""  # the retry without a token answers 401 again, which says what to do
        return f"Bearer {token}" if reply.status == 200 and token else ""

    def _send(
        self,
        method: str,
        host: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
    ) -> Response:
        schemes = (
            [self._schemes[host]]
            if host in self._schemes
            else _schemes_for(host, plain_first=body is None or isinstance(body, bytes))
        )
        failure: BaseException | None = None
        for index, scheme in enumerate(schemes):
            try:
                response = self._open(f"{scheme}://{host}{path}", method, headers, body)
            except (OSError, ProtocolError) as error:
                failure = error
                continue
            if scheme == "http" and response.status == 400 and index + 1 < len(schemes):
                continue  # a TLS server's answer to a plain request: ask it over https
            with self._guard:
                self._schemes[host] = scheme
            return response
        raise _unreachable(host, failure)

    def _open(
        self,
        url: str,
        method: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
    ) -> Response:
        """One HTTP(S) request on this thread's connection to that server; an HTTP error
        status is an answer, not an exception."""
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https"):
            raise ProtocolError(f"not an http(s) URL: {scheme}")
        host, slash, path = rest.partition("/")
        connection = self._connection(scheme, host)
        target = slash + path if slash else "/"
        if _proxy(scheme, host) and scheme == "http":
            target = url  # a plain-HTTP proxy takes the absolute URL
        try:
            answer = connection.request(
                method, target, headers=dict(headers), body=body, timeout=self.timeout
            )
        except BaseException:
            connection.close()
            raise
        return Response(status=answer.status, headers=answer.headers, body=answer.body)


def _opener(scheme: str, host: str, timeout: float) -> Opener:
    name, port = _split_host(host, 443 if scheme == "https" else 80)
    proxy = _proxy(scheme, host)
    if proxy:
        proxy_name, proxy_port = _split_host(proxy.split("://", 1)[-1].rstrip("/"), 3128)
        via = tcp_opener(proxy_name, proxy_port, timeout=timeout)
        if scheme == "http":
            return via
        plain = tunnel_opener(via, target=f"{name}:{port}")
    else:
        plain = tcp_opener(name, port, timeout=timeout)
    if scheme == "http":
        return plain
    return tls_opener(plain, server_name=name, context_factory=lambda: _tls(host))


def _split_host(host: str, default: int) -> tuple[str, int]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest.lstrip(":") or default)
    name, _, port = host.partition(":")
    return name, int(port or default)


def _proxy(scheme: str, host: str) -> str:
    """The proxy the environment names for this scheme and host ("" for none)."""
    found = os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY") or ""
    if not found:
        return ""
    name = _split_host(host, 0)[0]
    excluded = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    for entry in (e.strip().lstrip(".") for e in excluded.split(",")):
        if entry == "*" or (entry and (name == entry or name.endswith(f".{entry}"))):
            return ""
    return found


def _quote(text: str) -> str:
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in text.encode())


def _schemes_for(host: str, *, plain_first: bool = False) -> list[str]:
    """HTTPS first; plain HTTP only where docker would fall back to it (insecure registries).
    With `plain_first`, a registry on this machine's loopback is asked over plain HTTP first
    (what one there usually speaks; a failed TLS handshake costs ~10 ms a command), then over
    HTTPS when it answers HTTP 400, as a TLS server answers a plain request. Elsewhere (and for
    a body read from a stream, which cannot be sent twice, or an answer streamed to the
    caller) not HTTP first: a 400 there may be the registry's own answer."""
    if _loopback(host) and plain_first:
        return ["http", "https"]
    return ["https", "http"] if insecure(host) else ["https"]


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOCAL_HOSTS or name.startswith("127.")


def insecure(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    extra = [e.strip() for e in os.environ.get("IMAGECTL_INSECURE_REGISTRIES", "").split(",")]
    return name in LOCAL_HOSTS or name.startswith("127.") or host in extra


@functools.lru_cache(maxsize=64)
def _tls(host: str) -> Any:
    """Docker's rules: system CAs plus /etc/docker/certs.d/<host>/*.crt; insecure registries
    are not verified (docker does not verify them either). One context per host: loading the
    system CAs costs ~15 ms."""
    import ssl  # noqa: PLC0415 - only HTTPS registries pay its import

    if insecure(host):
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CAs to load
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        return unverified
    context = ssl.create_default_context()
    folder = CERTS_DIR / host
    if folder.is_dir():
        for ca in sorted(folder.glob("*.crt")):
            with contextlib.suppress(OSError, ssl.SSLError):
                context.load_verify_locations(cafile=str(ca))
    return context


LOCAL_REGISTRIES = ("localhost:5000", "127.0.0.1:5000")  # what scripts/engine up starts


def registry_hint(host: str) -> str:
    """What to do about a registry that did not answer as expected: starting the local one is
    advice only for this machine's own registry."""
    if host in LOCAL_REGISTRIES:
        return (
            "Start it (in imagectl's checkout, scripts/engine up starts this machine's registry "
            "on 127.0.0.1:5000) or check the repository name."
        )
    return f"Check that {host} runs and is reachable from here, or check the repository name."


def _unreachable(host: str, failure: BaseException | None) -> RegistryError:
    """A transport failure, classified by its exception type."""
    import ssl  # noqa: PLC0415

    if isinstance(failure, ssl.SSLCertVerificationError | ssl.SSLError):
        return RegistryError(
            f"TLS failed talking to the registry {host} ({type(failure).__name__}).",
            hint=f"Give docker the registry's CA certificate ({CERTS_DIR}/{host}/ca.crt), or "
            "add the host to IMAGECTL_INSECURE_REGISTRIES if it speaks plain HTTP.",
        )
    if isinstance(failure, TimeoutError):
        what = "did not answer in time"
    elif isinstance(failure, socket.gaierror):
        what = "has a name that does not resolve"
    elif isinstance(failure, ConnectionRefusedError):
        what = "refused the connection"
    else:
        what = f"is unreachable ({type(failure).__name__})"
    return RegistryError(
        f"the registry {host} {what}.",
        hint=registry_hint(host),
    )


def _basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def same_registry_path(location: str, ref: Reference) -> str:
    """An upload's Location as a path on this registry (it may be absolute or relative)."""
    if location.startswith("/"):
        return location
    scheme, _, rest = location.partition("://")
    host, slash, path = rest.partition("/")
    if scheme not in ("http", "https") or host != ref.api_host or not slash:
        raise RegistryError(
            f"the registry {ref.host} sent an upload elsewhere ({scheme}://{host}); imagectl "
            "uploads only to the registry it was given.",
            hint=registry_hint(ref.host),
        )
    return "/" + path


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
