"""A blob upload whose body is streamed from a file, against a small HTTP server of the test's
own: sent with its Content-Length (not chunked), and sent again whole, from where the file
stood, after the 401 that asks for credentials."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from imagectl.adapters.registry_http import RegistryTransport
from imagectl.core.references import parse_reference

BLOB = bytes(range(256)) * 2000  # more than one piece of the streamed body
WANTED = "Basic dTpzZWNyZXQ="  # u:secret


@dataclass
class Seen:
    """Each PUT as the server read it: (Authorization, Transfer-Encoding, body)."""

    puts: list[tuple[str, str, bytes]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)  # read whole before answering, 401 or not
            auth = self.headers.get("Authorization", "")
            seen.puts.append((auth, self.headers.get("Transfer-Encoding", ""), body))
            status = 201 if auth == WANTED else 401
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="r"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_file_body_is_sized_and_sent_again_whole_after_the_auth_handshake(
    server: tuple[str, Seen],
) -> None:
    host, seen = server
    transport = RegistryTransport(credentials=lambda _host: ("u", "secret"))
    file = io.BytesIO(b"skipped" + BLOB)
    file.seek(len(b"skipped"))  # sent from where it stands
    try:
        answer = transport.send(
            parse_reference(f"{host}/a/b"), "/v2/a/b/blobs/uploads/x?digest=sha256:0",
            method="PUT", body=file, push=True,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(BLOB))},
        )  # fmt: skip
    finally:
        transport.close()
    assert answer.status == 201
    assert [(auth, chunked) for auth, chunked, _ in seen.puts] == [("", ""), (WANTED, "")]
    assert all(body == BLOB for _, _, body in seen.puts)
