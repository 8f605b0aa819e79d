"""Nothing left behind after a kill: the containers a SIGKILLed imagectl made (its `finally`
never ran) are removed by the next command that takes the repository's lock, which says so;
containers of imagectl processes that still run are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagectl.core.owners import owner_gone, owner_of

from .conftest import docker, imagectl
from .engine_helpers import busybox_repo, kill_when_paused
from .helpers import write

pytestmark = pytest.mark.engine


def imagectl_containers() -> list[dict[str, str]]:
    """Every container with imagectl's labels: id, state and the labels."""
    out = docker("ps", "-a", "--no-trunc", "--filter", "label=imagectl.owner",
                 "--format", "{{json .}}")  # fmt: skip
    found = []
    for line in out.splitlines():
        entry = json.loads(line)
        labels = dict(item.partition("=")[::2] for item in entry["Labels"].split(","))
        found.append({"id": entry["ID"], "state": entry["State"], **labels})
    return found


def leftovers() -> list[dict[str, str]]:
    """The containers whose imagectl process is gone (other tests' live ones excluded)."""
    return [c for c in imagectl_containers() if owner_gone(c["imagectl.owner"])]


def owned_by(pid: int) -> list[dict[str, str]]:
    return [c for c in imagectl_containers() if c["imagectl.owner"] == owner_of(pid)]


def pod_repo(tmp_path: Path, repo_name: str) -> Path:
    """A line whose v1 is a pod (its command runs until stopped) with a start-up test."""
    root = busybox_repo(tmp_path, repo_name, {"0001-pod": '# a pod\nCMD ["sleep", "3600"]\n'})
    write(root / "increments" / "line" / "0001-pod.start-test.sh", "true\n")
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "start-up test"], check=True)
    return root


def test_a_build_killed_in_the_package_reader_leaves_no_container(
    tmp_path: Path, repo_name: str
) -> None:
    """Protection: the sweep after the lock. Without it the reader's created container stays,
    and `docker rmi` of the version is refused while it exists."""
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "# one\nRUN echo one > /one\n"})
    env = {"IMAGECTL_LAYER_READS": "off"}  # the container reader, as on a remote engine
    kill_when_paused(root, ("build", "next"), "in-package-reader", env)
    (left,) = leftovers()
    assert (left["imagectl.purpose"], left["state"]) == ("package reader", "created")

    rerun = imagectl(root, "build", "next", env=env)
    assert rerun.code == 0, rerun.stderr
    assert f"removed a leftover package reader container {left['id'][:12]}" in rerun.stderr
    assert leftovers() == []
    removed = subprocess.run(["docker", "rmi", "--no-prune", f"{repo_name}:v1"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert removed.returncode == 0, removed.stderr


def test_a_build_killed_in_a_start_up_test_leaves_no_running_pod(
    tmp_path: Path, repo_name: str
) -> None:
    """The pod of a start-up test runs the image's entrypoint: killed there, imagectl would
    leave it running (on a pod image: init and sshd) until the next command removes it."""
    root = pod_repo(tmp_path, repo_name)
    kill_when_paused(root, ("build", "next"), "in-start-test")
    (left,) = leftovers()
    assert (left["imagectl.purpose"], left["state"]) == ("start-up test", "running")

    rerun = imagectl(root, "build", "next")
    assert rerun.code == 0, rerun.stderr
    assert f"removed a leftover start-up test container {left['id'][:12]}" in rerun.stderr
    assert leftovers() == []


def test_containers_of_a_running_imagectl_are_left_alone(tmp_path: Path, repo_name: str) -> None:
    """Only owners that are gone are swept: a build that runs now keeps its test pod."""
    root = pod_repo(tmp_path, repo_name)
    other = busybox_repo(tmp_path / "other", f"{repo_name}-other", {"0001-x": "# x\nRUN true\n"})
    with subprocess.Popen(
        [sys.executable, "-m", "imagectl", "-C", str(root), "build", "next"],
        env={**os.environ, "IMAGECTL_PAUSE_AT": "in-start-test"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    ) as paused:  # fmt: skip
        try:
            assert paused.stderr is not None
            for line in paused.stderr:
                if "imagectl: paused at in-start-test" in line:
                    break
            (running,) = owned_by(paused.pid)
            swept = imagectl(other, "build", "next")
            assert swept.code == 0, swept.stderr
            assert "leftover" not in swept.stderr
            assert [c["id"] for c in owned_by(paused.pid)] == [running["id"]]
        finally:
            paused.kill()
    again = imagectl(root, "build", "next")
    assert again.code == 0, again.stderr
    assert f"removed a leftover start-up test container {running['id'][:12]}" in again.stderr
    assert owned_by(paused.pid) == []


def test_sigterm_in_a_start_up_test_removes_the_pod_at_once(tmp_path: Path, repo_name: str) -> None:
    """A cancelled CI job sends SIGTERM first: imagectl unwinds as on Ctrl-C, its `finally`
    removes the pod, and it exits 143 with nothing recorded (no rerun needed to clean up)."""
    root = pod_repo(tmp_path, repo_name)
    with subprocess.Popen(
        [sys.executable, "-m", "imagectl", "-C", str(root), "build", "next"],
        env={**os.environ, "IMAGECTL_PAUSE_AT": "in-start-test"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    ) as paused:  # fmt: skip
        assert paused.stderr is not None
        for line in paused.stderr:
            if "imagectl: paused at in-start-test" in line:
                break
        assert len(owned_by(paused.pid)) == 1
        paused.terminate()
        rest = paused.stderr.read()
        assert paused.wait(timeout=60) == 143, rest
    assert "imagectl: terminated; nothing half-recorded" in rest
    assert owned_by(paused.pid) == []
    assert not (root / "lock" / "line.lock.toml").exists()
