"""Withdrawing a version on the real engine and registry: restored pods stop landing on it at
once, its tag stays exactly as it was, a fix built on it takes the pods once published, and a
withdrawal beside a running build leaves one consistent lock."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import docker, imagectl
from .engine_helpers import busybox_repo, read_lock, remote, run_in
from .helpers import git_commit_all, write

pytestmark = pytest.mark.engine

BROKEN = (
    "# The pod's start-up script (broken: exits 1)\n"
    "RUN echo 'exit 1' > /start && echo three >> /applied\n"
)
STEPS = {
    "0001-one": "# Write one\nRUN echo one >> /applied\n",
    "0002-two": "# Write two\nRUN echo two >> /applied\n",
    "0003-three": BROKEN,
}
FIX = "# Fix the start-up script\nRUN echo 'exit 0' > /start && echo fix >> /applied\n"


def repo(tmp_path: Path, repo_name: str) -> Path:
    root = busybox_repo(tmp_path, repo_name, STEPS)
    for key, value in (("user.name", "Pat Ops"), ("user.email", "pat@example.org")):
        subprocess.run(["git", "config", key, value], cwd=root, check=True)
    return root


def resolved(root: Path, ref: str) -> tuple[str, str]:
    done = imagectl(root, "resolve", ref)
    assert done.code == 0, done.stderr
    return done.stdout.strip(), done.stderr


def test_withdraw_resolve_restore_and_fix_on_the_real_registry(
    tmp_path: Path, repo_name: str
) -> None:
    root = repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    assert imagectl(root, "publish", "-q", "line").code == 0
    lock = read_lock(root, repo_name)
    v2, v3 = lock.versions[1], lock.versions[2]
    assert resolved(root, f"{repo_name}:v1")[0] == f"{repo_name}:v3@{v3.digest}"
    registry_before = remote(v3.tag)
    local_before = docker("image", "inspect", "--format", "{{.Id}}", v3.tag)

    done = imagectl(root, "withdraw", "line", "v3", "--reason", "start-up script exits 1")
    assert done.code == 0, done.stderr
    assert "is the head of line" in done.stderr  # the fix goes on top of it
    # the tag and image are exactly as they were, in the registry and in the engine
    assert remote(v3.tag) == registry_before == (v3.digest, v3.image_id)
    assert docker("image", "inspect", "--format", "{{.Id}}", v3.tag) == local_before
    assert imagectl(root, "audit", "line").code == 0  # still checked, still as recorded

    # pods restored from older backups land on v2 at once, and are told why
    for ref in (f"{repo_name}:v1", f"{repo_name}@{lock.versions[0].digest}", v2.image_id):
        reference, said = resolved(root, ref)
        assert reference == f"{repo_name}:v2@{v2.digest}", ref
        assert "v3 of line is withdrawn (start-up script exits 1): passed over" in said
    data = json.loads(imagectl(root, "resolve", f"{repo_name}:v1", "--json").stdout)
    assert data["newest"] == 2
    assert [v["version"] for v in data["withdrawn_skipped"]] == [3]
    # a restored pod starts on what resolve answers: v2's file system, not the broken v3's
    assert run_in(reference, "cat", "/applied") == "one\ntwo"
    # a backup taken on v3 itself has nowhere better to go: v3, with a warning
    reference, said = resolved(root, f"{repo_name}:v3")
    assert reference == f"{repo_name}:v3@{v3.digest}"
    assert "no version built on it is kept" in said
    assert "v3 withdrawn by Pat Ops <pat@example.org>" in imagectl(root, "history", "line").stdout

    # the fix is the next version, built FROM v3 as always; published, it takes every pod
    write(root / "increments" / "line" / "0004-fix.Dockerfile.j2", FIX)
    git_commit_all(root, "fix")
    built = imagectl(root, "build", "next", "line")
    assert built.code == 0, built.stderr
    assert "v3 is withdrawn (start-up script exits 1); v4 is built on it" in built.stderr
    assert read_lock(root, repo_name).versions[3].parent == f"{repo_name}:v3@{v3.digest}"
    assert resolved(root, f"{repo_name}:v1")[0] == f"{repo_name}:v2@{v2.digest}"  # unpublished
    assert imagectl(root, "publish", "-q", "line").code == 0
    v4 = read_lock(root, repo_name).versions[3]
    for ref in (f"{repo_name}:v1", f"{repo_name}:v3"):
        reference, said = resolved(root, ref)
        assert reference == f"{repo_name}:v4@{v4.digest}"
        assert "withdrawn" not in said
    assert run_in(reference, "cat", "/applied") == "one\ntwo\nthree\nfix"
    assert run_in(reference, "sh", "/start") == ""  # exits 0 (run_in checks)
    assert remote(v3.tag) == registry_before


def test_with_build_on_kept_the_fix_forks_the_chain_and_the_reference_follows(
    tmp_path: Path, repo_name: str
) -> None:
    root = repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    assert imagectl(root, "withdraw", "line", "3", "--reason", "broken start").code == 0
    with (root / "images" / "line.toml").open("a") as handle:
        handle.write('[withdraw]\nbuild_on = "kept"\n')
    write(root / "increments" / "line" / "0004-fix.Dockerfile.j2", FIX)
    git_commit_all(root, "fork")
    plan = imagectl(root, "plan", "line")
    assert f"v4  increments/line/0004-fix.Dockerfile.j2  FROM {repo_name}:v2" in plan.stdout
    assert "! v3 is withdrawn (broken start)" in plan.stdout
    built = imagectl(root, "build", "next", "line")
    assert built.code == 0, built.stderr
    # v4 is v2 plus the fix: increment 3 is not in it
    assert run_in(f"{repo_name}:v4", "cat", "/applied") == "one\ntwo\nfix"
    reference = (root / "lock" / "line.reference.Dockerfile").read_text()
    assert "FROM v2 AS v4" in reference
    assert "the chain forks here" in reference
    history = imagectl(root, "history", "line").stdout
    assert "v4 is built on v2, not on v3" in history
    verified = imagectl(root, "verify", "line", "-q")  # the reference rebuilt from scratch
    assert verified.code == 0, verified.stdout + verified.stderr


def test_withdraw_waits_for_a_running_build_and_both_are_recorded(
    tmp_path: Path, repo_name: str
) -> None:
    root = repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0  # v1
    write(
        root / "increments" / "line" / "0002-two.Dockerfile.j2",
        f"# Slow (never cached: {repo_name})\nRUN sleep 3 && echo {repo_name} >> /applied\n",
    )
    git_commit_all(root, "slow")
    with subprocess.Popen(
        [sys.executable, "-m", "imagectl", "-C", str(root), "build", "next", "line"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as build:
        assert build.stderr is not None
        for line in build.stderr:  # the build holds the repository lock from here on
            if "building v2" in line:
                break
        withdrawal = imagectl(root, "withdraw", "line", "1", "--reason", "bad", "--wait", "120")
        build.communicate(timeout=300)
    assert build.returncode == 0
    assert withdrawal.code == 0, withdrawal.stderr
    lock = read_lock(root, repo_name)
    assert [v.version for v in lock.versions] == [1, 2]
    assert (lock.versions[0].withdrawn, lock.versions[1].withdrawn) == (True, False)
    assert lock.versions[0].withdrawn_at >= lock.versions[1].built_at  # it waited its turn


def test_withdraw_while_another_command_holds_the_lock_records_nothing(
    tmp_path: Path, repo_name: str
) -> None:
    root = repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0
    path = root / "lock" / "line.lock.toml"
    before = path.read_bytes()
    with (root / ".imagectl" / "build.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = imagectl(root, "withdraw", "line", "1", "--reason", "bad")
    assert done.code == 1
    assert "another imagectl build or publish is running" in done.stderr
    assert path.read_bytes() == before
