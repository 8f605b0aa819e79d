"""The registry adapter's blob reads (open_blob, image_layers) against a small HTTP server of
the test's own: the auth handshake, a redirect to storage on another host (which never gets
the registry's credentials), the digest checked, a missing blob, a manifest that is not the
one its digest names."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from imagectl.adapters.registry import RegistryClient
from imagectl.adapters.registry_http import RegistryTransport
from imagectl.core.artifacts import Descriptor
from imagectl.core.errors import RegistryAuthError, RegistryError

LAYER = b"a layer's bytes " * 10_000  # more than one read of the stream
CONFIG = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "d" * 64]}}).encode()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(LAYER), "size": len(LAYER)}],
    }
).encode()  # fmt: skip


@dataclass
class Server:
    """Routes path -> (status, headers, body); records each request's Authorization."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)
    password: str = ""  # basic auth wanted when set
    drop_idle: bool = False  # close each connection after its answer, without saying so
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    """The registry on 127.0.0.1 and its storage on `localhost` (another host to a client)."""
    made: list[http.server.ThreadingHTTPServer] = []
    found = []
    for _ in range(2):
        state = Server()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_state = state

            def do_GET(self) -> None:
                me = self.server_state
                auth = self.headers.get("Authorization", "")
                me.seen.append((self.path, auth))
                wanted = "Basic dTpzZWNyZXQ=" if me.password else ""
                if wanted and auth != wanted:
                    status, headers, body = 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
                else:
                    status, headers, body = me.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if me.drop_idle:
                    self.close_connection = True  # as a server drops a kept, idle connection

            def log_message(self, *_args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        made.append(server)
        found.append(state)
    yield found[0], found[1]
    for server in made:
        server.shutdown()
        server.server_close()


TRANSPORTS: list[RegistryTransport] = []


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    """Every client's kept connections closed after the test."""
    yield
    while TRANSPORTS:
        TRANSPORTS.pop().close()


def client(password: str = "secret") -> RegistryClient:
    transport = RegistryTransport(credentials=lambda _host: ("u", password))
    TRANSPORTS.append(transport)
    return RegistryClient(transport)


def layer_blob() -> Descriptor:
    return Descriptor(media_type="application/octet-stream", digest=digest(LAYER), size=len(LAYER))


def test_a_blob_behind_auth_and_a_redirect_to_storage_elsewhere(
    servers: tuple[Server, Server],
) -> None:
    registry, storage = servers
    registry.password = "secret"
    signed = "/bucket/layer?signature=abc&expires=1"
    registry.routes[f"/v2/team/app/blobs/{digest(LAYER)}"] = (
        307, {"Location": f"http://localhost:{storage.port}{signed}"}, b"",
    )  # fmt: skip
    storage.routes[signed] = (200, {}, LAYER)
    with client().open_blob(f"{registry.host}/team/app", layer_blob()) as stream:
        assert stream.read() == LAYER
    assert registry.seen[-1][1] == "Basic dTpzZWNyZXQ="  # the handshake, then the blob
    assert storage.seen == [(signed, "")]  # the registry's credentials stayed with it


def test_a_blob_whose_content_is_not_its_digest(servers: tuple[Server, Server]) -> None:
    registry, _ = servers
    registry.routes[f"/v2/team/app/blobs/{digest(LAYER)}"] = (200, {}, LAYER[:-1] + b"!")
    with (
        pytest.raises(RegistryError, match="does not have its digest"),
        client().open_blob(f"{registry.host}/team/app", layer_blob()) as stream,
    ):
        stream.read(10)  # read in part: the rest is read, then checked, on leaving


def test_a_missing_blob_and_a_refusal(servers: tuple[Server, Server]) -> None:
    registry, _ = servers
    missing = json.dumps({"errors": [{"code": "BLOB_UNKNOWN"}]}).encode()
    registry.routes[f"/v2/team/app/blobs/{digest(LAYER)}"] = (404, {}, missing)
    with (
        pytest.raises(RegistryError, match=r"has no blob .* BLOB_UNKNOWN"),
        client().open_blob(f"{registry.host}/team/app", layer_blob()),
    ):
        pass
    registry.password = "secret"
    with (
        pytest.raises(RegistryAuthError, match="HTTP 401"),
        client(password="wrong").open_blob(f"{registry.host}/team/app", layer_blob()),
    ):
        pass


def test_image_layers_from_the_manifest_and_config(servers: tuple[Server, Server]) -> None:
    registry, _ = servers
    manifest_headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                        "Docker-Content-Digest": digest(MANIFEST)}  # fmt: skip
    registry.routes[f"/v2/team/app/manifests/{digest(MANIFEST)}"] = (
        200,
        manifest_headers,
        MANIFEST,
    )
    registry.routes[f"/v2/team/app/blobs/{digest(CONFIG)}"] = (200, {}, CONFIG)
    found = client().image_layers(f"{registry.host}/team/app:v1@{digest(MANIFEST)}")
    assert found is not None
    assert found.image_id == digest(CONFIG)
    assert [b.digest for b in found.blobs] == [digest(LAYER)]
    assert found.diff_ids == ("sha256:" + "d" * 64,)
    # a manifest that is not the one its digest names is refused, not read
    other = MANIFEST.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
    registry.routes[f"/v2/team/app/manifests/{digest(MANIFEST)}"] = (200, manifest_headers, other)
    with pytest.raises(RegistryError, match="whose content does not have that digest"):
        client().image_layers(f"{registry.host}/team/app:v1@{digest(MANIFEST)}")


def test_a_redirect_on_the_registry_s_own_host_keeps_its_credentials(
    servers: tuple[Server, Server],
) -> None:
    registry, _ = servers
    registry.password = "secret"
    registry.routes[f"/v2/team/app/blobs/{digest(LAYER)}"] = (
        302, {"Location": "/storage/layer"}, b"",
    )  # fmt: skip
    registry.routes["/storage/layer"] = (200, {}, LAYER)
    with client().open_blob(f"{registry.host}/team/app", layer_blob()) as stream:
        assert stream.read() == LAYER
    assert registry.seen[-1] == ("/storage/layer", "Basic dTpzZWNyZXQ=")


def test_a_kept_connection_the_registry_dropped_is_opened_again(
    servers: tuple[Server, Server],
) -> None:
    registry, _ = servers
    registry.drop_idle = True
    registry.routes[f"/v2/team/app/blobs/{digest(LAYER)}"] = (200, {}, LAYER)
    reader = client()
    for _ in range(3):
        with reader.open_blob(f"{registry.host}/team/app", layer_blob()) as stream:
            assert stream.read() == LAYER
