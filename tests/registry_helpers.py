"""Registries of the tests' own: docker-registry with TLS and htpasswd, a proxy that answers
like ECR or Harbor, and a watch over every process's command line."""

from __future__ import annotations

import base64
import http.client
import http.server
import io
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import docker
from .helpers import write

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    for _ in range(150):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the registry on {port} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def remove_local_tags(repository: str) -> None:
    """Untag every local tag of `repository` (never prunes: parents stay)."""
    tags = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False)
    for tag in tags.split():
        docker("rmi", "--no-prune", tag, check=False)


# -- docker-registry processes ---------------------------------------------------------------


@dataclass(frozen=True)
class OwnRegistry:
    port: int
    tls: bool
    log: Path

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (certificate, key)."""
    cert, key = folder / "registry.crt", folder / "registry.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, check=True,
    )  # fmt: skip
    return cert, key


def make_htpasswd(folder: Path, user: str, password: str) -> Path:
    # htpasswd -b takes the password as an argument: this runs before any imagectl does, so
    # the command-line watch of the secrets test never sees it.
    done = subprocess.run(
        ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
    )
    return write(folder / "htpasswd", done.stdout)


@contextmanager
def running_registry(
    folder: Path, *, tls: bool, user: str = "", password: str = ""
) -> Iterator[OwnRegistry]:
    """A docker-registry on a free 127.0.0.1 port, storage in `folder`; killed and its data
    removed afterwards. With `user`, basic auth from an htpasswd file (bcrypt)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {folder / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: imagectl-test-upload-state",
    ]
    if tls:
        cert, key = make_certificate(folder)
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
    if user:
        htpasswd = make_htpasswd(folder, user, password)
        lines += ["auth:", "  htpasswd:", "    realm: imagectl-test", f"    path: {htpasswd}"]
    config = write(folder / "registry.yml", "\n".join(lines) + "\n")
    log = folder / "registry.log"
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=sink, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            wait_for(port, process)
            yield OwnRegistry(port=port, tls=tls, log=log)
        finally:
            process.kill()
            process.wait()
            subprocess.run(["rm", "-rf", str(folder / "data")], check=False)


# -- asking a registry directly ---------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def registry_request(
    registry: OwnRegistry,
    path: str,
    *,
    method: str = "GET",
    auth: tuple[str, str] | None = None,
    accept: str = MANIFEST_ACCEPT,
) -> Answer:
    """One request straight to a registry of the tests (TLS not verified: self-signed)."""
    scheme = "https" if registry.tls else "http"
    headers = {"Accept": accept}
    if auth is not None:
        headers["Authorization"] = "Basic " + b64(f"{auth[0]}:{auth[1]}")
    request = urllib.request.Request(
        f"{scheme}://127.0.0.1:{registry.port}{path}", method=method, headers=headers
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return Answer(reply.status, lowered(reply.headers), reply.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, lowered(error.headers), error.read())


def tag_digest(
    registry: OwnRegistry, repository: str, tag: str, *, auth: tuple[str, str] | None = None
) -> str | None:
    """The manifest digest `repository:tag` names in `registry` (repository without host)."""
    answer = registry_request(registry, f"/v2/{repository}/manifests/{tag}", auth=auth)
    if answer.status == 404:
        return None
    assert answer.status == 200, (answer.status, answer.body)
    return answer.headers["docker-content-digest"]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def lowered(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def write_docker_auth(config: Path, host: str, user: str, password: str) -> None:
    """docker's config.json with `auths` for `host`, as `docker login` writes it."""
    auths = {"auths": {host: {"auth": b64(f"{user}:{password}")}}}
    write(config / "config.json", json.dumps(auths))


def docker_login(config: Path, host: str, user: str, password: str) -> None:
    """`docker login` into the docker config folder `config`, the password on stdin."""
    done = subprocess.run(
        ["docker", "login", host, "-u", user, "--password-stdin"],
        input=password,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_CONFIG": str(config)},
        check=False,
    )
    assert done.returncode == 0, done.stderr


# -- a proxy that answers like ECR or Harbor ------------------------------------------------

MANIFEST_PATH = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass(frozen=True)
class Refusal:
    """How a registry with immutable tags answers a manifest PUT to a tag it already has."""

    status: int
    code: str
    message: str

    def body(self) -> bytes:
        return json.dumps({"errors": [{"code": self.code, "message": self.message}]}).encode()


def ecr_refusal(tag: str) -> Refusal:
    return Refusal(
        400,
        "TAG_INVALID",
        f"The image tag '{tag}' already exists in the 'x' repository and cannot be "
        "overwritten because the repository is immutable.",
    )


def harbor_refusal(repository: str, tag: str) -> Refusal:
    # Harbor's wording (src/pkg/immutable/match: ErrImmutable), with its 412 PRECONDITION
    return Refusal(
        412,
        "PRECONDITION",
        f"Failed to process request due to '{repository}:{tag}' configured as immutable.",
    )


@dataclass
class ProxyPolicy:
    """What the proxy does besides forwarding; the test sets it, the handler reads it."""

    # answer a manifest PUT to a tag the backend already has with this refusal
    refusal: Refusal | None = None
    # tags whose manifest reads answer 404 until a PUT of that tag arrived: the tag appeared
    # between imagectl's look-up and its push (another publisher, the same moment)
    hidden_until_put: set[str] = field(default_factory=set)
    # tag -> other tag: once a PUT of the tag succeeded, reads of it serve the other tag's
    # manifest (someone overwrote it right after our push)
    read_back: dict[str, str] = field(default_factory=dict)
    # tag -> HTTP status answered to every read of its manifest (a registry failing there)
    failing_reads: dict[str, int] = field(default_factory=dict)
    # tag -> HTTP status answered to reads of its manifest once a PUT of it went through
    failing_reads_after_put: dict[str, int] = field(default_factory=dict)
    # (method, path, status) of every request answered
    events: list[tuple[str, str, int]] = field(default_factory=list)
    put_done: set[str] = field(default_factory=set)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def manifest_puts(self) -> list[tuple[str, int]]:
        with self.guard:
            return [
                (path, status)
                for method, path, status in self.events
                if method == "PUT" and MANIFEST_PATH.match(path)
            ]


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards every request to the backend registry, except what the policy changes."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"
    backend_port: int
    policy: ProxyPolicy

    def handle_one_request(self) -> None:
        # A TLS ClientHello (docker and imagectl try HTTPS first): answer it in plain HTTP, as
        # Go's HTTP server does, so that both fall back to HTTP at once.
        assert isinstance(self.rfile, io.BufferedReader)
        if self.rfile.peek(1)[:1] == b"\x16":
            self.wfile.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.close_connection = True
            return
        super().handle_one_request()

    def do_GET(self) -> None:
        self.handle_request()

    do_HEAD = do_GET  # noqa: N815 - the names http.server dispatches to
    do_PUT = do_GET  # noqa: N815
    do_POST = do_GET  # noqa: N815
    do_PATCH = do_GET  # noqa: N815
    do_DELETE = do_GET  # noqa: N815

    def handle_request(self) -> None:
        body = self.read_body()
        path, policy = self.path, self.policy
        match = MANIFEST_PATH.match(path.split("?", 1)[0])
        tag = match["reference"] if match and ":" not in match["reference"] else ""
        if tag and self.command in ("GET", "HEAD"):
            with policy.guard:
                hidden = tag in policy.hidden_until_put and tag not in policy.put_done
                other = policy.read_back.get(tag) if tag in policy.put_done else None
                failing = policy.failing_reads.get(tag) or (
                    policy.failing_reads_after_put.get(tag) if tag in policy.put_done else None
                )
            if failing:
                self.answer(failing, {"Content-Type": "text/plain"}, b"injected failure\n")
                return
            if hidden:
                self.answer(404, {"Content-Type": "application/json"}, unknown_manifest(tag))
                return
            if other is not None and match is not None:
                path = f"/v2/{match['name']}/manifests/{other}"
        if tag and match is not None and self.command == "PUT":
            with policy.guard:
                policy.put_done.add(tag)
            refusal = policy.refusal
            if refusal is not None and self.backend_has(match["name"], tag):
                self.answer(refusal.status, {"Content-Type": "application/json"}, refusal.body())
                return
        status, headers, reply = self.forward(self.command, path, body)
        self.answer(status, headers, reply)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop("Content-Length", None)
        if body or method in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            reply = response.read()
            return response.status, dict(response.getheaders()), reply
        finally:
            connection.close()

    def backend_has(self, name: str, tag: str) -> bool:
        accept = {"Accept": MANIFEST_ACCEPT, "Host": self.headers.get("Host", "")}
        connection = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=60)
        try:
            connection.request("HEAD", f"/v2/{name}/manifests/{tag}", headers=accept)
            response = connection.getresponse()
            response.read()
            return response.status == 200
        finally:
            connection.close()

    def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        with self.policy.guard:
            self.policy.events.append((self.command, self.path, status))
        self.send_response(status)
        length = str(len(body))
        for name, value in headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in ("date", "server"):
                continue
            if lower == "content-length":
                length = value if self.command == "HEAD" else length
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def unknown_manifest(tag: str) -> bytes:
    error = {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": tag}}
    return json.dumps({"errors": [error]}).encode()


@dataclass(frozen=True)
class Proxy:
    port: int
    policy: ProxyPolicy

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"


@contextmanager
def running_proxy(backend: OwnRegistry) -> Iterator[Proxy]:
    """The proxy on a free 127.0.0.1 port in front of the plain-HTTP `backend`."""
    assert not backend.tls
    policy = ProxyPolicy()
    handler = type(
        "BoundProxyHandler", (ProxyHandler,), {"backend_port": backend.port, "policy": policy}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Proxy(port=int(server.server_address[1]), policy=policy)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- every process's command line, sampled --------------------------------------------------


class CommandLineWatch:
    """Reads /proc/*/cmdline of every process every 20 ms while the `with` block runs; keeps
    each distinct command line, so a test can say what it saw and which ones held a secret."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CommandLineWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def hits(self) -> list[str]:
        return sorted(line for line in self.seen if any(s in line for s in self.secrets))

    def saw(self, words: str) -> bool:
        return any(words in line for line in self.seen)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        raw = handle.read()
                except OSError:
                    continue  # ended between the listing and the read
                if raw:
                    self.seen.add(raw.replace(b"\0", b" ").decode("utf-8", "replace").strip())
            self.samples += 1
            self._stop.wait(0.02)
