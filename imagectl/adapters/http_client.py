"""HTTP/1.1 over one socket: the plumbing under the engine adapter (the Engine API on a unix
socket, tcp, TLS or `docker system dial-stdio`) and the registry adapter.

No library: http.client and urllib cost ~25 ms to import (email parsing, proxies) on every
command, and neither gives the raw stream of a hijacked connection (`docker attach`, `exec`)
without reaching into private attributes. The subset here is what both APIs use: fixed-length,
chunked and close-delimited bodies, keep-alive, streamed bodies in both directions, and a
connection taken over after its response headers.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

Opener = Callable[[], socket.socket]  # makes a connected socket to the server
MAX_HEADER = 64 * 1024  # bytes of status line and headers a response may have
CHUNK = 64 * 1024


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.1 this client understands (a cut connection, too)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """One HTTP answer, its body read whole."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # names lowercased
    body: bytes = b""


class Connection:
    """One persistent connection: requests go one after the other; it reconnects when the
    server closed an idle connection. Not shared between threads (make one per thread)."""

    def __init__(self, opener: Opener, *, host: str = "localhost", timeout: float = 60.0) -> None:
        self._opener = opener
        self._host = host
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: _Reader | None = None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock, self._reader = None, None

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request with its whole answer read; retried once on a fresh connection when a
        kept-alive one turns out closed before any answer came (what a server does to idle
        connections). A file body is sent again from where it stood (it must be seekable)."""
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in (1, 2):
            reused = self._sock is not None
            if attempt == 2 and body is not None and not isinstance(body, bytes):
                body.seek(start)
            try:
                with self.stream(method, target, headers=headers, body=body, timeout=timeout) as s:
                    return Response(status=s.status, headers=s.headers, body=s.read())
            except _NoAnswerError:
                self.close()
                if not reused or attempt == 2:
                    raise ProtocolError(
                        "the server closed the connection without an answer"
                    ) from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Iterable[bytes] | BinaryIO | None = None,
        timeout: float | None = None,
    ) -> Iterator[StreamedResponse]:
        """The response with its body still to read (`read`, `chunks`, `lines`); an unread rest
        closes the connection, a wholly read one keeps it for the next request."""
        reader = self._send(method, target, headers or {}, body, timeout)
        response = _read_head(reader, method)
        try:
            yield response
        except BaseException:
            self.close()
            raise
        if response.reusable():
            if self._sock is not None:
                self._sock.settimeout(self.timeout)
        else:
            self.close()

    def hijack(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> tuple[Response, _Reader, socket.socket]:
        """Send a request that takes over the connection (Docker's attach and exec start): the
        response's head, and the raw stream after it. The connection is the caller's now."""
        asked = {"Connection": "Upgrade", "Upgrade": "tcp", **(headers or {})}
        reader = self._send(method, target, asked, body, timeout)
        head = _read_head(reader, method, upgraded=True)
        sock = self._sock
        self._sock, self._reader = None, None
        assert sock is not None
        return Response(status=head.status, headers=head.headers), reader, sock

    def _send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | Iterable[bytes] | BinaryIO | None,
        timeout: float | None,
    ) -> _Reader:
        if self._sock is None:
            self._sock = self._opener()
            self._reader = _Reader(self._sock)
        assert self._reader is not None
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        # A streamed body whose caller gives its Content-Length goes as it is (registries that
        # refuse chunked uploads take it); without one, it is sent chunked.
        sized = any(name.lower() == "content-length" for name in headers)
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}")
        elif body is not None and not sized:
            lines.append("Transfer-Encoding: chunked")
        elif body is None and method in ("POST", "PUT"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if isinstance(body, bytes):
                self._sock.sendall(head + body)
            else:
                self._sock.sendall(head)
                if body is not None and sized:
                    for piece in _pieces(body):
                        self._sock.sendall(piece)
                elif body is not None:
                    _send_chunked(self._sock, body)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _NoAnswerError from exc
        return self._reader


class _NoAnswerError(ProtocolError):
    """The connection was closed before any byte of an answer: safe to send again."""


def _pieces(body: Iterable[bytes] | BinaryIO) -> Iterable[bytes]:
    """A streamed body in pieces of at most CHUNK bytes read from a file (never all of it)."""
    return iter(lambda: body.read(CHUNK), b"") if hasattr(body, "read") else body


def _send_chunked(sock: socket.socket, body: Iterable[bytes] | BinaryIO) -> None:
    for piece in _pieces(body):
        if piece:
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    sock.sendall(b"0\r\n\r\n")


class _Reader:
    """Buffered reads from a socket: lines for the head, exact sizes for bodies."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def _fill(self) -> bool:
        data = self._sock.recv(CHUNK)
        self._buffer += data
        return bool(data)

    def line(self, *, limit: int = MAX_HEADER) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > limit:
                raise ProtocolError("a response line longer than the limit")
            if not self._fill():
                rest = bytes(self._buffer)
                self._buffer.clear()
                return rest

    def some(self, most: int) -> bytes:
        """Up to `most` bytes, at least one unless the stream ended."""
        if not self._buffer and not self._fill():
            return b""
        piece = bytes(self._buffer[:most])
        del self._buffer[:most]
        return piece

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise ProtocolError("the connection closed in the middle of a response")
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        return piece


class StreamedResponse:
    """A response whose body is read as it arrives."""

    def __init__(self, reader: _Reader, status: int, headers: dict[str, str], *, empty: bool):
        self.status = status
        self.headers = headers
        self._reader = reader
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: int | None = 0 if empty else (int(length) if length is not None else None)
        self._until_close = not empty and not self._chunked and length is None
        self._chunk_left = 0
        self._done = empty or (self._left == 0 and not self._chunked)

    def reusable(self) -> bool:
        return (
            self._done
            and not self._until_close
            and self.headers.get("connection", "").lower() != "close"
        )

    def chunks(self) -> Iterator[bytes]:
        while True:
            piece = self._next()
            if not piece:
                return
            yield piece

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """The body split at newlines (JSON message streams: pull, push, import)."""
        pending = b""
        for piece in self.chunks():
            pending += piece
            *whole, pending = pending.split(b"\n")
            yield from (line for line in whole if line.strip())
        if pending.strip():
            yield pending

    def _next(self) -> bytes:
        if self._done:
            return b""
        if self._chunked:
            return self._next_chunk()
        if self._left is None:  # until the server closes
            piece = self._reader.some(CHUNK)
            self._done = not piece
            return piece
        piece = self._reader.some(min(CHUNK, self._left))
        if not piece:
            raise ProtocolError("the connection closed in the middle of a response")
        self._left -= len(piece)
        self._done = self._left == 0
        return piece

    def _next_chunk(self) -> bytes:
        if self._chunk_left == 0:
            size_line = self._reader.line().split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_line, 16)
            except ValueError as exc:
                raise ProtocolError("a chunked body with a bad chunk size") from exc
            if self._chunk_left == 0:
                while self._reader.line().strip():  # trailers, then the blank line
                    pass
                self._done = True
                return b""
        piece = self._reader.some(min(CHUNK, self._chunk_left))
        if not piece:
            raise ProtocolError("the connection closed in the middle of a chunk")
        self._chunk_left -= len(piece)
        if self._chunk_left == 0:
            self._reader.exactly(2)  # the CRLF after each chunk
        return piece


def _read_head(reader: _Reader, method: str, *, upgraded: bool = False) -> StreamedResponse:
    while True:
        status_line = reader.line()
        if not status_line:
            raise _NoAnswerError("the server closed the connection without an answer")
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError("the server's answer is not HTTP")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = reader.line().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 100:
            break
    empty = method == "HEAD" or status in (204, 304) or 100 <= status < 200
    if upgraded and status in (101, 200):
        empty = True  # what follows is the raw stream, read by the caller
    return StreamedResponse(reader, status, headers, empty=empty)


# -- opening sockets --------------------------------------------------------------------------


def unix_opener(path: str, *, timeout: float = 10.0) -> Opener:
    def open_unix() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return sock

    return open_unix


def tcp_opener(host: str, port: int, *, timeout: float = 10.0) -> Opener:
    def open_tcp() -> socket.socket:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return open_tcp


def tls_opener(inner: Opener, *, server_name: str, context_factory: Callable[[], object]) -> Opener:
    """TLS over what `inner` connects; `context_factory` makes the ssl.SSLContext (ssl is
    imported only by callers that speak TLS)."""

    def open_tls() -> socket.socket:
        raw = inner()
        context = context_factory()
        try:
            return context.wrap_socket(raw, server_hostname=server_name)  # type: ignore[attr-defined, no-any-return]
        except BaseException:
            raw.close()
            raise

    return open_tls


def tunnel_opener(proxy: Opener, *, target: str, proxy_auth: str = "") -> Opener:
    """A CONNECT tunnel through an HTTP proxy to `target` (host:port), for HTTPS_PROXY."""

    def open_tunnel() -> socket.socket:
        sock = proxy()
        try:
            request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
            if proxy_auth:
                request += f"Proxy-Authorization: {proxy_auth}\r\n"
            sock.sendall((request + "\r\n").encode("latin-1"))
            head = _read_head(_Reader(sock), "CONNECT", upgraded=True)
        except BaseException:
            sock.close()
            raise
        if head.status != 200:
            sock.close()
            raise ProtocolError(f"the proxy refused the tunnel (HTTP {head.status})")
        return sock

    return open_tunnel
