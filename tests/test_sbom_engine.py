"""publish attaches each version's SBOM on the real registry (CNCF distribution 2.8: no
referrers API, so the referrers tag scheme), and a client reading the registry by the OCI spec
alone finds it from the image's digest."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from .conftest import imagectl
from .engine_helpers import busybox_repo, kill_when_paused, read_lock

pytestmark = pytest.mark.engine

REGISTRY = "http://127.0.0.1:5000"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DPKG = (
    "RUN mkdir -p /var/lib/dpkg && printf 'Package: {name}\\nStatus: install ok installed\\n"
    "Version: {version}\\nArchitecture: amd64\\n\\n' >> /var/lib/dpkg/status\n"
)


def get(path: str, accept: str) -> bytes:
    request = urllib.request.Request(f"{REGISTRY}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as answer:
        data: bytes = answer.read()
        return data


def test_publish_attaches_an_sbom_a_spec_client_finds_by_the_image_digest(
    tmp_path: Path, repo_name: str
) -> None:
    steps = {
        "0001-openssl": "# openssl\n" + DPKG.format(name="openssl", version="3.0.13-0ubuntu3.1"),
        "0002-zlib": "# zlib\n" + DPKG.format(name="zlib1g", version="1:1.3.dfsg-3.1ubuntu2"),
    }
    root = busybox_repo(tmp_path, repo_name, steps)
    with (root / "images" / "line.toml").open("a", encoding="utf-8") as file:
        file.write('[sbom]\ndistro = "ubuntu-24.04"\n')
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    result = imagectl(root, "publish", "-q", "--json")
    assert result.code == 0, result.stderr
    attached = json.loads(result.stdout)["sboms"]
    assert [s["version"] for s in attached] == [1, 2]
    path = repo_name.split("/", 1)[1]
    for version in read_lock(root, repo_name).versions:
        assert version.sbom == attached[version.version - 1]["digest"]
        # From the image's digest alone, as the OCI spec's fallback says: the referrers tag.
        index = json.loads(
            get(
                f"/v2/{path}/manifests/sha256-{version.digest.removeprefix('sha256:')}",
                "application/vnd.oci.image.index.v1+json",
            )
        )
        (entry,) = index["manifests"]
        assert entry["digest"] == version.sbom
        assert entry["artifactType"] == "application/spdx+json"
        manifest = json.loads(
            get(
                f"/v2/{path}/manifests/{version.sbom}", "application/vnd.oci.image.manifest.v1+json"
            )
        )
        assert manifest["subject"]["digest"] == version.digest
        (layer,) = manifest["layers"]
        document = get(f"/v2/{path}/blobs/{layer['digest']}", "*/*")
        printed = imagectl(root, "sbom", "line", str(version.version))
        assert document.decode() == printed.stdout  # what is attached is what sbom prints
        out = tmp_path / f"v{version.version}.spdx.json"
        out.write_bytes(document)
        assert validate_full_spdx_document(parse_file(str(out))) == []
        names = {p["name"] for p in json.loads(document)["packages"]}
        assert "openssl" in names
        assert ("zlib1g" in names) is (version.version == 2)
    lock = (root / "lock" / "line.lock.toml").read_bytes()
    again = imagectl(root, "publish", "-q")
    assert again.code == 0
    assert "nothing to publish" in again.stdout  # each SBOM is attached once
    assert (root / "lock" / "line.lock.toml").read_bytes() == lock
    audit = imagectl(root, "audit", "--json")
    assert audit.code == 0, audit.stdout
    assert {f["sbom"] for f in json.loads(audit.stdout)["findings"]} == {"ok"}


def test_a_publish_killed_after_storing_an_sbom_records_the_same_one_on_the_rerun(
    tmp_path: Path, repo_name: str
) -> None:
    """Protection: the SBOM is stored by its digest and listed once, so a rerun after a kill
    between storing it and the lock write stores nothing new and records that very digest."""
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "# One\n" + DPKG.format(
        name="hello", version="2.10-3")})  # fmt: skip
    assert imagectl(root, "build", "next", "-q").code == 0
    kill_when_paused(root, ("publish",), "after-sbom-push")
    version = read_lock(root, repo_name).versions[0]
    assert version.digest  # the image's digest was recorded before the SBOM was stored
    assert not version.sbom  # the kill came before the SBOM's
    path = repo_name.split("/", 1)[1]
    listed = f"/v2/{path}/manifests/sha256-{version.digest.removeprefix('sha256:')}"
    (stored,) = json.loads(get(listed, INDEX))["manifests"]
    rerun = imagectl(root, "publish", "-q", "--json")
    assert rerun.code == 0, rerun.stderr
    assert [s["digest"] for s in json.loads(rerun.stdout)["sboms"]] == [stored["digest"]]
    assert read_lock(root, repo_name).versions[0].sbom == stored["digest"]
    assert len(json.loads(get(listed, INDEX))["manifests"]) == 1
