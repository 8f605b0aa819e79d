"""Archives and copies on the real registry (distribution 2.8): a version's input files stored
as one tagged OCI artifact, streamed from disk (memory stays far below a file's size), a blob
shared by two archives uploaded once, a rerun a no-op, an archive tag never overwritten; an image
(and an index) copied by digest into another repository by cross-repository mount, and to and
within a registry with TLS and basic auth."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import tracemalloc
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import pytest

from imagectl.adapters.docker_config import docker_credentials
from imagectl.adapters.registry import RegistryClient
from imagectl.adapters.registry_http import Credentials, RegistryTransport, Response
from imagectl.core.artifacts import TITLE, ArchiveFile, Descriptor
from imagectl.core.errors import RegistryAuthError, RegistryError
from imagectl.core.references import ImageRef

from .conftest import BUSYBOX
from .registry_helpers import OwnRegistry, registry_request, tag_digest
from .test_registry_auth_engine import USER, AuthRegistry, auth_registry

pytestmark = pytest.mark.engine

__all__ = ["auth_registry"]  # the TLS + htpasswd registry fixture, shared with its own tests

LOCAL = OwnRegistry(port=5000, tls=False, log=Path(os.devnull))  # scripts/engine's registry
ARTIFACT = "application/vnd.imagectl.inputs.v1"
CONFIG_TYPE = "application/vnd.imagectl.inputs.config.v1+json"
DEB = "application/vnd.debian.binary-package"
Auth = tuple[str, str] | None
BIG = 30 << 20  # bytes of the random file: far more than an upload may hold in memory


@dataclass
class CountingTransport(RegistryTransport):
    """The adapter's own transport, recording every request it sends (method, path, status)."""

    sent: list[tuple[str, str, int]] = field(default_factory=list)

    def send(
        self,
        ref: ImageRef,
        path: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
        push: bool = False,
    ) -> Response:
        response = super().send(ref, path, method=method, headers=headers, body=body, push=push)
        self.sent.append((method, path, response.status))
        return response

    def uploads(self) -> list[str]:
        """The digests of the blobs uploaded (the PUT that ends an upload names its digest)."""
        return [
            path.rsplit("digest=", 1)[1]
            for method, path, _ in self.sent
            if method == "PUT" and "/blobs/uploads/" in path
        ]

    def posts(self) -> list[tuple[str, int]]:
        return [(path, status) for method, path, status in self.sent if method == "POST"]


Transports = Callable[..., CountingTransport]


@pytest.fixture
def transports() -> Iterator[Transports]:
    """Makes counting transports (docker's credentials unless given); their kept connections
    are closed after the test."""
    made: list[CountingTransport] = []

    def make(credentials: Credentials = docker_credentials) -> CountingTransport:
        made.append(CountingTransport(credentials=credentials))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


def make_file(folder: Path, name: str, content: bytes, *, media_type: str = DEB) -> ArchiveFile:
    path = folder / name
    path.write_bytes(content)
    return ArchiveFile(
        path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content),
        media_type=media_type, title=name,
    )  # fmt: skip


def make_random_file(folder: Path, name: str, size: int) -> ArchiveFile:
    """`size` random bytes, written (and hashed) a MiB at a time."""
    path, sha = folder / name, hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size >> 20):
            piece = os.urandom(1 << 20)
            sha.update(piece)
            out.write(piece)
    return ArchiveFile(path=path, sha256=sha.hexdigest(), size=size, media_type=DEB, title=name)


def blob_sha256(client: RegistryClient, ref: str, blob: Descriptor) -> str:
    """The sha256 of a blob read back through open_blob, a MiB at a time."""
    sha = hashlib.sha256()
    with client.open_blob(ref, blob) as stream:
        for piece in iter(lambda: stream.read(1 << 20), b""):
            sha.update(piece)
    return sha.hexdigest()


def head_status(registry: OwnRegistry, path: str, auth: Auth = None) -> int:
    return registry_request(registry, path, method="HEAD", auth=auth).status


def path_of(repository: str) -> str:
    return repository.split("/", 1)[1]


@pytest.fixture
def repository(engine: str) -> str:
    """A unique repository in the local registry (registries keep what they are given)."""
    return f"{engine}/imagectl-test/archive-{uuid.uuid4().hex[:10]}"


def put(client: RegistryClient, ref: str, config: bytes, files: list[ArchiveFile]) -> str:
    return client.put_archive(
        ref, artifact_type=ARTIFACT, config=config, config_media_type=CONFIG_TYPE, files=files
    )


def busybox_digest() -> str:
    found = tag_digest(LOCAL, "busybox", "latest")
    assert found, f"{BUSYBOX} is not in the registry (scripts/engine up pushes it)"
    return found


def test_an_archive_is_streamed_from_disk_and_read_back(
    tmp_path: Path, repository: str, transports: Transports
) -> None:
    """Protection: a file is streamed, never read whole (the memory an upload takes stays far
    below the 30 MiB file); what is read back is what was stored, titles and order kept."""
    files = [
        make_file(tmp_path, "hello_1.0_amd64.deb", b"hello " * 1000),
        make_random_file(tmp_path, "big_2.0_amd64.deb", BIG),
        make_file(tmp_path, "sources.list", b"deb http://deb.debian.org/debian bookworm main\n",
                  media_type="text/plain"),
    ]  # fmt: skip
    config = json.dumps({"version": 3, "line": "noble"}, sort_keys=True).encode()
    client = RegistryClient(transports())
    ref = f"{repository}:v3-inputs"
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        digest = put(client, ref, config, files)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < BIG // 8, f"put_archive held {peak >> 20} MiB for a {BIG >> 20} MiB file"
    assert digest.startswith("sha256:")
    assert tag_digest(LOCAL, path_of(repository), "v3-inputs") == digest

    found = client.read_archive(ref)
    assert found is not None
    stored_config, layers = found
    assert stored_config == config
    assert [layer.annotations[TITLE] for layer in layers] == [f.title for f in files]
    assert [(layer.digest, layer.size, layer.media_type) for layer in layers] == [
        (f"sha256:{f.sha256}", f.size, f.media_type) for f in files
    ]
    for layer, file in zip(layers, files, strict=True):
        assert blob_sha256(client, ref, layer) == file.sha256
    assert client.read_archive(f"{repository}@{digest}") == found  # by digest, too
    manifest = json.loads(
        registry_request(LOCAL, f"/v2/{path_of(repository)}/manifests/{digest}").body
    )
    assert manifest["artifactType"] == ARTIFACT
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert client.read_archive(f"{repository}:v4-inputs") is None


def test_a_file_shared_by_two_archives_is_uploaded_once(
    tmp_path: Path, repository: str, transports: Transports
) -> None:
    """Protection: the blob HEAD before each upload. Without it the second archive would
    upload the shared file again (its PUT counted by the transport)."""
    shared = make_file(tmp_path, "libc6_2.36_amd64.deb", os.urandom(300_000))
    first = [make_file(tmp_path, "a_1_amd64.deb", b"a" * 5000), shared]
    second = [shared, make_file(tmp_path, "b_1_amd64.deb", b"b" * 5000)]
    transport = transports()
    client = RegistryClient(transport)
    put(client, f"{repository}:v1-inputs", b'{"version":1}', first)
    assert transport.uploads().count(f"sha256:{shared.sha256}") == 1
    transport.sent.clear()
    put(client, f"{repository}:v2-inputs", b'{"version":2}', second)
    assert f"sha256:{shared.sha256}" not in transport.uploads()
    assert len(transport.posts()) == 2  # its config and b: nothing else started an upload
    found = client.read_archive(f"{repository}:v2-inputs")
    assert found is not None
    assert blob_sha256(client, f"{repository}:v2-inputs", found[1][0]) == shared.sha256


@dataclass
class OverlapTransport(CountingTransport):
    """Counts, per blob, the requests on it in flight at once; each blob request is held a
    moment so that two threads asking about the same blob would overlap."""

    busy: dict[str, int] = field(default_factory=dict)
    most: dict[str, int] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def send(
        self,
        ref: ImageRef,
        path: str,
        *,
        method: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
        push: bool = False,
    ) -> Response:
        blob = path.rsplit("/blobs/", 1)[1] if "/blobs/sha256:" in path else ""
        blob = blob or (path.rsplit("digest=", 1)[1] if "digest=" in path else "")
        if blob:
            with self.guard:
                self.busy[blob] = self.busy.get(blob, 0) + 1
                self.most[blob] = max(self.most.get(blob, 0), self.busy[blob])
            time.sleep(0.03)
        try:
            return super().send(ref, path, method=method, headers=headers, body=body, push=push)
        finally:
            if blob:
                with self.guard:
                    self.busy[blob] -= 1


def test_archives_stored_at_once_never_ask_about_one_blob_at_once(
    tmp_path: Path, repository: str
) -> None:
    """Protection: the adapter's lock per blob. distribution 2.8 answers a HEAD of a blob whose
    link another request is writing with HTTP 500; without the lock six archives sharing a file,
    stored at once, all HEAD it together (counted here) and each uploads it."""
    shared = make_file(tmp_path, "libc6_2.36_amd64.deb", os.urandom(200_000))
    transport = OverlapTransport(credentials=docker_credentials)
    client = RegistryClient(transport)
    refs = [f"{repository}:v{n}-inputs" for n in range(1, 7)]

    def store(ref: str) -> str:
        try:
            return put(client, ref, json.dumps({"ref": ref}).encode(), [shared])
        finally:
            transport.close()  # this thread's connection

    with ThreadPoolExecutor(len(refs)) as pool:
        digests = list(pool.map(store, refs))
    assert len(set(digests)) == len(refs)
    assert transport.most[f"sha256:{shared.sha256}"] == 1
    assert transport.uploads().count(f"sha256:{shared.sha256}") == 1


def test_a_rerun_of_the_same_archive_returns_its_digest_and_sends_nothing(
    tmp_path: Path, repository: str, transports: Transports
) -> None:
    files = [make_file(tmp_path, "a_1_amd64.deb", os.urandom(10_000))]
    transport = transports()
    client = RegistryClient(transport)
    digest = put(client, f"{repository}:v1-inputs", b'{"version":1}', files)
    transport.sent.clear()
    assert put(client, f"{repository}:v1-inputs", b'{"version":1}', files) == digest
    assert [method for method, _, _ in transport.sent] == ["GET"]  # the tag, nothing sent


def test_an_archive_tag_is_never_overwritten(
    tmp_path: Path, repository: str, transports: Transports
) -> None:
    """Protection: the tag is read before anything is stored. Without it the second PUT would
    move the tag to the other archive."""
    client = RegistryClient(transports())
    ref = f"{repository}:v1-inputs"
    digest = put(client, ref, b'{"version":1}', [make_file(tmp_path, "a.deb", b"one")])
    other = [make_file(tmp_path, "b.deb", b"two")]
    with pytest.raises(RegistryError) as caught:
        put(client, ref, b'{"version":1}', other)
    assert ref in caught.value.message
    assert digest in caught.value.message
    assert "never overwritten" in caught.value.hint
    assert tag_digest(LOCAL, path_of(repository), "v1-inputs") == digest
    blob = f"/v2/{path_of(repository)}/blobs/sha256:{other[0].sha256}"
    assert head_status(LOCAL, blob) == 404  # refused before any of it was sent


def copied_parts(
    registry: OwnRegistry, path: str, digest: str, auth: tuple[str, str] | None = None
) -> list[str]:
    """The config and layer digests of the image manifest `digest` in `path`."""
    body = registry_request(registry, f"/v2/{path}/manifests/{digest}", auth=auth).body
    manifest = json.loads(body)
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def assert_copied(
    registry: OwnRegistry,
    source: str,
    target: str,
    digest: str,
    auth: tuple[str, str] | None = None,
) -> None:
    """`target` has the manifest `digest` and each of its blobs; no tag was made."""
    assert head_status(registry, f"/v2/{target}/manifests/{digest}", auth) == 200
    parts = copied_parts(registry, target, digest, auth)
    assert parts == copied_parts(registry, source, digest, auth)
    for blob in parts:
        assert head_status(registry, f"/v2/{target}/blobs/{blob}", auth) == 200
    tags = json.loads(registry_request(registry, f"/v2/{target}/tags/list", auth=auth).body)
    assert not tags.get("tags")


def test_copy_image_mounts_the_blobs_and_keeps_the_image_by_digest(
    repository: str, transports: Transports
) -> None:
    """Protection: every blob is mounted (POST ...?mount=, 201), none streamed; the target
    repository then has the manifest by digest and every blob."""
    digest = busybox_digest()
    transport = transports()
    client = RegistryClient(transport)
    assert client.copy_image(f"{LOCAL.host}/busybox@{digest}", repository) == digest
    assert_copied(LOCAL, "busybox", path_of(repository), digest)
    mounts = transport.posts()
    assert mounts
    assert all("mount=" in path and status == 201 for path, status in mounts)
    assert transport.uploads() == []
    transport.sent.clear()
    assert client.copy_image(f"{LOCAL.host}/busybox:latest", repository) == digest
    assert transport.posts() == []  # the blobs are there: nothing to mount


def test_copy_image_of_an_index_copies_its_manifests(
    repository: str, transports: Transports
) -> None:
    digest = busybox_digest()
    client = RegistryClient(transports())
    source = f"{repository}-src"
    client.copy_image(f"{LOCAL.host}/busybox@{digest}", source)
    child = registry_request(LOCAL, f"/v2/busybox/manifests/{digest}")
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": child.headers["content-type"], "digest": digest,
            "size": len(child.body), "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }).encode()  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:5000/v2/{path_of(source)}/manifests/multi", data=index, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 201
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    assert client.copy_image(f"{source}:multi", repository) == index_digest
    assert head_status(LOCAL, f"/v2/{path_of(repository)}/manifests/{index_digest}") == 200
    assert_copied(LOCAL, "busybox", path_of(repository), digest)


def test_copy_image_to_and_within_a_registry_with_tls_and_basic_auth(
    tmp_path: Path, auth_registry: AuthRegistry, transports: Transports
) -> None:
    """To another registry the blobs are streamed (no mount across hosts); within it they are
    mounted, with the credentials; without credentials the copy stops with an auth error. An
    archive's file is streamed over TLS with auth, too."""
    host, secret = auth_registry.host, (USER, auth_registry.password)
    creds = {host: secret}
    transport = transports(creds.get)
    client = RegistryClient(transport)
    digest = busybox_digest()
    first = f"imagectl-test/copy-{uuid.uuid4().hex[:10]}"
    second = f"imagectl-test/copy-{uuid.uuid4().hex[:10]}"

    assert client.copy_image(f"{LOCAL.host}/busybox@{digest}", f"{host}/{first}") == digest
    assert not any("mount=" in path for path, _ in transport.posts())
    assert transport.uploads()  # streamed from the other registry
    assert_copied(auth_registry.registry, first, first, digest, secret)

    transport.sent.clear()
    assert client.copy_image(f"{host}/{first}@{digest}", f"{host}/{second}") == digest
    assert [status for path, status in transport.posts() if "mount=" in path] == [201] * len(
        transport.posts()
    )
    assert_copied(auth_registry.registry, first, second, digest, secret)

    anonymous = RegistryClient(transports(lambda _host: None))
    with pytest.raises(RegistryAuthError):
        anonymous.copy_image(f"{host}/{first}@{digest}", f"{host}/imagectl-test/refused")

    file = make_random_file(tmp_path, "big.deb", 2 << 20)
    ref = f"{host}/{first}-inputs:v1-inputs"
    archived = put(client, ref, b'{"version":1}', [file])
    found = client.read_archive(ref)
    assert found is not None
    assert blob_sha256(client, ref, found[1][0]) == file.sha256
    assert auth_registry.digest(f"{host}/{first}-inputs", "v1-inputs") == archived


def test_a_file_listed_with_a_wrong_sha256_is_refused(
    tmp_path: Path, repository: str, transports: Transports
) -> None:
    """A sha256 that is not hex stops before any request; content that does not have the
    sha256 it is listed with is refused by the registry (DIGEST_INVALID), and no tag is made."""
    transport = transports()
    client = RegistryClient(transport)
    listed = make_file(tmp_path, "a.deb", b"what was listed")
    with pytest.raises(RegistryError, match="not 64 lowercase hex digits"):
        put(client, f"{repository}:v1-inputs", b"{}", [replace(listed, sha256="A" * 64)])
    assert transport.sent == []
    listed.path.write_bytes(b"WHAT WAS LISTED")  # as long, other bytes
    with pytest.raises(RegistryError, match="does not have that digest"):
        put(client, f"{repository}:v1-inputs", b"{}", [listed])
    assert tag_digest(LOCAL, path_of(repository), "v1-inputs") is None
    listed.path.write_bytes(b"longer than what was listed")
    with pytest.raises(RegistryError, match="bytes, not the 15 its listing"):
        put(client, f"{repository}:v1-inputs", b"{}", [listed])
