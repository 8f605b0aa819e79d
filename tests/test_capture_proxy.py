"""The record and replay proxies: against a small origin server in a thread, and once in a real
`docker buildx build` whose wget goes through the record proxy."""

from __future__ import annotations

import hashlib
import http.client
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import pytest

from imagectl.adapters.capture_proxy import record_proxy, replay_proxy
from imagectl.adapters.inputs import InputsAdapter
from imagectl.core.archive import Missing
from imagectl.core.errors import CaptureError

from .conftest import BUSYBOX, docker

FILES = {
    "/dists/InRelease": b"Origin: test\n" * 100,
    "/pool/a.deb": bytes(range(256)) * 1000,
    "/pool/same-as-a.deb": bytes(range(256)) * 1000,
}


@dataclass
class Origin:
    base: str  # "http://127.0.0.1:PORT"
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, path, hdrs


@contextmanager
def origin(host: str = "127.0.0.1", files: dict[str, bytes] = FILES) -> Iterator[Origin]:
    """An origin server: files (read at each request), 404 for anything else, 206 when asked
    for a Range (as a real one would, so the proxy's stripping of Range is what makes it store
    whole files)."""
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append((self.command, self.path, dict(self.headers.items())))
            body = files.get(self.path)
            if self.path == "/moved":
                self.send_response(301)
                self.send_header("Location", f"http://u:pw@{self.headers['Host']}/pool/a.deb")
                body = b""
            elif body is None:
                self.send_response(404)
                body = b"no such file"
            elif "Range" in self.headers:
                self.send_response(206)
                body = body[:4]
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Origin(base=f"http://{host}:{server.server_address[1]}", seen=seen)
    finally:
        server.shutdown()
        server.server_close()


def via(proxy_url: str) -> http.client.HTTPConnection:
    host, port = proxy_url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def fetch(
    proxy_url: str, url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = via(proxy_url)
    try:
        conn.request(method, url, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def read_response(stream: BinaryIO, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response off a stream that may hold more behind it (pipelining)."""
    status = int(stream.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, b"" if head else stream.read(int(headers["content-length"]))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_records_identical_bytes_and_stores_them_content_addressed(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path / "store") as proxy:
        status, body = fetch(proxy.url, f"{up.base}/pool/a.deb")
        again, _ = fetch(proxy.url, f"{up.base}/pool/a.deb")
        _, same = fetch(proxy.url, f"{up.base}/pool/same-as-a.deb")
        captured = proxy.captured()
    assert (status, again) == (200, 200)
    assert body == same == FILES["/pool/a.deb"]
    digest = hashlib.sha256(body).hexdigest()
    assert [(c.url, c.sha256, c.size) for c in captured] == [
        (f"{up.base}/pool/a.deb", digest, len(body)),
        (f"{up.base}/pool/same-as-a.deb", digest, len(body)),
    ]
    assert captured[0].path == tmp_path / "store" / "sha256" / digest
    assert captured[0].path.read_bytes() == body
    assert captured[0].path.stat().st_mode & 0o777 == 0o644  # readable by whoever archives it
    assert list((tmp_path / "store" / "sha256").iterdir()) == [captured[0].path]  # stored once
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def pipeline(
    proxy_url: str, base: str, requests: tuple[tuple[str, str], ...]
) -> list[tuple[int, dict[str, str], bytes]]:
    """Send all requests at once on one connection, as apt does, and read every answer."""
    host = base.removeprefix("http://")
    with socket.create_connection(("127.0.0.1", port_of(proxy_url)), timeout=10) as sock:
        sock.sendall(
            b"".join(
                f"{method} {base}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
                for method, path in requests
            )
        )
        stream = sock.makefile("rb")
        return [read_response(stream, head=method == "HEAD") for method, _ in requests]


def test_pipelined_requests_on_one_keep_alive_connection(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        answers = pipeline(
            proxy.url,
            up.base,
            (
                ("GET", "/dists/InRelease"),
                ("GET", "/dists/Translation-de"),  # a 404 keeps the connection too
                ("HEAD", "/pool/a.deb"),
                ("GET", "/pool/a.deb"),
            ),
        )
        head_headers = answers[2][1]
    assert [(s, b) for s, _, b in answers] == [
        (200, FILES["/dists/InRelease"]),
        (404, b"no such file"),
        (200, b""),
        (200, FILES["/pool/a.deb"]),
    ]
    assert head_headers["content-length"] == str(len(FILES["/pool/a.deb"]))
    assert all("close" not in h.get("connection", "") for _, h, _ in answers)
    # the 404 and the HEAD were passed on but not recorded, and are not missing either
    assert [c.url for c in proxy.captured()] == [
        f"{up.base}/dists/InRelease",
        f"{up.base}/pool/a.deb",
    ]
    assert proxy.missing() == ()


def test_the_first_body_of_a_url_wins_and_a_change_is_missing(tmp_path: Path) -> None:
    files = {"/dists/InRelease": b"first"}
    with origin(files=files) as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        fetch(proxy.url, f"{up.base}/dists/InRelease")
        files["/dists/InRelease"] = b"second"
        _, body = fetch(proxy.url, f"{up.base}/dists/InRelease")
    assert body == b"second"  # the build got what the origin sent
    first, second = (hashlib.sha256(b).hexdigest() for b in (b"first", b"second"))
    [captured] = proxy.captured()
    assert (captured.sha256, captured.path.read_bytes()) == (first, b"first")
    assert proxy.missing() == (
        Missing(
            url=f"{up.base}/dists/InRelease",
            reason=f"changed during the build: sha256 {first}, then {second}",
        ),
    )


def test_a_redirect_is_passed_on_and_missing(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        conn = via(proxy.url)
        conn.request("GET", f"{up.base}/moved")
        response = conn.getresponse()
        response.read()
        conn.close()
    assert (response.status, response.getheader("Location")) == (
        301,
        f"http://u:pw@{up.base.removeprefix('http://')}/pool/a.deb",
    )
    assert proxy.captured() == ()
    assert proxy.missing() == (
        Missing(url=f"{up.base}/moved", reason=f"redirect to {up.base}/pool/a.deb (not captured)"),
    )


def test_range_and_conditionals_are_not_sent_upstream(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        asked = {
            "Range": "bytes=0-3",
            "If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT",
            "If-None-Match": '"x"',
            "Accept-Encoding": "gzip",
            "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
            "Proxy-Connection": "keep-alive",
            "X-Kept": "yes",
        }
        status, body = fetch(proxy.url, f"{up.base}/pool/a.deb", headers=asked)
    assert (status, body) == (200, FILES["/pool/a.deb"])
    assert proxy.captured()[0].size == len(FILES["/pool/a.deb"])
    sent = up.seen[0][2]
    assert sent["X-Kept"] == "yes"
    assert not {"Range", "If-Modified-Since", "If-None-Match", "Accept-Encoding"} & sent.keys()
    assert not {"Proxy-Authorization", "Proxy-Connection"} & sent.keys()


def test_credentials_are_forwarded_but_never_recorded(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path / "store") as proxy:
        host = up.base.removeprefix("http://")
        status, _ = fetch(
            proxy.url,
            f"http://user:s3cret@{host}/dists/InRelease",
            headers={"Authorization": "Basic dXNlcjpzM2NyZXQ="},
        )
        fetch(proxy.url, f"http://user:s3cret@{host}/nothing-here")
        fetch(proxy.url, "http://user:s3cret@127.0.0.1:1/down")
    assert status == 200
    assert up.seen[0][2]["Authorization"] == "Basic dXNlcjpzM2NyZXQ="
    assert [c.url for c in proxy.captured()] == [f"{up.base}/dists/InRelease"]
    assert [m.url for m in proxy.missing()] == ["http://127.0.0.1:1/down"]
    recorded = repr((proxy.captured(), proxy.missing()))
    assert "s3cret" not in recorded
    assert "dXNlcjpzM2NyZXQ" not in recorded
    assert not any("s3cret" in p.name for p in (tmp_path / "store").rglob("*"))


def test_connect_is_tunnelled_and_reported_missing(tmp_path: Path) -> None:
    """The build still fetches over https (through the tunnel), and the archive says that it
    did: nothing of it is captured."""
    with origin() as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        host, port = up.base.removeprefix("http://").split(":")
        conn = via(proxy.url)
        conn.set_tunnel(host, int(port))  # plain http inside the tunnel: the bytes pass as-is
        conn.request("GET", "/pool/a.deb")
        body = conn.getresponse().read()
        conn.close()
    assert body == FILES["/pool/a.deb"]
    assert proxy.missing() == (
        Missing(url=f"https://{host}:{port}", reason="https CONNECT (not captured)"),
    )
    assert proxy.captured() == ()


def test_upstream_down_gives_502_and_missing(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with record_proxy("127.0.0.1", tmp_path) as proxy:
        status, _ = fetch(proxy.url, f"http://127.0.0.1:{dead}/file")
        # a HEAD's 502 carries no body: the next answer on the connection is read intact
        both = pipeline(proxy.url, f"http://127.0.0.1:{dead}", (("HEAD", "/f"), ("GET", "/f")))
    assert status == 502
    assert [s for s, _, _ in both] == [502, 502]
    assert both[1][2].startswith(b"upstream unreachable: ")
    missing = proxy.missing()  # once per URL and reason, though /f failed twice
    assert [m.url for m in missing] == [f"http://127.0.0.1:{dead}/{p}" for p in ("file", "f")]
    assert all(m.reason.startswith("upstream unreachable: ") for m in missing)
    assert proxy.captured() == ()


def test_a_store_that_cannot_be_written_is_not_blamed_on_the_origin(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        (tmp_path / "sha256").rmdir()
        (tmp_path / "sha256").write_bytes(b"")  # os.replace into it now fails
        status, _ = fetch(proxy.url, f"{up.base}/pool/a.deb")
    assert status == 502
    [missing] = proxy.missing()
    assert missing.reason.startswith("not stored: ")
    assert proxy.captured() == ()
    assert list((tmp_path / "tmp").iterdir()) == []  # the temp file is gone too


def test_only_absolute_http_urls_are_proxied(tmp_path: Path) -> None:
    with origin() as up, record_proxy("127.0.0.1", tmp_path) as proxy:
        status, _ = fetch(proxy.url, "/dists/InRelease")
        bad_port, _ = fetch(proxy.url, "http://127.0.0.1:http/x")
        ftp, _ = fetch(proxy.url, "ftp://127.0.0.1/x")
    assert (status, bad_port, ftp) == (400, 400, 400)
    assert up.seen == []
    assert [m.url for m in proxy.missing()] == [
        "/dists/InRelease",
        "http://127.0.0.1:http/x",
        "ftp://127.0.0.1/x",
    ]
    assert {m.reason for m in proxy.missing()} == {"not an absolute http URL"}


def other_addresses() -> list[str]:
    """Addresses of this machine other than 127.0.0.1: 127.0.0.2 (all of 127/8 is local on
    Linux) and the IPv4 addresses `ip` lists (docker0's among them when it exists)."""
    listed = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False
    ).stdout
    found = [line.split()[3].split("/")[0] for line in listed.splitlines()]
    return ["127.0.0.2", *(a for a in found if a != "127.0.0.1")]


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def test_listens_only_on_the_given_address_and_closes_on_exit(tmp_path: Path) -> None:
    with record_proxy("127.0.0.1", tmp_path) as proxy:
        port = port_of(proxy.url)
        assert proxy.url == f"http://127.0.0.1:{port}"
        assert not refused("127.0.0.1", port)
        assert [a for a in other_addresses() if not refused(a, port)] == []
        kept = via(proxy.url)
        kept.request("GET", "/x")
        kept.getresponse().read()
    assert refused("127.0.0.1", port)
    # a connection kept alive across the exit is ended, not served by a leftover thread
    kept.auto_open = 0
    with pytest.raises((OSError, http.client.HTTPException)):  # noqa: PT012 (either call may fail)
        kept.request("GET", "/x")
        kept.getresponse()
    kept.close()


def test_closes_when_the_body_raises(tmp_path: Path) -> None:
    ports: list[int] = []
    with pytest.raises(RuntimeError, match="in the build"):
        run_and_raise(ports)
    assert refused("127.0.0.1", ports[0])


def run_and_raise(ports: list[int]) -> None:
    with replay_proxy("127.0.0.1", {}) as proxy:
        ports.append(port_of(proxy.url))
        raise RuntimeError("in the build")


def test_an_address_not_on_this_machine_is_a_capture_error(tmp_path: Path) -> None:
    with (
        pytest.raises(CaptureError, match=r"cannot listen on 192\.0\.2\.254"),
        record_proxy("192.0.2.254", tmp_path),
    ):
        pass


def test_the_adapters_capture_listens_at_once_and_answers_from_serve_on(tmp_path: Path) -> None:
    """What a build meets: the proxy's socket listens before the build starts, the proxy is
    loaded and served while the build runs. A request sent before serve() waits and is
    answered and recorded after it."""
    with origin() as up, InputsAdapter().record("127.0.0.1", tmp_path / "store") as capture:
        conn = via(capture.url)
        conn.request("GET", f"{up.base}/pool/a.deb")  # connected and sent: in the backlog
        capture.serve()
        response = conn.getresponse()
        body = response.read()
        conn.close()
        captured = capture.captured()
    assert (response.status, body) == (200, FILES["/pool/a.deb"])
    assert [c.url for c in captured] == [f"{up.base}/pool/a.deb"]
    assert refused("127.0.0.1", port_of(capture.url))  # closed with the context


def test_the_adapters_capture_on_an_address_not_here_is_a_capture_error(tmp_path: Path) -> None:
    with (
        pytest.raises(CaptureError, match=r"cannot listen on 192\.0\.2\.254"),
        InputsAdapter().record("192.0.2.254", tmp_path),
    ):
        pass


def test_replay_serves_only_the_archive_and_never_the_network(tmp_path: Path) -> None:
    archived = tmp_path / "a.deb"
    archived.write_bytes(FILES["/pool/a.deb"])
    with origin() as up:
        files = {f"{up.base}/pool/a.deb": archived, f"{up.base}/gone": tmp_path / "gone"}
        with replay_proxy("127.0.0.1", files) as proxy:
            status, body = fetch(proxy.url, f"{up.base}/pool/a.deb")
            head, empty = fetch(proxy.url, f"{up.base}/pool/a.deb", method="HEAD")
            other, _ = fetch(proxy.url, f"{up.base}/dists/InRelease")
            kept = pipeline(
                proxy.url, up.base, (("GET", "/nope"), ("GET", "/gone"), ("GET", "/pool/a.deb"))
            )
            tunnel = via(proxy.url)
            tunnel.set_tunnel("example.org", 443)
            with pytest.raises(OSError, match="403"):
                tunnel.request("GET", "/")
            tunnel.close()
    assert (status, body) == (200, FILES["/pool/a.deb"])
    assert (head, empty) == (200, b"")
    assert other == 404
    assert [s for s, _, _ in kept] == [404, 404, 200]
    assert (kept[0][2], kept[2][2]) == (b"not in the archive", body)
    assert "close" not in kept[0][1].get("connection", "")
    assert up.seen == []  # the origin was there, and was never asked
    assert proxy.served() == (f"{up.base}/pool/a.deb",)
    assert proxy.missing() == (
        Missing(url=f"{up.base}/dists/InRelease", reason="not in the archive"),
        Missing(url=f"{up.base}/nope", reason="not in the archive"),
        Missing(
            url=f"{up.base}/gone",
            reason=f"archived file unreadable: [Errno 2] No such file or directory: "
            f"'{tmp_path / 'gone'}'",
        ),
        Missing(url="https://example.org:443", reason="https CONNECT (not captured)"),
    )


@pytest.mark.engine
def test_a_build_downloads_through_the_record_proxy(engine: str, tmp_path: Path) -> None:
    gateway = docker("network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}")
    context = tmp_path / "context"
    context.mkdir()
    iidfile = tmp_path / "iid"
    with origin(gateway) as up, record_proxy(gateway, tmp_path / "store") as proxy:
        url = f"{up.base}/pool/a.deb"
        (context / "Dockerfile").write_text(
            f"FROM {BUSYBOX}\nRUN wget -q -O /f {url} && echo {uuid.uuid4().hex} > /nonce\n"
        )
        docker(
            "buildx", "build", "--no-cache", "--load", "--iidfile", str(iidfile),
            "--build-arg", f"http_proxy={proxy.url}", "--build-arg", f"HTTP_PROXY={proxy.url}",
            str(context),
        )  # fmt: skip
    image = iidfile.read_text().strip()
    try:
        history = docker("history", "--no-trunc", image)
        inside = docker("run", "--rm", image, "sha256sum", "/f")
    finally:
        docker("rmi", image)
    digest = hashlib.sha256(FILES["/pool/a.deb"]).hexdigest()
    assert [(c.url, c.sha256) for c in proxy.captured()] == [(url, digest)]
    assert up.seen[0][1] == "/pool/a.deb"
    assert inside.split()[0] == digest
    assert proxy.url not in history
