"""Verify's pure parts: the ignore list, [verify] in the line file, the report and its output."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.app.results.verify import VerifyReport
from imagectl.app.verifier import check_from_scratch, ignore_patterns
from imagectl.commands.build import verify_text
from imagectl.core.config import RepositoryLayout, load_lines
from imagectl.core.errors import ConfigError, PlanError
from imagectl.core.ignores import DEFAULT_IGNORE, Ignored, check_pattern, matching, split_ignored
from imagectl.core.linestate import LineState
from imagectl.core.model import Lock
from imagectl.core.packages import diff_manifests
from imagectl.core.rendercache import line_inputs
from imagectl.core.trees import TreeDiff

from .helpers import locked_version, write

GOOD = 'repository = "localhost:5000/pods/x"\nbase = "localhost:5000/busybox:latest"\n'


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("usr/lib/python3/dist-packages/six/__pycache__/six.cpython-311.pyc", "/**/__pycache__"),
        ("__pycache__/x.pyc", "/**/__pycache__"),
        ("opt/app/lib/old.pyc", "/**/*.pyc"),
        ("var/log/dpkg.log", "/var/log/dpkg.log"),
        ("var/log/apt/history.log", "/var/log/apt/*"),
        ("var/log/apt/eipp.log.xz", "/var/log/apt/*"),
        ("var/cache/ldconfig/aux-cache", "/var/cache/ldconfig/aux-cache"),
        ("var/cache/debconf/templates.dat-old", "/var/cache/debconf/*-old"),
        ("var/cache/apt/pkgcache.bin", "/var/cache/apt/*.bin"),
        ("var/cache/apt/srcpkgcache.bin", "/var/cache/apt/*.bin"),
        (
            "var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_InRelease",
            "/var/lib/apt/lists/*",
        ),
        ("var/lib/apt/lists/partial", "/var/lib/apt/lists/*"),
        ("etc/machine-id", "/etc/machine-id"),
        ("tmp/build/x", "/tmp/*"),
    ],
)
def test_the_default_list_covers_what_every_build_rewrites(path: str, pattern: str) -> None:
    assert matching(path, DEFAULT_IGNORE) == pattern


@pytest.mark.parametrize(
    "path",
    [
        "stamp",
        "var/log/app.log",
        "var/cache/debconf/templates.dat",
        "var/cache/apt/archives/partial",
        "etc/machine-id.d",
        "tmp",  # the folder itself is compared, only what it holds is not
        "usr/lib/python3/dist-packages/six.py",
        "var/log/apt",
    ],
)
def test_the_default_list_leaves_the_rest_alone(path: str) -> None:
    assert matching(path, DEFAULT_IGNORE) == ""


def test_globs_match_from_the_image_root() -> None:
    assert matching("stamp", ("/stamp",)) == "/stamp"
    assert matching("opt/stamp", ("/stamp",)) == ""  # anchored at the root
    assert matching("opt/app/build-info/at", ("/opt/app/build-info/*",)) == "/opt/app/build-info/*"
    assert matching("opt/app/build-info", ("/opt/app/build-info/*",)) == ""
    assert matching("opt/app/build-info/a/b", ("/opt/app/build-info",)) != ""  # below a folder
    assert matching("opt/x/y/z.log", ("/opt/**/*.log",)) == "/opt/**/*.log"
    assert matching("opt/z.log", ("/opt/**/*.log",)) == "/opt/**/*.log"
    assert matching("opt/a/b", ("/opt/**",)) == "/opt/**"
    assert matching("opt/a.b", ("/opt/a?b",)) == "/opt/a?b"
    assert matching("opt/a/b", ("/opt/a?b",)) == ""  # ? never matches /
    assert matching("opt/a+b", ("/opt/a+b",)) == "/opt/a+b"  # regex characters are literal


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("stamp", "image root"), ("/", "image root"), ("/a//b", "empty"), ("/a**/b", "whole path")],
)
def test_bad_patterns_say_why(pattern: str, reason: str) -> None:
    assert reason in check_pattern(pattern)


def test_split_counts_ignored_differences_by_pattern() -> None:
    diff = TreeDiff(
        missing=("tmp/a",),
        extra=("stamp", "var/log/apt/term.log"),
        different=(
            ("usr/lib/x/__pycache__/a.pyc", "content"),
            ("usr/lib/x/__pycache__/b.pyc", "content"),
            ("etc/app.conf", "mode"),
        ),
    )
    drift, ignored = split_ignored(diff, DEFAULT_IGNORE)
    assert drift == TreeDiff(extra=("stamp",), different=(("etc/app.conf", "mode"),))
    assert ignored.counts == (("/**/__pycache__", 2), ("/var/log/apt/*", 1), ("/tmp/*", 1))
    assert ignored.to_json() == {
        "total": 4,
        "by_pattern": {"/**/__pycache__": 2, "/var/log/apt/*": 1, "/tmp/*": 1},
    }
    drift, ignored = split_ignored(diff, (*DEFAULT_IGNORE, "/stamp", "/etc/*.conf"))
    assert drift.empty
    assert ignored.total == 6


def line_file(tmp_path: Path, text: str) -> RepositoryLayout:
    write(tmp_path / "images" / "x.toml", GOOD + text)
    return RepositoryLayout(root=tmp_path)


def test_a_line_adds_its_own_patterns_after_the_defaults(tmp_path: Path) -> None:
    (line,) = load_lines(
        line_file(tmp_path, '[verify]\nignore = ["/stamp", "/opt/app/build-info/*"]\n')
    )
    assert line.verify_ignore == ("/stamp", "/opt/app/build-info/*")
    assert ignore_patterns(line) == (*DEFAULT_IGNORE, "/stamp", "/opt/app/build-info/*")
    (plain,) = load_lines(line_file(tmp_path, ""))
    assert ignore_patterns(plain) == DEFAULT_IGNORE


def test_verify_settings_are_not_an_input_of_any_build(tmp_path: Path) -> None:
    (plain,) = load_lines(line_file(tmp_path, ""))
    (ignoring,) = load_lines(line_file(tmp_path, '[verify]\nignore = ["/stamp"]\n'))
    assert line_inputs(plain) == line_inputs(ignoring)  # the render cache key, the drift hashes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("verify = 3\n", r"\[verify\] must be a table"),
        ("[verify]\nskip = []\n", "unknown key skip"),
        ('[verify]\nignore = "/stamp"\n', "must be a list of strings"),
        ("[verify]\nignore = [1]\n", "must be a list of strings"),
        ('[verify]\nignore = ["stamp"]\n', "'stamp': patterns match from the image root"),
    ],
)
def test_bad_verify_tables_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_lines(line_file(tmp_path, text))
    assert "images/x.toml" in str(info.value)


def report(files: TreeDiff, ignored: Ignored | None = None) -> VerifyReport:
    return VerifyReport(
        line="x",
        version=4,
        packages=diff_manifests((), ()),
        files=files,
        same_layers=False,
        ignored=ignored or Ignored(),
        ignore=DEFAULT_IGNORE,
    )


def test_output_shows_20_of_each_kind_and_json_all_of_them() -> None:
    different = tuple((f"srv/f{n:02d}", "content") for n in range(60))
    found = report(TreeDiff(different=different), Ignored(counts=(("/**/__pycache__", 2358),)))
    text = verify_text(found)
    assert "different 60" in text
    assert "2,358 differences ignored, not drift (/**/__pycache__ 2,358)" in text
    assert text.count(" ! /srv/f") == 20
    assert "... and 40 more (--json lists them all)" in text
    data = found.to_json()
    assert data["drift"] is True
    assert data["files"]["different"][59] == {"path": "srv/f59", "kind": "content"}  # type: ignore[index]
    assert len(data["files"]["different"]) == 60  # type: ignore[index]
    assert data["ignored"] == {"total": 2358, "by_pattern": {"/**/__pycache__": 2358}}


def test_a_match_says_how_much_was_ignored() -> None:
    clean = report(TreeDiff(), Ignored(counts=(("/var/log/dpkg.log", 1),)))
    assert not clean.drift
    assert verify_text(clean) == (
        "x: the reference rebuilt from scratch matches v4; 1 difference ignored, not drift "
        "(/var/log/dpkg.log 1)"
    )
    assert verify_text(report(TreeDiff())) == "x: the reference rebuilt from scratch matches v4"


def test_a_reference_on_the_line_itself_is_not_from_scratch(tmp_path: Path) -> None:
    (line,) = load_lines(line_file(tmp_path, ""))
    own = f"{line.repository}:v1@sha256:{'a' * 64}"
    helper = f"localhost:5000/busybox:latest@sha256:{'b' * 64}"
    lock = Lock(
        line="x",
        repository=line.repository,
        base=line.base,
        versions=(locked_version(1, images=(helper,)), locked_version(2, images=(own,))),
    )
    state = LineState(line=line, increments=(), lock=lock, lock_path=tmp_path / "x.lock.toml")
    with pytest.raises(PlanError, match="an image of the line itself"):
        check_from_scratch(state)
    fine = Lock(line="x", repository=line.repository, base=line.base, versions=lock.versions[:1])
    check_from_scratch(LineState(line=line, increments=(), lock=fine, lock_path=state.lock_path))
