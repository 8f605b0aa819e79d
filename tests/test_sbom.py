"""`imagectl sbom`: an SPDX 2.3 document per version from its package record, validated by the
SPDX project's own validator (spdx-tools)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from imagectl.core.packages import PackageRecord, VersionDelta

from .conftest import imagectl
from .lock_fixtures import PIP, digest, version, write_line

ENTRIES = (
    "openssl 3.0.13-0ubuntu3.1 amd64",
    "zlib1g 1:1.3.dfsg-3.1ubuntu2 amd64",
    "libstdc++6 14.2.0-4ubuntu2~24.04 amd64",
    f"pip:Foo_Bar 1.0rc1 {PIP}",
    "conda:python 3.12.7 /opt/conda",
)


def fixture(root: Path, *, distro: str = "ubuntu-24.04") -> None:
    write_line(
        root,
        "pod",
        (
            version("pod", 1, digest=digest("published")),
            version("pod", 2),
            version("pod", 3, skipped=True, reason="burned"),
        ),
        PackageRecord(
            base=ENTRIES[:3],
            versions={
                1: VersionDelta(added=ENTRIES[3:]),
                2: VersionDelta(removed=(ENTRIES[4],)),
                3: VersionDelta(),
            },
        ),
    )
    if distro:
        with (root / "images" / "pod.toml").open("a", encoding="utf-8") as file:
            file.write(f'[sbom]\ndistro = "{distro}"\n')


def sbom(root: Path, *args: str) -> dict[str, object]:
    result = imagectl(root, "sbom", "pod", *args)
    assert result.code == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


def valid(path: Path) -> list[str]:
    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))]


def purls(document: dict[str, object]) -> dict[str, str]:
    packages = document["packages"]
    assert isinstance(packages, list)
    return {
        p["name"]: p["externalRefs"][0]["referenceLocator"] for p in packages if "externalRefs" in p
    }


def test_a_versions_sbom_is_valid_spdx_with_every_recorded_package(tmp_path: Path) -> None:
    fixture(tmp_path)
    out = tmp_path / "v1.spdx.json"
    result = imagectl(tmp_path, "sbom", "pod", "1", "--out", str(out))
    assert result.code == 0, result.stderr
    assert "wrote the SBOM of v1" in result.stdout
    assert valid(out) == []
    document = json.loads(out.read_text())
    assert document["spdxVersion"] == "SPDX-2.3"
    found = purls(document)
    assert (
        found["openssl"]
        == "pkg:deb/ubuntu/openssl@3.0.13-0ubuntu3.1?arch=amd64&distro=ubuntu-24.04"
    )
    assert found["zlib1g"].startswith("pkg:deb/ubuntu/zlib1g@1%3A1.3.dfsg-3.1ubuntu2?")  # epoch
    assert found["libstdc++6"].startswith("pkg:deb/ubuntu/libstdc++6@14.2.0-4ubuntu2~24.04?")
    assert found["Foo_Bar"] == "pkg:pypi/foo-bar@1.0rc1"
    assert found["python"] == "pkg:conda/python@3.12.7"
    assert len(document["packages"]) == len(ENTRIES) + 1  # the image itself, then each package


def test_the_subject_is_the_registry_digest_once_published(tmp_path: Path) -> None:
    fixture(tmp_path)
    published, local = sbom(tmp_path, "1"), sbom(tmp_path, "2")
    image = published["packages"][0]  # type: ignore[index]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert image["checksums"] == [
        {"algorithm": "SHA256", "checksumValue": digest("published").removeprefix("sha256:")}
    ]
    assert purls(published)["localhost:5000/pod"].startswith(
        "pkg:oci/pod@sha256%3A" + digest("published").removeprefix("sha256:")
    )
    assert local["name"] == f"localhost:5000/pod:v2@{digest('podi2')}"  # the image id
    assert "python" not in purls(local)  # v2 removed it
    assert sbom(tmp_path) == local  # the newest built version by default (v3 was skipped)


def test_the_same_version_always_gives_the_same_bytes(tmp_path: Path) -> None:
    fixture(tmp_path)
    first = imagectl(tmp_path, "sbom", "pod", "2").stdout
    assert first == imagectl(tmp_path, "sbom", "pod", "2").stdout
    assert json.loads(first)["creationInfo"]["created"] == "2026-01-02T00:00:00Z"  # built_at


def test_without_a_distro_debs_get_no_guessed_purl(tmp_path: Path) -> None:
    fixture(tmp_path, distro="")
    result = imagectl(tmp_path, "sbom", "pod", "1")
    assert result.code == 0
    assert "its debs get no purl" in result.stderr
    assert "images/pod.toml" in result.stderr
    found = purls(json.loads(result.stdout))
    assert "openssl" not in found
    assert found["Foo_Bar"] == "pkg:pypi/foo-bar@1.0rc1"
    out = tmp_path / "out.json"
    out.write_text(result.stdout)
    assert valid(out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("3",), "v3 of pod was skipped (its tag was burned): it has no image"),
        (("9",), "v9 of pod is not built"),
    ],
)
def test_a_version_without_an_image_has_no_sbom(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    fixture(tmp_path)
    result = imagectl(tmp_path, "sbom", "pod", *args)
    assert result.code == 1
    assert message in result.stderr


def test_a_version_without_a_package_record_is_refused(tmp_path: Path) -> None:
    write_line(tmp_path, "pod", (version("pod", 1),), None)
    result = imagectl(tmp_path, "sbom", "pod", "1")
    assert result.code == 1
    assert "pod v1 has no complete package record in pod.packages.toml" in result.stderr


def test_out_must_name_a_file_and_nothing_is_left_half_written(tmp_path: Path) -> None:
    fixture(tmp_path)
    result = imagectl(tmp_path, "sbom", "pod", "1", "--out", str(tmp_path))
    assert result.code == 1
    assert "is a folder" in result.stderr
    missing = tmp_path / "no" / "such" / "x.json"
    result = imagectl(tmp_path, "sbom", "pod", "1", "--out", str(missing))
    assert result.code == 1
    assert "cannot write" in result.stderr
    assert not missing.parent.exists()


@pytest.mark.parametrize("table", ['distro = "Ubuntu 24.04"', "distro = 24", 'flavour = "x"'])
def test_a_bad_sbom_table_names_the_line_file(tmp_path: Path, table: str) -> None:
    fixture(tmp_path, distro="")
    with (tmp_path / "images" / "pod.toml").open("a", encoding="utf-8") as file:
        file.write(f"[sbom]\n{table}\n")
    result = imagectl(tmp_path, "sbom", "pod", "1")
    assert result.code == 1
    assert "images/pod.toml" in result.stderr
    assert "[sbom]" in result.stderr
