"""The Docker Engine API over the engine's socket: the runner under the docker adapter.

Every call is one HTTP request on a kept-alive connection (about 1 ms on the local socket; a
docker CLI process costs 20-50 ms). Failures are typed: an engine that does not answer is told
by the exception of the connection, an API refusal by its HTTP status (`ApiError` keeps method,
path, status and the engine's message as fields), never by reading text that holds the user's
image names.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

from imagectl.adapters.docker_config import EngineEndpoint, TlsFiles, engine_endpoint
from imagectl.adapters.http_client import (
    Connection,
    Opener,
    ProtocolError,
    Response,
    StreamedResponse,
    tcp_opener,
    tls_opener,
    unix_opener,
)
from imagectl.core.errors import EngineError

SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/:@")
STDOUT, STDERR = 1, 2  # stream numbers of Docker's multiplexed attach/exec/logs stream


class ApiError(Exception):
    """The engine answered with an error status."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.method, self.path, self.status, self.message = method, path, status, message


class EngineUnreachableError(Exception):
    """No answer from the engine: its socket is missing, refuses, or the connection broke."""

    def __init__(self, method: str, path: str, cause: BaseException) -> None:
        super().__init__(f"{method} {path}: {type(cause).__name__}")
        self.method, self.path, self.cause = method, path, cause


def quote(text: str) -> str:
    """Percent-encode a path segment or query value (image references stay readable)."""
    return "".join(chr(b) if b in SAFE else f"%{b:02X}" for b in text.encode())


def query(**params: str | int | bool | None) -> str:
    def value(v: str | int | bool) -> str:
        return ("1" if v else "0") if isinstance(v, bool) else quote(str(v))

    pairs = [f"{k}={value(v)}" for k, v in params.items() if v is not None]
    return "?" + "&".join(pairs) if pairs else ""


class EngineApi:
    """One engine's API; safe to share between threads (each thread has its own connection)."""

    def __init__(self, endpoint: EngineEndpoint | None = None) -> None:
        self.endpoint = endpoint or engine_endpoint()
        self._opener = opener_for(self.endpoint)
        self._local = threading.local()
        self._info: dict[str, Any] | None = None
        self._info_asked: threading.Thread | None = None

    def info(self) -> dict[str, Any]:
        """The engine's /info, asked once (dockerd gathers it anew for each call, ~5 ms): where
        it keeps images and which host it runs on do not change while a command runs."""
        if self._info_asked is not None:
            self._info_asked.join()
        if self._info is None:  # not prefetched, or the prefetch failed: ask here, and raise
            found = self.json("GET", "/info")
            self._info = found if isinstance(found, dict) else {}
        return self._info

    def prefetch_info(self) -> None:
        """Ask for /info in a thread of its own, so that its answer is there when needed."""
        if self._info is not None or self._info_asked is not None:
            return

        def ask() -> None:
            connection = Connection(self._opener)
            try:
                found = connection.request("GET", "/info", headers={}, body=None)
                if found.status == 200:
                    loaded = json.loads(found.body)
                    self._info = loaded if isinstance(loaded, dict) else None
            except (OSError, ProtocolError, ValueError):
                pass  # info() asks again and raises what it finds
            finally:
                connection.close()

        self._info_asked = threading.Thread(target=ask, name="imagectl-info", daemon=True)
        self._info_asked.start()

    def _connection(self) -> Connection:
        found: Connection | None = getattr(self._local, "connection", None)
        if found is None:
            found = Connection(self._opener)
            self._local.connection = found
        return found

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (),
        timeout: float | None = None,
    ) -> Response:
        """One request; a status of 400 or more raises ApiError unless it is in `ok`."""
        sent, asked = _encoded(body, headers)
        try:
            answer = self._connection().request(
                method, path, headers=asked, body=sent, timeout=timeout
            )
        except (OSError, ProtocolError) as exc:
            self._connection().close()
            raise EngineUnreachableError(method, path, exc) from exc
        if answer.status >= 400 and answer.status not in ok:
            raise ApiError(method, path, answer.status, _message(answer.body))
        return answer

    def json(self, method: str, path: str, **keywords: Any) -> Any:
        answer = self.call(method, path, **keywords)
        return json.loads(answer.body) if answer.body.strip() else None

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Iterable[bytes] | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[StreamedResponse]:
        """A request whose answer is read as it comes (an export, a pull's progress). A broken
        connection while it is read is EngineUnreachableError; the caller's own errors (a
        full disk) pass as they are."""
        connection = Connection(self._opener)  # its own: the answer may be long
        answering = False
        try:
            with connection.stream(
                method, path, headers=headers, body=body, timeout=timeout
            ) as answer:
                if answer.status >= 400:
                    raise ApiError(method, path, answer.status, _message(answer.read()))
                answering = True
                yield answer
        except (ConnectionError, TimeoutError, ProtocolError) as exc:
            raise EngineUnreachableError(method, path, exc) from exc
        except OSError as exc:
            if answering:
                raise
            raise EngineUnreachableError(method, path, exc) from exc
        finally:
            connection.close()

    def messages(self, method: str, path: str, **keywords: Any) -> Iterator[dict[str, Any]]:
        """A JSON message stream (pull, push, import), each message as it arrives; an
        `error` message in it raises ApiError as an error status would (the status was 200)."""
        with self.stream(method, path, **keywords) as answer:
            for line in answer.lines():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                if message.get("error") or message.get("errorDetail"):
                    detail = message.get("errorDetail") or {}
                    text = str(message.get("error") or detail.get("message") or "")
                    raise ApiError(method, path, int(detail.get("code") or 500), text)
                yield message

    def attached(
        self, method: str, path: str, *, body: Any = None, timeout: float | None = None
    ) -> MultiplexedStream:
        """A hijacked connection (attach, exec start) as Docker's multiplexed stream."""
        sent, headers = _encoded(body, None)
        connection = Connection(self._opener)
        try:
            head, reader, sock = connection.hijack(
                method, path, headers=headers, body=sent, timeout=timeout
            )
        except (OSError, ProtocolError) as exc:
            connection.close()
            raise EngineUnreachableError(method, path, exc) from exc
        if head.status >= 400:
            sock.close()
            raise ApiError(method, path, head.status, _message(head.body))
        return MultiplexedStream(reader, sock)


class MultiplexedStream:
    """Docker's stream of a container without a TTY: frames of [stream, 0, 0, 0, size] + data."""

    def __init__(self, reader: Any, sock: socket.socket) -> None:
        self._reader, self._sock = reader, sock

    def frames(self) -> Iterator[tuple[int, bytes]]:
        while True:
            head = self._read(8)
            if len(head) < 8:
                return
            kind, size = head[0], struct.unpack(">I", head[4:8])[0]
            yield kind, self._read(size)

    def _read(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            piece = self._reader.some(size - len(out))
            if not piece:
                break
            out += piece
        return out

    def set_deadline(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def close(self) -> None:
        self._sock.close()


def _encoded(body: Any, headers: Mapping[str, str] | None) -> tuple[bytes | None, dict[str, str]]:
    asked = dict(headers or {})
    if body is None or isinstance(body, bytes):
        return body, asked
    asked.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode(), asked


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message") or "").strip()
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:500]


def engine_hint() -> str:
    """What to do when the engine does not answer; `scripts/engine` only for the local one."""
    endpoint = engine_endpoint()
    if endpoint.is_default:
        return (
            "Start it (in imagectl's own checkout: `scripts/engine up`), then run the command "
            "again."
        )
    return f"Check that the engine at {endpoint.describe()} runs and answers, then run again."


def api_failure(exc: ApiError | EngineUnreachableError, *, doing: str) -> EngineError:
    """The EngineError of a failed API call: "does not answer" (the connection failed) or what
    the engine said, with method, path, status and message as fields."""
    command = (exc.method, exc.path)
    if isinstance(exc, EngineUnreachableError):
        return EngineError(
            f"the Docker engine ({engine_endpoint().describe()}) does not answer while {doing}.",
            hint=engine_hint(),
            command=command,
            stderr=type(exc.cause).__name__,
        )
    return EngineError(
        f"the Docker engine refused {doing} (HTTP {exc.status}): {exc.message}.",
        command=command,
        exit_code=exc.status,
        stderr=exc.message,
    )


@contextmanager
def calling(doing: str) -> Iterator[None]:
    """API failures inside become EngineErrors saying what imagectl was doing. The decision
    (absent, refused, unreachable) is the caller's, by status: never by the engine's text."""
    try:
        yield
    except (ApiError, EngineUnreachableError) as exc:
        raise api_failure(exc, doing=doing) from exc


# -- reaching the engine ---------------------------------------------------------------------


def opener_for(endpoint: EngineEndpoint) -> Opener:
    """A socket to the engine: unix and tcp (TLS) directly; anything else (ssh://, a context's
    other transports) through `docker system dial-stdio`, which the docker CLI provides."""
    host = endpoint.host
    if host.startswith("unix://"):
        return unix_opener(host.removeprefix("unix://"))
    if host.startswith("tcp://"):
        address = host.removeprefix("tcp://").split("/", 1)[0]
        name, _, port = address.rpartition(":")
        name = name.strip("[]") or address
        plain = tcp_opener(name, int(port or (2376 if endpoint.tls else 2375)))
        if endpoint.tls is None:
            return plain
        files = endpoint.tls
        return tls_opener(plain, server_name=name, context_factory=lambda: _tls_context(files))
    return _dial_stdio_opener(endpoint)


def _tls_context(files: TlsFiles) -> object:
    import ssl  # noqa: PLC0415 - only engines reached over TLS pay its import

    context = ssl.create_default_context(cafile=files.ca or None)
    if not files.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if files.cert and files.key:
        context.load_cert_chain(files.cert, files.key)
    return context


def _dial_stdio_opener(endpoint: EngineEndpoint) -> Opener:
    def open_dialed() -> socket.socket:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        if endpoint.context:
            env["DOCKER_CONTEXT"] = endpoint.context
        process = subprocess.Popen(
            ["docker", "system", "dial-stdio"],
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        # Each lives as long as its connection; the ones whose connection ended are reaped.
        _DIALERS[:] = [p for p in _DIALERS if p.poll() is None]
        _DIALERS.append(process)
        return ours

    return open_dialed


_DIALERS: list[subprocess.Popen[bytes]] = []


def demultiplexed(frames: Iterable[tuple[int, bytes]]) -> tuple[bytes, bytes, bytes]:
    """(stdout, stderr, both interleaved) of a multiplexed stream's frames."""
    out, err, both = bytearray(), bytearray(), bytearray()
    for kind, data in frames:
        (err if kind == STDERR else out).extend(data)
        both.extend(data)
    return bytes(out), bytes(err), bytes(both)
