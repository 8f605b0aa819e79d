"""Package manifests beyond dpkg (pip, conda) and the sidecar that records them per version."""

from __future__ import annotations

import json
from pathlib import Path

from imagectl.app.recording import Parent, record_packages
from imagectl.core import sidecar
from imagectl.core.layerfiles import FileSelection
from imagectl.core.linestate import LineState
from imagectl.core.model import ImageLine, Lock
from imagectl.core.packages import (
    PackageRecord,
    VersionDelta,
    diff_manifests,
    manifest_from_files,
    parse_entry,
    wanted_file,
)

from .fakes import FakeImages

STATUS = b"""Package: python3-six
Status: install ok installed
Architecture: all
Version: 1.16.0-4

Package: less
Status: install ok installed
Architecture: amd64
Version: 590-2
"""
SIX_LIST = (
    b"/usr/lib/python3/dist-packages/six-1.16.0.egg-info\n/usr/lib/python3/dist-packages/six.py\n"
)
VENV = "opt/app/lib/python3.11/site-packages"


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: not this\n".encode()


def pod_files() -> dict[str, bytes]:
    """An apt + pip + conda image's package files, as the engine adapter hands them over."""
    return {
        "var/lib/dpkg/status": STATUS,
        "var/lib/dpkg/info/python3-six.list": SIX_LIST,
        "var/lib/dpkg/info/less.list": b"/usr/bin/less\n",
        # apt's six: a deb, listed once
        "usr/lib/python3/dist-packages/six-1.16.0.egg-info": metadata("six", "1.16.0"),
        # pip's six in a venv and a system-wide pip install: two more distributions
        f"{VENV}/six-1.17.0.dist-info/METADATA": metadata("six", "1.17.0"),
        f"{VENV}/Jupyter_Core-5.7.2.dist-info/METADATA": metadata("Jupyter_Core", "5.7.2"),
        "usr/local/lib/python3.11/dist-packages/old-0.1.egg-info/PKG-INFO": metadata("old", "0.1"),
        # conda's numpy, and the dist-info conda put beside it: a conda package, listed once
        "opt/conda/conda-meta/numpy-1.26.4-py311_0.json": json.dumps(
            {
                "name": "numpy",
                "version": "1.26.4",
                "files": ["lib/python3.11/site-packages/numpy-1.26.4.dist-info/METADATA"],
            }
        ).encode(),
        "opt/conda/lib/python3.11/site-packages/numpy-1.26.4.dist-info/METADATA": metadata(
            "numpy", "1.26.4"
        ),
    }


def test_the_adapter_reads_only_the_files_a_manifest_needs() -> None:
    for path in pod_files():
        assert wanted_file(path), path
    for path in (
        f"{VENV}/six-1.17.0.dist-info/RECORD",
        f"{VENV}/six.py",
        "usr/share/doc/x.dist-info/METADATA",  # not in a site-packages folder
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/info/less.md5sums",
        "opt/conda/conda-meta/history",
    ):
        assert not wanted_file(path), path


def test_debs_pip_and_conda_each_once_with_their_kind() -> None:
    manifest = manifest_from_files(pod_files())
    found = sorted((parse_entry(e).to_json() for e in manifest), key=json.dumps)
    assert found == sorted(expected_packages(), key=json.dumps)
    assert manifest_from_files({}) == ()


def expected_packages() -> list[dict[str, str]]:
    return [
        {"name": "less", "version": "590-2", "kind": "deb", "arch": "amd64"},
        {"name": "python3-six", "version": "1.16.0-4", "kind": "deb", "arch": "all"},
        {"name": "numpy", "version": "1.26.4", "kind": "conda", "location": "/opt/conda"},
        {"name": "jupyter-core", "version": "5.7.2", "kind": "pip", "location": f"/{VENV}"},
        {"name": "six", "version": "1.17.0", "kind": "pip", "location": f"/{VENV}"},
        {
            "name": "old",
            "version": "0.1",
            "kind": "pip",
            "location": "/usr/local/lib/python3.11/dist-packages",
        },
    ]


def test_entries_round_trip_and_older_ones_are_debs() -> None:
    for entry in manifest_from_files(pod_files()):
        assert parse_entry(entry).entry == entry
    assert parse_entry("less 590-2 amd64").kind == "deb"
    spaced = parse_entry("pip:x 1.0 /opt/my app/site-packages")
    assert (spaced.name, spaced.version, spaced.location) == (
        "x",
        "1.0",
        "/opt/my app/site-packages",
    )


def test_a_diff_names_each_kind() -> None:
    old = ("less 590-1 amd64", f"pip:six 1.16.0 /{VENV}")
    new = ("less 590-2 amd64", f"pip:six 1.17.0 /{VENV}", f"pip:rich 13.0 /{VENV}")
    diff = diff_manifests(old, new)
    assert diff.summary == "+1 -0 ~2 (deb ~1, pip +1 ~1)"
    assert diff.kind_counts() == {
        "deb": {"added": 0, "removed": 0, "changed": 1},
        "pip": {"added": 1, "removed": 0, "changed": 1},
    }
    data = diff.to_json()
    assert data["added"] == [
        {"name": "rich", "version": "13.0", "kind": "pip", "location": f"/{VENV}"}
    ]
    assert data["changed"][1] == {  # type: ignore[index]
        "package": f"pip:six@/{VENV}",
        "name": "six",
        "kind": "pip",
        "location": f"/{VENV}",
        "old": "1.16.0",
        "new": "1.17.0",
    }
    assert diff_manifests(("a 1 amd64",), ("a 2 amd64",)).summary == "+0 -0 ~1"  # debs only


def test_an_older_sidecar_still_reads_as_debs(tmp_path: Path) -> None:
    path = tmp_path / "lock" / "line.packages.toml"
    path.parent.mkdir()
    path.write_text(
        'schema = 1\nline = "line"\n\n[base]\npackages = ["a 1 amd64"]\n\n'
        '[[versions]]\nversion = 1\nadded = ["b 1 all"]\nremoved = []\n'
    )
    record = sidecar.read_packages(path)
    assert record.kinds == ("deb",)
    assert record.manifest(1) == ("a 1 amd64", "b 1 all")
    assert parse_entry(record.manifest(1)[1]).to_json()["kind"] == "deb"


class FilesImages(FakeImages):
    """Images whose package files are given per image id."""

    def __init__(self, files: dict[str, dict[str, bytes]]) -> None:
        super().__init__()
        self.files = files
        self.read: list[str] = []

    def read_files(self, image: str, wanted: FileSelection) -> dict[str, bytes]:
        self.read.append(image)
        return {path: data for path, data in self.files[image].items() if wanted.match(path)}


def whole(image: str) -> Parent:
    """A parent whose layers the fake cannot read one by one: every image is read whole."""
    return Parent(image_id=image, layers=None)


def status(*packages: str) -> dict[str, bytes]:
    stanzas = [
        f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n"
        for name, version in (p.split("=") for p in packages)
    ]
    return {"var/lib/dpkg/status": "\n".join(stanzas).encode()}


def state_in(root: Path) -> LineState:
    line = ImageLine(
        name="line", config_path=Path("images/line.toml"), repository="r/line", base="b:1"
    )
    (root / "lock").mkdir(exist_ok=True)
    lock = Lock(line="line", repository="r/line", base="b:1")
    return LineState(line=line, increments=(), lock=lock, lock_path=root / "lock/line.lock.toml")


def test_recording_appends_from_the_cached_head(tmp_path: Path) -> None:
    images = FilesImages(
        {
            "base": status("a=1"),
            "v1": status("a=1", "b=1"),
            "v2": {
                **status("a=2", "b=1"),
                f"{VENV}/six-1.0.dist-info/METADATA": metadata("six", "1.0"),
            },
            "v3": status("a=2"),
        }
    )
    state = state_in(tmp_path)
    path = tmp_path / "lock" / "line.packages.toml"
    for version, parent in ((1, "base"), (2, "v1"), (3, "v2")):
        before = path.read_text() if path.exists() else ""
        images.read.clear()
        record_packages(
            state, version=version, image=f"v{version}", parent=whole(parent), images=images
        )
        if version > 1:  # the parent's manifest came from the cache, the old text was kept
            assert images.read == [f"v{version}"]
            assert path.read_text().startswith(before.rstrip("\n"))
    record = sidecar.read_packages(path)
    assert record.kinds == ("deb", "pip", "conda")
    assert record.manifest(3) == ("a 2 amd64",)
    assert record.versions[2].diff().summary == "+1 -0 ~1 (deb ~1, pip +1)"
    assert record.diff(1, 3).summary == "+0 -1 ~1"
    assert sidecar.read_package_head(path) is not None


def test_an_entry_left_by_an_interrupted_build_is_replaced(tmp_path: Path) -> None:
    images = FilesImages(
        {"base": status("a=1"), "v1": status("a=1", "b=1"), "v2": status(), "v2b": status("a=1")}
    )
    state = state_in(tmp_path)
    path = tmp_path / "lock" / "line.packages.toml"
    record_packages(state, version=1, image="v1", parent=whole("base"), images=images)
    record_packages(state, version=2, image="v2", parent=whole("v1"), images=images)
    # the lock never recorded v2; the rerun builds another v2 and records it again
    record_packages(state, version=2, image="v2b", parent=whole("v1"), images=images)
    record = sidecar.read_packages(path)
    assert sorted(record.versions) == [1, 2]
    assert record.versions[2] == VersionDelta(removed=("b 1 amd64",))
    # a cache that does not belong to the sidecar any more is not used
    path.write_text(path.read_text() + "\n# edited\n")
    assert sidecar.read_package_head(path) is None


def test_an_older_sidecar_starts_pip_at_the_next_version(tmp_path: Path) -> None:
    site = f"{VENV}/six-1.0.dist-info/METADATA"
    images = FilesImages(
        {
            "v1": {**status("a=1"), site: metadata("six", "1.0")},
            "v2": {**status("a=1"), site: metadata("six", "1.1")},
        }
    )
    state = state_in(tmp_path)
    path = tmp_path / "lock" / "line.packages.toml"
    path.write_text(
        'schema = 1\nline = "line"\n\n[base]\npackages = []\n\n'
        '[[versions]]\nversion = 1\nadded = ["a 1 amd64"]\nremoved = []\n'
    )
    diff = record_packages(state, version=2, image="v2", parent=whole("v1"), images=images)
    assert diff.summary == "+0 -0 ~1 (pip ~1)"  # not "+1": v1's six was there before
    record = sidecar.read_packages(path)
    assert record.versions[2].tracked == ("pip", "conda")
    assert record.manifest(2) == ("a 1 amd64", f"pip:six 1.1 /{VENV}")
    assert record.diff(1, 2).empty  # v1 has no pip record: compared over debs only
    assert record.kinds_at(2) == ("deb", "pip", "conda")
    assert isinstance(record, PackageRecord)
