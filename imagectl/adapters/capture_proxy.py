"""HTTP forward proxies for a build's downloads: one records what apt, wget and curl fetch
(content-addressed, so a version's inputs can be archived), one replays only the archive.

Both listen on one IPv4 address (the docker0 gateway while a build runs) on an ephemeral port,
speak HTTP/1.1 with keep-alive (apt pipelines requests on one connection) and always send a
Content-Length. https is not captured: the record proxy tunnels a CONNECT (the build still
works) and reports it missing; the replay proxy refuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import select
import selectors
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from imagectl.core.archive import Download, Missing
from imagectl.core.errors import CaptureError

UPSTREAM_TIMEOUT = 60.0  # seconds without a byte from the origin before it counts as unreachable
IDLE_TIMEOUT = 300.0  # seconds a kept-alive client connection may sit idle
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate"}
    | {"te", "trailer", "transfer-encoding", "upgrade", "content-length", "host"}
)
# Stripped upstream so the origin always answers 200 with the whole file, which is what is
# stored and later replayed: a 206 or 304 would leave nothing (or a piece) to archive. A client
# may ignore that it asked for less, so this stays correct HTTP. Accept-Encoding goes too: the
# archive holds the file itself, not a gzip of it that only this transfer had.
CONDITIONAL = frozenset(
    {"range", "if-range", "if-modified-since", "if-unmodified-since", "if-none-match"}
    | {"if-match", "accept-encoding"}
)


CapturedFile = Download  # what a record proxy keeps of one response


def clean_url(target: str) -> str | None:
    """The absolute http URL a proxy request names, userinfo removed (it must never be
    recorded), host lowercased and :80 dropped, so that record and replay agree on the key;
    None when the request is not for an absolute http URL."""
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:  # a port that is not a number, a bracket left open
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port in (None, 80) else f"{host}:{port}"
    return parts._replace(scheme="http", netloc=netloc, fragment="").geturl()


class _Proxy:
    """What both proxies share: the address, the missing list and how a request is turned away."""

    def __init__(self) -> None:
        self.url = ""  # set once the socket is bound
        self._lock = threading.Lock()
        self._missing: dict[Missing, None] = {}  # an ordered set: first occurrence order

    def missing(self) -> tuple[Missing, ...]:
        with self._lock:
            return tuple(self._missing)

    def _miss(self, url: str, reason: str) -> None:
        with self._lock:
            self._missing.setdefault(Missing(url=url, reason=reason), None)

    def refuse(self, handler: _Handler, status: int, url: str, reason: str) -> None:
        """Answer with an error and note it; the connection stays open (send_error would
        close it, and apt pipelines its next requests behind an optional file's 404)."""
        self._miss(url, reason)
        body = reason.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def get(self, handler: _Handler, url: str, *, head: bool) -> None:
        raise NotImplementedError

    def connect(self, handler: _Handler, target: str) -> None:
        """An https tunnel: what passes through it is encrypted, so it is never captured."""
        self.refuse(handler, 403, f"https://{target}", "https CONNECT (not captured)")


class RecordProxy(_Proxy):
    """Forwards to the origin and stores every 200 body. One entry per URL: the first 200
    wins; a later 200 with other bytes is reported as missing, since the build saw both."""

    def __init__(self, store: Path) -> None:
        super().__init__()
        self._store = store
        self._captured: dict[str, CapturedFile] = {}

    def captured(self) -> tuple[CapturedFile, ...]:
        with self._lock:
            return tuple(self._captured.values())

    def connect(self, handler: _Handler, target: str) -> None:
        """Tunnel it, so that a build fetching over https still builds, and report it missing:
        what it fetched is encrypted, so the archive cannot hold it."""
        host, _, port = target.rpartition(":")
        self._miss(f"https://{target}", "https CONNECT (not captured)")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=UPSTREAM_TIMEOUT)
        except (OSError, ValueError) as error:
            self.refuse(handler, 502, f"https://{target}", f"upstream unreachable: {error}")
            return
        with upstream:
            handler.send_response(200, "Connection established")
            handler.end_headers()
            handler.wfile.flush()
            _pump(handler.connection, upstream)

    def get(self, handler: _Handler, url: str, *, head: bool) -> None:
        upstream = http.client.HTTPConnection(
            urlsplit(url).hostname or "", urlsplit(url).port or 80, timeout=UPSTREAM_TIMEOUT
        )
        try:
            response = _ask(upstream, handler, url)
            if response.status == 200 and not head:
                found = self._store_body(url, response)
                body = b""
            else:  # passed on, not recorded: a 404 of an optional file, a HEAD, a redirect
                found, body = None, _read(response)
                if response.status in (301, 302, 303, 307, 308):  # the replay would 404 it
                    target = response.getheader("Location", "")
                    self._miss(url, f"redirect to {clean_url(target) or target} (not captured)")
        except _UpstreamError as error:
            self.refuse(handler, 502, url, f"upstream unreachable: {error}")
            return
        except OSError as error:
            self.refuse(handler, 502, url, f"not stored: {error}")
            return
        finally:
            upstream.close()
        if found is None:
            length = response.getheader("Content-Length", "0") if head else str(len(body))
            _send(handler, response, length)
            handler.wfile.write(body)
        else:
            _send(handler, response, str(found.size))
            with found.path.open("rb") as stored:
                shutil.copyfileobj(stored, handler.wfile, CHUNK)

    def _store_body(self, url: str, response: http.client.HTTPResponse) -> CapturedFile:
        """Stream the body to a temp file while hashing, then move it to its content address:
        the same file under two URLs is kept once."""
        digest = hashlib.sha256()
        fd, temp = tempfile.mkstemp(dir=self._store / "tmp")
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the archive from its other readers
            with os.fdopen(fd, "wb") as out:
                while chunk := _read(response, CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            path = self._store / "sha256" / digest.hexdigest()
            found = CapturedFile(
                url=url, sha256=digest.hexdigest(), size=Path(temp).stat().st_size, path=path
            )
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        with self._lock:
            first = self._captured.setdefault(url, found)
        if first.sha256 != found.sha256:
            self._miss(url, f"changed during the build: sha256 {first.sha256}, then {found.sha256}")
        return found


def _pump(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes (or idles past IDLE_TIMEOUT)."""
    sockets = [client, upstream]
    while True:
        ready, _, _ = select.select(sockets, [], [], IDLE_TIMEOUT)
        if not ready:
            return
        for source in ready:
            try:
                data = source.recv(CHUNK)
            except OSError:
                return
            if not data:
                return
            (upstream if source is client else client).sendall(data)


class _UpstreamError(Exception):
    """The origin could not be reached, or broke off its answer."""


def _ask(
    upstream: http.client.HTTPConnection, handler: _Handler, url: str
) -> http.client.HTTPResponse:
    """Send the client's request on to the origin, minus hop-by-hop and conditional headers."""
    parts = urlsplit(url)
    dropped = HOP_BY_HOP | CONDITIONAL | _named_in_connection(handler)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        upstream.putrequest(handler.command, target, skip_host=True, skip_accept_encoding=True)
        upstream.putheader("Host", parts.netloc)
        for name, value in handler.headers.items():
            if name.lower() not in dropped:
                upstream.putheader(name, value)
        upstream.endheaders()
        return upstream.getresponse()
    except (OSError, http.client.HTTPException) as error:
        raise _UpstreamError(str(error) or type(error).__name__) from error


def _read(response: http.client.HTTPResponse, size: int | None = None) -> bytes:
    try:
        return response.read(size)
    except (OSError, http.client.HTTPException) as error:
        raise _UpstreamError(str(error) or type(error).__name__) from error


class ReplayProxy(_Proxy):
    """Serves only the archived URLs from their files and never contacts the network.
    Range and conditional headers are ignored: a full 200 is a correct answer to them."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        super().__init__()
        self._files = {clean_url(url) or url: path for url, path in files.items()}
        self._served: dict[str, None] = {}

    def served(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._served)

    def get(self, handler: _Handler, url: str, *, head: bool) -> None:
        path = self._files.get(url)
        if path is None:
            self.refuse(handler, 404, url, "not in the archive")
            return
        try:
            body = path.open("rb")
        except OSError as error:
            self.refuse(handler, 404, url, f"archived file unreadable: {error}")
            return
        with body:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(os.fstat(body.fileno()).st_size))
            handler.end_headers()
            if not head:
                shutil.copyfileobj(body, handler.wfile, CHUNK)
        with self._lock:
            self._served.setdefault(url, None)


def _named_in_connection(handler: _Handler) -> frozenset[str]:
    """Headers the client declared hop-by-hop in its Connection header."""
    named = ",".join(handler.headers.get_all("Connection") or ())
    return frozenset(n.strip().lower() for n in named.split(",") if n.strip())


def _send(handler: _Handler, response: http.client.HTTPResponse, length: str) -> None:
    handler.send_response(response.status, response.reason)
    for name, value in response.getheaders():
        if name.lower() not in HOP_BY_HOP and name.lower() not in ("server", "date"):
            handler.send_header(name, value)
    handler.send_header("Content-Length", length)
    handler.end_headers()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: _Server

    def do_GET(self) -> None:
        self._get(head=False)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_CONNECT(self) -> None:
        self.close_connection = True  # a tunnel, or nothing: no request follows on it
        self.server.proxy.connect(self, self.path)

    def _get(self, *, head: bool) -> None:
        url = clean_url(self.path)
        try:
            if url is None and self.path.lower().startswith("https://"):
                # A client that asks its proxy for an https URL itself (busybox wget does)
                # gets no tunnel from it: it would have to trust this proxy's certificate.
                self.server.proxy.refuse(self, 502, self.path, "https (not captured)")
            elif url is None:
                self.server.proxy.refuse(self, 400, self.path, "not an absolute http URL")
            else:
                self.server.proxy.get(self, url, head=head)
        except ConnectionError:  # the client went away: what it got is its own business
            self.close_connection = True

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxies report through captured() and missing(), not stderr."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    timeout = 0.5  # handle_request's own wait, should the client that woke it have gone away

    def __init__(self, host: str, proxy: _Proxy, listening: socket.socket | None = None) -> None:
        self.proxy = proxy
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._closing = False
        super().__init__((host, 0), _Handler, bind_and_activate=listening is None)
        if listening is not None:  # bound and listening already: clients wait in its backlog
            self.socket.close()
            self.socket = listening
            self.server_address = listening.getsockname()
            self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def server_bind(self) -> None:
        # HTTPServer's own would look up the host's name (a DNS query that can stall)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def opened(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)
            if self._closing:  # accepted just before the context ended
                connection.shutdown(socket.SHUT_RDWR)

    def closed(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_all(self) -> None:
        """End kept-alive connections too, so no request is served after the context."""
        with self._open_lock:
            self._closing = True
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


@contextmanager
def _serving(
    listen_host: str, proxy: _Proxy, listening: socket.socket | None = None
) -> Iterator[None]:
    try:
        server = _Server(listen_host, proxy, listening)
    except OSError as error:
        raise CaptureError(
            f"cannot listen on {listen_host}: {error.strerror or error}",
            hint="Give an IPv4 address of this machine (the docker0 gateway for builds).",
        ) from error
    proxy.url = f"http://{listen_host}:{server.server_port}"
    wake_read, wake_write = os.pipe()
    thread = threading.Thread(target=_accept_until_woken, args=(server, wake_read), daemon=True)
    thread.start()
    try:
        yield
    finally:
        os.write(wake_write, b"x")
        thread.join()
        os.close(wake_read)
        os.close(wake_write)
        server.server_close()
        server.close_all()


def _accept_until_woken(server: _Server, wake: int) -> None:
    """Accept connections until a byte arrives on `wake`. Not serve_forever: its poll either
    wakes the process hundreds of times a second while the build runs, or makes leaving the
    context wait up to a whole poll interval."""
    with selectors.DefaultSelector() as selector:
        selector.register(server.socket, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while True:
            ready = selector.select()
            if any(key.fileobj == wake for key, _ in ready):
                return
            server.handle_request()  # the socket is readable: accepts at once


@contextmanager
def record_proxy(
    listen_host: str, store: Path, *, listening: socket.socket | None = None
) -> Iterator[RecordProxy]:
    """A recording proxy on listen_host (on `listening`, a socket bound there already, when
    given); bodies land in store/sha256/<hex>."""
    try:
        for folder in ("sha256", "tmp"):
            (store / folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CaptureError(f"cannot create the capture store: {error}", path=store) from error
    proxy = RecordProxy(store)
    with _serving(listen_host, proxy, listening):
        yield proxy


@contextmanager
def replay_proxy(listen_host: str, files: Mapping[str, Path]) -> Iterator[ReplayProxy]:
    """A proxy on listen_host that serves files[url] and nothing else."""
    proxy = ReplayProxy(files)
    with _serving(listen_host, proxy):
        yield proxy
