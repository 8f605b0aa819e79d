"""`imagectl query`: which versions of which lines have a package, and what a digest names,
from fixture locks and package records with tricky versions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagectl.core import lockfile
from imagectl.core.config import RepositoryLayout
from imagectl.core.model import Lock
from imagectl.core.packages import PackageRecord, VersionDelta
from imagectl.core.query import PackageQuery, find_digest, find_package
from imagectl.core.versionorder import parse_constraint

from .conftest import imagectl
from .lock_fixtures import BASE, PIP, digest, version, write_line


def fixture(root: Path) -> RepositoryLayout:
    """pod: openssl moves from ubuntu3.1 to ubuntu3.4 in v2 and to ubuntu3.10 in v4; v3 is
    skipped; v4 adds Foo_Bar from pip. tools: an epoch and +dfsg, its newest withdrawn.
    old: built before packages were recorded."""
    write_line(
        root,
        "pod",
        (
            version("pod", 1, digest=digest("podd1")),
            version("pod", 2),
            version("pod", 3, skipped=True, reason="burned"),
            version("pod", 4),
        ),
        PackageRecord(
            base=(
                "libssl3t64 3.0.13-0ubuntu3.1 amd64",
                "openssl 3.0.13-0ubuntu3.1 amd64",
                "zlib1g 1:1.3.dfsg-3.1ubuntu2 amd64",
            ),
            versions={
                1: VersionDelta(),
                2: VersionDelta(
                    added=("openssl 3.0.13-0ubuntu3.4 amd64",),
                    removed=("openssl 3.0.13-0ubuntu3.1 amd64",),
                ),
                3: VersionDelta(),
                4: VersionDelta(
                    added=("openssl 3.0.13-0ubuntu3.10 amd64", f"pip:Foo_Bar 1.0rc1 {PIP}"),
                    removed=("openssl 3.0.13-0ubuntu3.4 amd64",),
                ),
            },
        ),
    )
    write_line(
        root,
        "tools",
        (version("tools", 1), version("tools", 2, withdrawn=True, withdrawn_reason="broken")),
        PackageRecord(
            base=("openssl 1:3.0.2+dfsg-1~bpo1 amd64",),
            versions={1: VersionDelta(), 2: VersionDelta()},
        ),
    )
    write_line(root, "old", (version("old", 1),), None, base_digest=digest("otherbase"))
    return RepositoryLayout(root=root)


def hits(root: Path, *args: str) -> list[tuple[str, int, str]]:
    result = imagectl(root, "query", "package", *args, "--json")
    assert result.code == 0, result.stdout + result.stderr
    found = json.loads(result.stdout)
    return [(h["line"], h["version"], h["package"]["version"]) for h in found["hits"]]


def test_every_built_version_that_has_the_package_is_listed(tmp_path: Path) -> None:
    fixture(tmp_path)
    assert hits(tmp_path, "openssl") == [
        ("pod", 1, "3.0.13-0ubuntu3.1"),
        ("pod", 2, "3.0.13-0ubuntu3.4"),
        ("pod", 4, "3.0.13-0ubuntu3.10"),  # v3 is skipped: no image has it
        ("tools", 1, "1:3.0.2+dfsg-1~bpo1"),
        ("tools", 2, "1:3.0.2+dfsg-1~bpo1"),
    ]


def test_a_constraint_orders_debs_as_dpkg_does(tmp_path: Path) -> None:
    fixture(tmp_path)
    # ubuntu3.10 is newer than ubuntu3.4; the epoch puts tools' 3.0.2 above every 3.0.13
    assert hits(tmp_path, "openssl", "--version", "<3.0.13-0ubuntu3.4") == [
        ("pod", 1, "3.0.13-0ubuntu3.1")
    ]
    assert [h[:2] for h in hits(tmp_path, "openssl", "--version", ">=1:0")] == [
        ("tools", 1),
        ("tools", 2),
    ]
    assert hits(tmp_path, "openssl", "--version", ">3.0.13-0ubuntu3.4,<1:0") == [
        ("pod", 4, "3.0.13-0ubuntu3.10")
    ]


def test_pip_names_and_versions_compare_as_pip_does(tmp_path: Path) -> None:
    fixture(tmp_path)
    assert hits(tmp_path, "foo-bar", "--kind", "pip", "--version", "<1.0") == [("pod", 4, "1.0rc1")]
    assert hits(tmp_path, "foo-bar", "--kind", "deb") == []
    assert hits(tmp_path, "FOO.BAR", "--version", ">=1.0") == []


def test_a_glob_names_several_packages(tmp_path: Path) -> None:
    fixture(tmp_path)
    names = {
        h["package"]["name"]
        for h in json.loads(imagectl(tmp_path, "query", "package", "*ssl*", "--json").stdout)[
            "hits"
        ]
    }
    assert names == {"libssl3t64", "openssl"}


def test_the_text_shows_runs_of_versions_and_the_newest(tmp_path: Path) -> None:
    fixture(tmp_path)
    text = imagectl(tmp_path, "query", "package", "libssl3t64").stdout
    assert text.splitlines()[0] == "libssl3t64: 3 versions of 1 line"
    assert "pod  v1-v2, v4 (newest)  libssl3t64 3.0.13-0ubuntu3.1 amd64" in text


def test_a_line_without_package_records_is_named_not_passed_over_silently(
    tmp_path: Path,
) -> None:
    fixture(tmp_path)
    result = imagectl(tmp_path, "query", "package", "openssl", "--json")
    warnings = json.loads(result.stdout)["warnings"]
    assert any(w.startswith("old: v1 and later have no package record") for w in warnings)
    assert "old: v1 and later" in imagectl(tmp_path, "query", "package", "openssl").stderr


def test_a_version_the_order_does_not_know_is_named(tmp_path: Path) -> None:
    record = PackageRecord(base=(f"conda:openssl 1.1.1w_odd {PIP}",), versions={1: VersionDelta()})
    query = PackageQuery(name="openssl", constraint=parse_constraint("<3"))
    lock = Lock(line="c", repository="r", base=BASE, versions=(version("c", 1),))
    found = find_package(query, [(lock, record)])
    assert found.hits == ()
    assert "c: openssl 1.1.1w_odd (conda" in found.warnings[0]
    assert "not compared with ==" not in found.warnings[0]  # names the constraint as given
    assert "<3" in found.warnings[0]


def test_a_bad_constraint_is_one_paragraph_and_exit_1(tmp_path: Path) -> None:
    fixture(tmp_path)
    result = imagectl(tmp_path, "query", "package", "openssl", "--version", "<<1")
    assert result.code == 1
    assert "--version '<<1' is not a version constraint" in result.stderr


def test_a_digest_names_its_version_and_where_a_restored_pod_starts(tmp_path: Path) -> None:
    fixture(tmp_path)
    result = imagectl(tmp_path, "query", "digest", digest("podd1"), "--json")
    assert result.code == 0, result.stderr
    (hit,) = json.loads(result.stdout)["hits"]
    assert (hit["line"], hit["version"], hit["matched"]) == ("pod", 1, "digest")
    assert hit["successor"]["newest"] == 1  # pod published only v1: a pod starts on that
    short = digest("toolsi1").removeprefix("sha256:")[:12]
    (by_id,) = json.loads(imagectl(tmp_path, "query", "digest", short, "--json").stdout)["hits"]
    assert (by_id["line"], by_id["version"], by_id["matched"]) == ("tools", 1, "image_id")
    assert by_id["successor"]["newest"] == 1  # v2 is withdrawn
    text = imagectl(tmp_path, "query", "digest", short).stdout
    assert text.startswith("tools v1: localhost:5000/tools:v1 (image id); a pod restored")


def test_a_base_digest_names_every_line_built_on_it(tmp_path: Path) -> None:
    fixture(tmp_path)
    found = find_digest(digest("base"), _locks(tmp_path))
    assert [(h.line, h.what) for h in found] == [("pod", "base"), ("tools", "base")]


def test_an_unknown_or_malformed_digest_is_refused(tmp_path: Path) -> None:
    fixture(tmp_path)
    unknown = imagectl(tmp_path, "query", "digest", digest("nobody"))
    assert unknown.code == 1
    assert "no lockfile in lock/ records" in unknown.stderr
    bad = imagectl(tmp_path, "query", "digest", "v1")
    assert bad.code == 1
    assert "'v1' is not a digest" in bad.stderr


def _locks(root: Path) -> list[Lock]:
    layout = RepositoryLayout(root=root)
    return [
        lockfile.read_lock(layout.lock_path(n), line=n, repository=f"localhost:5000/{n}", base=BASE)
        for n in ("pod", "tools", "old")
    ]


ENTRIES = (
    "openssl 3.0.13 amd64",
    "openssl-dev 3.0.13 amd64",
    "libopenssl 1 amd64",
    "conda:openssl 3.0.13 /opt/conda",
    "pip:OpenSSL 1.0 /s",
    "pip:Foo_Bar 1.0 /s",
    "pip:foo.bar 1.0 /s",
    "pip:foo-barz 1.0 /s",
)


@pytest.mark.parametrize("kind", ["", "deb", "pip", "conda"])
@pytest.mark.parametrize(("name", "glob"), [("openssl", "opens[s]l"), ("foo-bar", "foo-ba[r]")])
def test_a_plain_name_matches_what_the_same_name_as_a_glob_matches(
    kind: str, name: str, glob: str
) -> None:
    plain, as_glob = PackageQuery(name=name, kind=kind), PackageQuery(name=glob, kind=kind)
    assert [plain.matcher()(e) for e in ENTRIES] == [as_glob.matcher()(e) for e in ENTRIES]
    expected = {"": 2, "deb": 0, "pip": 2, "conda": 0} if name == "foo-bar" else None
    count = sum(map(plain.matcher(), ENTRIES))
    assert count == (expected[kind] if expected else {"": 3, "deb": 1, "pip": 1, "conda": 1}[kind])


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`imagectl query package x --json | head`: 400 versions' hits fill the pipe's buffer."""
    versions = tuple(version("big", n) for n in range(1, 401))
    deltas = {n: VersionDelta() for n in range(1, 401)}
    write_line(tmp_path, "big", versions, PackageRecord(base=("openssl 3 amd64",), versions=deltas))
    reader = subprocess.Popen(
        [sys.executable, "-m", "imagectl", "-C", str(tmp_path), "query", "package", "openssl",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert reader.stdout is not None
    assert reader.stderr is not None
    assert reader.stdout.read(100).startswith(b"{")
    reader.stdout.close()  # as head does after its lines
    errors = reader.stderr.read().decode()
    reader.stderr.close()
    assert reader.wait(timeout=60) == 0
    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors
