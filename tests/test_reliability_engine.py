"""Crash safety, concurrency and credential hygiene on the real engine and registry.

Beyond test_build_engine.py and test_publish_engine.py: `build next --all` and `publish` killed
with SIGKILL at several points, then rerun; two publishes at once; and registry credentials in
docker's config that must never reach imagectl's output, the lockfile or any file it writes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagectl.errors import LockfileError

from .conftest import REGISTRY, docker, image_id, imagectl
from .engine_helpers import (
    assert_lock_matches_registry,
    busybox_repo,
    layers,
    read_lock,
    remote,
    run_in,
)

pytestmark = pytest.mark.engine

MARKER = "SECRET-MARKER-123"


def fresh_steps() -> dict[str, str]:
    """Three increments that each append a line to /applied; v2 takes two seconds.

    The nonce makes v1 (and so every later layer) new to the build cache, so each test really
    builds, and the kill lands where it is meant to.
    """
    return {
        "0001-one": f"# Write one\nRUN echo one >> /applied # {uuid.uuid4().hex}\n",
        "0002-two": "# Write two, slowly\nRUN sleep 2 && echo two >> /applied\n",
        "0003-three": "# Write three\nRUN echo three >> /applied\n",
    }


def local_tags(repo_name: str) -> dict[str, str]:
    """Every local tag of the repository and the image it names."""
    listing = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repo_name)
    return {tag: image_id(tag) for tag in listing.split()}


def kill_at(
    root: Path, args: tuple[str, ...], marker: str, env: dict[str, str] | None = None
) -> str:
    """Run imagectl; SIGKILL it and all it started the moment `marker` shows on its stderr.

    Returns the stderr seen up to then. The marker must appear: a run that ends without it did
    not test what the caller meant.
    """
    seen: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "imagectl", "-C", str(root), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: the kill takes docker's children too
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if marker in line:
                os.killpg(process.pid, signal.SIGKILL)
                break
        else:
            process.wait()
            raise AssertionError(f"{marker!r} never appeared:\n{''.join(seen)}")
        assert process.wait() == -signal.SIGKILL
    return "".join(seen)


def assert_consistent(root: Path, repo_name: str) -> list[int]:
    """The lock parses, and every version it records is in the engine under its tag."""
    lock = read_lock(root, repo_name)  # raises LockfileError on a torn or corrupt lock
    versions = [v.version for v in lock.versions]
    assert versions == list(range(1, len(versions) + 1))
    for version in lock.versions:
        assert docker("image", "inspect", "--format", "{{.Id}}", version.image_id) == (
            version.image_id
        )
        assert image_id(version.tag) == version.image_id, version.tag
    return versions


@dataclass(frozen=True)
class KillPoint:
    id: str
    marker: str  # {repo} is filled in
    recorded: tuple[int, int]  # how many versions the lock may record at the kill (min, max)
    builder: str = "buildx"


KILL_POINTS = [
    KillPoint("as-v1-starts", "line: building v1 ", (0, 1)),
    # v2's RUN sleeps 2 s: the kill lands inside it, with v1 recorded and v2 not
    KillPoint("inside-the-run-of-v2", "sleep 2 && echo two", (1, 1)),
    KillPoint("inside-the-run-of-v2-legacy-builder", "sleep 2 && echo two", (1, 1), "legacy"),
    # "tagged" is said after the lock is written, so v1 is recorded; v2 cannot be yet
    KillPoint("right-after-tagged-v1", "line: tagged {repo}:v1 ", (1, 1)),
    KillPoint("right-after-tagged-v2", "line: tagged {repo}:v2 ", (2, 3)),
    KillPoint("as-v3-starts", "line: building v3 ", (2, 3)),
]


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_sigkill_during_build_then_rerun_completes_without_reapplying(
    tmp_path: Path, repo_name: str, point: KillPoint
) -> None:
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    env = {"IMAGECTL_BUILDER": point.builder}
    kill_at(root, ("build", "next", "--all"), point.marker.format(repo=repo_name), env)

    recorded = assert_consistent(root, repo_name)
    low, high = point.recorded
    assert low <= len(recorded) <= high, recorded
    before = local_tags(repo_name)  # recorded, and perhaps one tagged but not yet recorded
    assert {f"{repo_name}:v{n}" for n in recorded} <= set(before)

    rerun = imagectl(root, "build", "next", "--all", env=env)
    assert rerun.code == 0, rerun.stderr
    assert assert_consistent(root, repo_name) == [1, 2, 3]
    after = local_tags(repo_name)
    for tag, image in before.items():
        assert after[tag] == image, f"{tag} was overwritten"
    lock = read_lock(root, repo_name)
    for version in lock.versions[1:]:
        assert version.parent == f"{repo_name}:v{version.version - 1}"
    for older, newer in ((1, 2), (2, 3)):
        parent = layers(f"{repo_name}:v{older}")
        assert layers(f"{repo_name}:v{newer}")[: len(parent)] == parent
    assert run_in(f"{repo_name}:v2", "cat", "/applied").split() == ["one", "two"]
    assert run_in(f"{repo_name}:v3", "cat", "/applied").split() == ["one", "two", "three"]
    again = imagectl(root, "build", "next", "--all")
    assert again.code == 0, again.stderr
    assert "up to date" in again.stdout
    assert local_tags(repo_name) == after


def test_sigkill_right_after_pushing_v1_then_rerun_publishes_the_rest(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    built = local_tags(repo_name)
    kill_at(root, ("publish",), f"pushing {repo_name}:v1")

    assert assert_consistent(root, repo_name) == [1, 2, 3]
    for version in read_lock(root, repo_name).versions:
        if version.digest:  # whatever was recorded is what the registry has
            assert remote(version.tag) == (version.digest, version.image_id)
    rerun = imagectl(root, "publish", "--json", "-q")
    assert rerun.code == 0, rerun.stderr
    actions = [(p["version"], p["action"]) for p in json.loads(rerun.stdout)["published"]]
    assert [version for version, _ in actions][-2:] == [2, 3]
    assert all(action in ("pushed", "recorded") for _, action in actions)
    assert_lock_matches_registry(root, repo_name, 3)
    assert local_tags(repo_name) == built
    third = imagectl(root, "publish")
    assert third.code == 0, third.stderr
    assert "nothing to publish" in third.stdout


def test_two_publishes_at_once_never_corrupt_the_lock(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    command = [sys.executable, "-m", "imagectl", "-C", str(root), "publish", "-q"]
    reads = 0
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as a,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as b,
    ):
        # while both run, every read of the lock sees a whole file (old or new), never a torn one
        while a.poll() is None or b.poll() is None:
            try:
                read_lock(root, repo_name)
            except LockfileError as exc:  # the failure tested for
                raise AssertionError(f"a reader saw a corrupt lock: {exc}") from exc
            reads += 1
            time.sleep(0.01)
        out_a, err_a = a.communicate(timeout=300)
        out_b, err_b = b.communicate(timeout=300)
    assert reads > 0
    outcomes = [(a.returncode, out_a, err_a), (b.returncode, out_b, err_b)]
    assert any(code == 0 for code, _, _ in outcomes), outcomes
    for code, _out, err in outcomes:
        assert code in (0, 1), outcomes
        assert "Traceback" not in err
        if code == 1:
            assert "another imagectl build or publish is running" in err, err
            assert len(err.strip().splitlines()) == 1, err
    assert_lock_matches_registry(root, repo_name, 3)
    third = imagectl(root, "publish")
    assert third.code == 0, third.stderr
    assert "nothing to publish" in third.stdout


def test_registry_credentials_never_reach_output_lock_or_files(
    tmp_path: Path, repo_name: str
) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"user:{MARKER}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": auth}}}))
    env = {"DOCKER_CONFIG": str(config)}
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    secrets = (MARKER, auth, f"user:{MARKER}")

    outputs: list[str] = []
    for args in (
        ("build", "next"),
        ("build", "next", "--all", "--json"),
        ("publish",),
        ("publish", "--json"),
        ("history", "line"),
        ("history", "line", "--json"),
        ("plan", "--json"),
        ("squash",),
        ("resolve", f"{repo_name}:v1", "--json"),
    ):
        result = imagectl(root, *args, env=env)
        assert result.code == 0, f"{args}: {result.stderr}"
        outputs.append(f"$ imagectl {' '.join(args)}\n{result.stdout}\n{result.stderr}")
    # the runs did go through this docker config (buildx keeps its state beside it) ...
    assert (config / "buildx").is_dir()
    # ... and published with it
    assert_lock_matches_registry(root, repo_name, 3)

    for text in outputs:
        for secret in secrets:
            assert secret not in text, text
    written = [path for path in root.rglob("*") if path.is_file()]
    assert root / "lock" / "line.lock.toml" in written
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, path
    for version in read_lock(root, repo_name).versions:
        described = docker("image", "inspect", version.tag) + docker(
            "history", "--no-trunc", version.tag
        )
        for secret in secrets:
            assert secret not in described, version.tag
