"""`verify` as a CI gate on the real engine: a faithful apt + pip line is clean, a file that
changes on every build is drift even with every layer in the local cache, every difference is
listed, `[verify] ignore` silences what a line declares; pip packages in `diff` and `history`;
the scheduled job's script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import BUSYBOX, DEBIAN, ROOT, docker, imagectl
from .engine_helpers import busybox_repo
from .helpers import git_commit_all, git_init, make_line, write

pytestmark = pytest.mark.engine

WHEEL = next((ROOT / "increments" / "pod-noble" / "0005-notebook-venv" / "wheels").glob("*.whl"))


def debian_line(tmp_path: Path, repo_name: str, first_increment: str) -> Path:
    """A repository with one line on the Debian base, its first increment `first_increment`."""
    root = tmp_path / "repo"
    make_line(
        root, "line", repository=repo_name, base=DEBIAN, increments={"0001-x": first_increment}
    )
    return root


@pytest.mark.debian
def test_an_apt_and_pip_line_verifies_clean_and_shows_its_pip_packages(
    tmp_path: Path, repo_name: str
) -> None:
    root = debian_line(
        tmp_path,
        repo_name,
        "# Python, venv and apt's six\nARG DEBIAN_FRONTEND=noninteractive\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends python3-venv "
        "python3-six && rm -rf /var/lib/apt/lists/*\n",
    )
    folder = root / "increments" / "line" / "0002-venv"
    (folder / "wheels").mkdir(parents=True)
    shutil.copy(WHEEL, folder / "wheels")
    # pip compiles byte code (timestamps inside): what every faithful rebuild differs in
    write(
        folder / "Dockerfile.j2",
        "# A venv with a wheel from this folder, no index\n"
        "RUN --mount=type=bind,source=wheels,target=/tmp/wheels python3 -m venv /opt/app "
        "&& /opt/app/bin/pip install --no-index /tmp/wheels/*.whl\n",
    )
    git_init(root)
    built = imagectl(root, "build", "next", "--all", "-q")
    assert built.code == 0, built.stderr

    result = imagectl(root, "verify", "line", "-q", "--json")
    assert result.code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["drift"] is False
    assert report["files"] == {"missing": [], "extra": [], "different": []}
    assert report["ignored"]["by_pattern"]["/**/__pycache__"] > 0
    assert report["ignored"]["by_pattern"]["/var/log/dpkg.log"] == 1
    assert report["ignored"]["total"] == sum(report["ignored"]["by_pattern"].values())
    human = imagectl(root, "verify", "line", "-q")
    assert human.code == 0
    assert "matches v2; " in human.stdout
    assert "differences ignored, not drift (/**/__pycache__ " in human.stdout

    diff = json.loads(imagectl(root, "diff", "line", "1", "2", "--json").stdout)
    pips = {entry["name"]: entry for entry in diff["added"]}
    assert pips["traitlets"]["kind"] == "pip"
    assert pips["traitlets"]["location"] == "/opt/app/lib/python3.11/site-packages"
    assert {e["kind"] for e in diff["added"]} == {"pip"}
    assert "  + traitlets " in imagectl(root, "diff", "line", "1", "2").stdout
    history = json.loads(imagectl(root, "history", "line", "--json").stdout)
    v1 = history[0]["package_changes"]["added"]
    # apt's six (with its egg-info in dist-packages) is a deb, once; pip's six never shows
    assert [e["kind"] for e in v1 if "six" in e["name"]] == ["deb"]
    assert history[1]["packages"]["by_kind"]["pip"]["added"] == len(diff["added"])
    assert "(pip +" in imagectl(root, "history", "line").stdout


@pytest.mark.debian
def test_an_apt_line_that_keeps_apts_caches_verifies_clean(tmp_path: Path, repo_name: str) -> None:
    """apt-get update rewrites /var/cache/apt/pkgcache.bin and srcpkgcache.bin on every run: a
    faithful rebuild of a line that keeps them is not drift. Docker's docs have a line remove the
    base's docker-clean (which turns the caches off) to use a cache mount for apt."""
    root = debian_line(
        tmp_path,
        repo_name,
        "# apt's lists and caches kept\nARG DEBIAN_FRONTEND=noninteractive\n"
        "RUN rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update "
        "&& apt-get install -y --no-install-recommends less\n",
    )
    git_init(root)
    built = imagectl(root, "build", "next", "-q")
    assert built.code == 0, built.stderr
    caches = docker("run", "--rm", f"{repo_name}:v1", "ls", "/var/cache/apt")
    assert "pkgcache.bin" in caches.split()  # what this test is about is in the image

    result = imagectl(root, "verify", "line", "-q", "--json")
    assert result.code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["drift"] is False
    assert report["ignored"]["by_pattern"]["/var/cache/apt/*.bin"] >= 1


def test_a_stamp_is_drift_even_with_every_layer_in_the_local_cache(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {"0001-stamp": "# Stamp the build\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n"},
    )
    assert imagectl(root, "build", "next", "-q").code == 0
    # The reference built the way a cache-using verify would: BuildKit takes v1's layer.
    cached = f"{repo_name}-cached:1"
    docker("buildx", "build", "-q", "--load", "-t", cached, "-f",
           str(root / "lock" / "line.reference.Dockerfile"), str(root))  # fmt: skip
    stamp = docker("run", "--rm", f"{repo_name}:v1", "cat", "/stamp")
    assert docker("run", "--rm", cached, "cat", "/stamp") == stamp  # every layer was in cache

    result = imagectl(root, "verify", "line", "-q", "--json")
    assert result.code == 3, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["files"]["different"] == [{"path": "stamp", "kind": "content"}]
    human = imagectl(root, "verify", "line", "-q")
    assert human.code == 3
    assert "DRIFT" in human.stdout
    assert "  ! /stamp differs (content)" in human.stdout
    assert docker("image", "ls", "-q", "imagectl-verify/*") == ""


def test_sixty_differences_are_all_listed_and_ignore_silences_them(
    tmp_path: Path, repo_name: str
) -> None:
    generate = (
        "RUN mkdir /gen && for i in $(seq 1 60); do "
        "cat /proc/sys/kernel/random/uuid > /gen/f$i; done\n"
    )
    root = busybox_repo(tmp_path, repo_name, {"0001-generated": f"# Generated\n{generate}"})
    assert imagectl(root, "build", "next", "-q").code == 0
    result = imagectl(root, "verify", "line", "-q", "--json")
    assert result.code == 3
    different = json.loads(result.stdout)["files"]["different"]
    assert sorted(d["path"] for d in different) == sorted(f"gen/f{i}" for i in range(1, 61))
    assert {d["kind"] for d in different} == {"content"}
    human = imagectl(root, "verify", "line", "-q").stdout
    assert "different 60" in human
    assert human.count(" ! /gen/f") == 20
    assert "... and 40 more (--json lists them all)" in human

    line_file = root / "images" / "line.toml"
    line_file.write_text(line_file.read_text() + '[verify]\nignore = ["/gen/*"]\n')
    git_commit_all(root, "the generated files change on every build")
    # [verify] is no input of any build: changing it is not drift
    assert imagectl(root, "build", "next").stdout.strip() == "line: up to date, nothing to build"
    assert imagectl(root, "plan").code == 0
    quiet = imagectl(root, "verify", "line", "-q", "--json")
    assert quiet.code == 0, quiet.stdout + quiet.stderr
    report = json.loads(quiet.stdout)
    assert report["drift"] is False
    assert report["ignored"] == {"total": 60, "by_pattern": {"/gen/*": 60}}
    assert report["ignore"][-1] == "/gen/*"


def test_the_scheduled_job_fails_loudly_on_drift(tmp_path: Path, repo_name: str) -> None:
    try:
        run_the_scheduled_job(tmp_path, repo_name)
    finally:  # the lines' repositories are below the fixture's, which removes only its own
        listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
        for tag in listed.split():
            if tag.startswith(f"{repo_name}/"):
                docker("rmi", "--no-prune", tag, check=False)


def run_the_scheduled_job(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(
        tmp_path,
        f"{repo_name}/clean",
        {"0001-stable": "# Stable\nRUN echo stable > /stable\n"},
    )
    make_line(
        root,
        "stamped",
        repository=f"{repo_name}/stamped",
        base=BUSYBOX,
        increments={"0001-stamp": "# Stamp\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n"},
    )
    make_line(root, "unbuilt", repository=f"{repo_name}/unbuilt", base=BUSYBOX)
    git_commit_all(root, "more lines")
    assert imagectl(root, "build", "next", "-q", "line", "stamped").code == 0
    summary = tmp_path / "summary.md"
    done = subprocess.run(
        [str(ROOT / "ci" / "verify"), str(tmp_path / "reports")],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)},
        check=False,
        timeout=600,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "::error title=imagectl verify: stamped drifted::| stamped | DRIFT v1 |" in done.stdout
    assert "line drifted" not in done.stdout
    table = summary.read_text()
    assert "| line | matches v1 | packages +0 -0 ~0, files missing 0, extra 0, different 0;" in (
        table
    )
    assert "| stamped | DRIFT v1 | packages +0 -0 ~0, files missing 0, extra 0, different 1;" in (
        table
    )
    assert "| unbuilt | not built yet | - |" in table
    report = json.loads((tmp_path / "reports" / "stamped.json").read_text())
    assert report["files"]["different"] == [{"path": "stamp", "kind": "content"}]
    # The same from the CLI alone, with a line that cannot be verified: the others still run.
    make_line(
        root,
        "lost",
        repository=f"{repo_name}/lost",
        base=BUSYBOX,
        increments={"0001-lost": f"# Lost\nRUN echo {repo_name} > /lost\n"},
    )
    git_commit_all(root, "a line whose image goes away")
    assert imagectl(root, "build", "next", "-q", "lost").code == 0
    docker("rmi", f"{repo_name}/lost:v1")  # unpublished: neither engine nor registry has it
    every = imagectl(root, "verify", "--all", "--json", "-q")
    assert every.code == 3, every.stderr
    summary_json = json.loads(every.stdout)
    states = {entry["line"]: entry["state"] for entry in summary_json["lines"]}
    assert states == {
        "line": "matches",
        "lost": "failed",
        "stamped": "drift",
        "unbuilt": "not built",
    }
    assert (summary_json["drift"], summary_json["failed"]) == (["stamped"], ["lost"])
    lost = next(entry for entry in summary_json["lines"] if entry["line"] == "lost")
    assert "neither in the engine nor" in lost["error"]["error"]
    text = imagectl(root, "verify", "--all", "line")
    assert text.code == 1  # a line and --all: refused
    assert "one LINE or --all" in text.stderr
