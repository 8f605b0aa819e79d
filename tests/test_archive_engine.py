"""Input archives on the real engine and registry: captured while `build next` runs, proved
against the signed index and the package delta, stored by `publish`, shown by `archive`, and
enough to rebuild a version with its package source gone and its key expired."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagectl.core import lockfile
from imagectl.core.model import Lock

from .aptrepo import Package, key_home, make_key, make_repo, serving
from .conftest import DEBIAN, docker, imagectl
from .engine_helpers import busybox_repo, kill_when_paused, local_tags, read_lock
from .helpers import git_init, make_line, write

pytestmark = pytest.mark.engine

TOOL = Package(name="vendor-tool", version="1.0-1")
DATA = Package(name="vendor-data", version="2:1.1", architecture="all")
KEY_LIFE = 100  # seconds the vendor's key and its Valid-Until last: past them before the rebuild


def debian_lock(root: Path, repo_name: str) -> Lock:
    path = root / "lock" / "line.lock.toml"
    return lockfile.read_lock(path, line="line", repository=repo_name, base=DEBIAN)


def gateway() -> str:
    return docker("network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}")


def vendor_line(root: Path, repo_name: str, url: str, key: bytes, extra: str = "") -> None:
    """A Debian line whose one increment installs from the vendor's repository only."""
    make_line(root, "line", repository=repo_name, base=DEBIAN)
    with (root / "images" / "line.toml").open("a", encoding="utf-8") as file:
        file.write(extra)
    folder = root / "increments" / "line" / "0001-vendor"
    (folder).mkdir(parents=True)
    (folder / "vendor.gpg").write_bytes(key)
    write(
        folder / "Dockerfile.j2",
        "# The vendor's tools, from its own repository\n"
        "COPY vendor.gpg /etc/apt/keyrings/vendor.gpg\n"
        "RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \\\n"
        f" && echo 'deb [signed-by=/etc/apt/keyrings/vendor.gpg] {url}/vendor stable main' \\\n"
        "    > /etc/apt/sources.list.d/vendor.list \\\n"
        " && apt-get update && apt-get install -y --no-install-recommends vendor-tool "
        "vendor-data \\\n"
        " && rm -rf /var/lib/apt/lists/*\n",
    )
    git_init(root)


@pytest.mark.debian
def test_a_vendor_line_rebuilds_offline_once_its_repository_is_gone_and_its_key_expired(
    tmp_path: Path, repo_name: str
) -> None:
    served = tmp_path / "served"
    with key_home() as home:
        key = make_key(home, expire=f"seconds={KEY_LIFE}")
        until = datetime.now(UTC) + timedelta(seconds=KEY_LIFE)
        make_repo(served / "vendor", [TOOL, DATA], key=key, valid_until=until)
        started = time.monotonic()
        root = tmp_path / "repo"
        with serving(served, gateway()) as (url, fetched):
            vendor_line(root, repo_name, url, key.public, '[archive]\nrequire = "complete"\n')
            built = imagectl(root, "build", "next", "-q")
            assert built.code == 0, built.stderr
        assert any(path.endswith(TOOL.deb_name) for path in fetched)
        version = debian_lock(root, repo_name).versions[0]
        assert version.archive_state == "complete"
        assert version.archive_files >= 3  # InRelease, an index, two debs
        published = imagectl(root, "publish", "-q", "--json")
        assert published.code == 0, published.stderr
        (stored,) = json.loads(published.stdout)["archives"]
        assert stored["complete"] is True
        assert debian_lock(root, repo_name).versions[0].archive == stored["digest"]

        shown = json.loads(imagectl(root, "archive", "line", "--json").stdout)
        assert (shown["source"], shown["digest"], shown["complete"]) == (
            "registry", stored["digest"], True,
        )  # fmt: skip
        debs = {f["package"] for f in shown["files"] if f["kind"] == "deb"}
        assert debs == {"vendor-tool=1.0-1/amd64", "vendor-data=2:1.1/all"}
        assert all(f["verified"] for f in shown["files"] if f["kind"] in ("deb", "index"))
        assert [i["role"] for i in shown["images"]] == ["base"]

        # The repository is gone (the server stopped), this machine's copy of the archive too:
        # only the registry has the inputs now. Wait until key and Valid-Until have lapsed.
        import shutil  # noqa: PLC0415

        shutil.rmtree(root / ".imagectl" / "archive")
        time.sleep(max(0.0, KEY_LIFE + 5 - (time.monotonic() - started)))
        offline = imagectl(root, "verify", "--offline", "line", "--json")
    assert offline.code == 0, offline.stderr + offline.stdout
    report = json.loads(offline.stdout)
    assert report["drift"] is False
    # The online verify has nothing to fetch from: the vendor's server is gone.
    online = imagectl(root, "verify", "line", "--json")
    assert online.code != 0


def test_an_https_download_makes_the_archive_incomplete_and_require_complete_refuses_it(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {"0001-fetch": "# Fetch over https\nRUN wget -q -O /f https://127.0.0.1:9/f || true\n"},
    )
    with (root / "images" / "line.toml").open("a", encoding="utf-8") as file:
        file.write('[archive]\nrequire = "complete"\n')
    lock_before = sorted(p.name for p in (root / "lock").iterdir())
    refused = imagectl(root, "build", "next", "-q")
    assert refused.code == 1, refused.stdout + refused.stderr
    assert "https://127.0.0.1:9/f: https (not captured)" in refused.stderr
    assert "Nothing was tagged or recorded" in refused.stderr
    assert local_tags(repo_name) == {}
    assert sorted(p.name for p in (root / "lock").iterdir()) == lock_before
    assert not (root / "lock" / "line.lock.toml").exists()
    # Without the requirement it is recorded, as incomplete, and says what is missing.
    text = (root / "images" / "line.toml").read_text().replace('require = "complete"\n', "")
    (root / "images" / "line.toml").write_text(text)
    kept = imagectl(root, "build", "next", "-q")
    assert kept.code == 0, kept.stderr
    assert "incomplete" in kept.stderr
    assert read_lock(root, repo_name).versions[0].archive_state == "incomplete"
    shown = imagectl(root, "archive", "line", "--json")
    assert json.loads(shown.stdout)["missing"] == ["https://127.0.0.1:9/f: https (not captured)"]


def test_a_plain_http_download_is_kept_and_served_to_the_offline_rebuild(
    tmp_path: Path, repo_name: str
) -> None:
    served = tmp_path / "served"
    write(served / "tool.sh", "echo the vendor's tool\n")
    with serving(served, gateway()) as (url, fetched):
        root = busybox_repo(
            tmp_path,
            repo_name,
            {"0001-tool": f"# A tool over http\nRUN wget -q -O /tool.sh {url}/tool.sh\n"},
        )
        assert imagectl(root, "build", "next", "-q").code == 0
    assert fetched == ["tool.sh"]
    version = read_lock(root, repo_name).versions[0]
    assert (version.archive_state, version.archive_files) == ("complete", 1)
    shown = json.loads(imagectl(root, "archive", "line", "--json").stdout)
    assert shown["source"] == "local"
    assert [(f["url"], f["kind"], f["verified"]) for f in shown["files"]] == [
        (f"{url}/tool.sh", "file", False)
    ]
    assert imagectl(root, "publish", "-q").code == 0
    # The server is gone: the rebuild gets the file from the archive in the registry.
    rebuilt = imagectl(root, "rebuild", "--offline", "line", "1", "--json")
    assert rebuilt.code == 0, rebuilt.stderr
    image = json.loads(rebuilt.stdout)["image_id"]
    try:
        assert docker("run", "--rm", image, "cat", "/tool.sh") == "echo the vendor's tool"
    finally:
        docker("rmi", image, check=False)
    audit = json.loads(imagectl(root, "audit", "--json").stdout)
    assert [f["archive"] for f in audit["findings"]] == ["ok"]


def test_a_rerun_after_a_kill_past_the_tag_adopts_the_tag_and_its_archive(
    tmp_path: Path, repo_name: str
) -> None:
    """A capture build runs without the cache, so building again would make another image
    than the tag names: the rerun adopts the tag and its proved archive instead."""
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "# One\nRUN echo one > /one\n"})
    kill_when_paused(root, ("build", "next", "-q"), "after-tag")
    tagged = local_tags(repo_name)
    assert list(tagged) == [f"{repo_name}:v1"]
    assert not (root / "lock" / "line.lock.toml").exists()
    rerun = imagectl(root, "build", "next", "-q")
    assert rerun.code == 0, rerun.stderr
    version = read_lock(root, repo_name).versions[0]
    assert version.image_id == tagged[f"{repo_name}:v1"]
    assert version.archive_state == "complete"


def test_archives_sharing_files_are_all_stored_and_each_shared_file_once(
    tmp_path: Path, repo_name: str
) -> None:
    """Versions fetching the same file share its blob; storing their archives must not race
    on it (distribution 2.8 answered 500 to a HEAD of a blob another request was linking)."""
    served = tmp_path / "served"
    write(served / "big.bin", "x" * 200_000)
    with serving(served, gateway()) as (url, _fetched):
        steps = {
            f"000{n}-fetch": f"# Fetch {n}\nRUN wget -q -O /big{n} {url}/big.bin\n"
            for n in (1, 2, 3, 4)
        }
        root = busybox_repo(tmp_path, repo_name, steps)
        assert imagectl(root, "build", "next", "--all", "-q").code == 0
    published = imagectl(root, "publish", "-q", "--json")
    assert published.code == 0, published.stderr
    assert [a["version"] for a in json.loads(published.stdout)["archives"]] == [1, 2, 3, 4]
    digests = {v.archive for v in read_lock(root, repo_name).versions}
    assert len(digests) == 4
    assert "" not in digests
