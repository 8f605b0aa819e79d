"""Helpers for tests on the real engine: small busybox lines and what they built."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imagectl.core import lockfile
from imagectl.core.model import Lock

from .conftest import BUSYBOX, docker, image_id
from .helpers import git_init, make_line

STEPS = {
    "0001-one": "# Write one\nRUN echo one >> /applied\n",
    "0002-two": "# Write two\nRUN echo two >> /applied\n",
    "0003-three": "# Write three\nRUN echo three >> /applied\n",
}


def busybox_repo(tmp_path: Path, repo_name: str, steps: dict[str, str] | None = None) -> Path:
    root = tmp_path / "repo"
    make_line(
        root,
        "line",
        repository=repo_name,
        base=BUSYBOX,
        increments=STEPS if steps is None else steps,
    )
    git_init(root)
    return root


def read_lock(root: Path, repo_name: str) -> Lock:
    return lockfile.read_lock(
        root / "lock" / "line.lock.toml", line="line", repository=repo_name, base=BUSYBOX
    )


def layers(ref: str) -> list[str]:
    return list(json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)))


def run_in(ref: str, *command: str) -> str:
    return docker("run", "--rm", "--entrypoint", command[0], ref, *command[1:])


VOLATILE = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}


def file_tree(ref: str) -> dict[str, tuple[object, ...]]:
    """Every path of an image's filesystem with type, mode, owner, link and content hash."""
    container = docker("create", ref, "true")
    try:
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            tree: dict[str, tuple[object, ...]] = {}
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                for member in archive:
                    name = member.name.rstrip("/")
                    if name in VOLATILE or name.startswith(("proc/", "sys/", "dev/")):
                        continue
                    content = ""
                    if member.isfile():
                        handle = archive.extractfile(member)
                        assert handle is not None
                        content = hashlib.sha256(handle.read()).hexdigest()
                    tree[name] = (
                        member.type,
                        member.mode,
                        member.uid,
                        member.gid,
                        member.linkname,
                        content,
                    )
    finally:
        docker("rm", container)
    return tree


def remote(ref: str) -> tuple[str, str] | None:
    """(manifest digest, image id) of a tag in the registry, or None."""
    done = subprocess.run(
        ["docker", "manifest", "inspect", "--insecure", "-v", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        assert "no such manifest" in done.stderr, done.stderr
        return None
    data = json.loads(done.stdout)
    return data["Descriptor"]["digest"], data["SchemaV2Manifest"]["config"]["digest"]


def assert_lock_matches_registry(root: Path, repo_name: str, count: int) -> None:
    lock = read_lock(root, repo_name)
    assert [v.version for v in lock.versions] == list(range(1, count + 1))
    for version in lock.versions:
        assert remote(version.tag) == (version.digest, version.image_id), version.tag


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


def kill_when_paused(
    root: Path, args: tuple[str, ...], point: str, env: dict[str, str] | None = None
) -> str:
    """Run imagectl stopped at the fault-injection point `point` (IMAGECTL_PAUSE_AT) and SIGKILL
    it there, so the kill lands exactly inside the window the point names, never beside it."""
    marker = f"imagectl: paused at {point}"
    seen = kill_at(root, args, marker, {**(env or {}), "IMAGECTL_PAUSE_AT": point})
    assert seen.count(marker) == 1, seen
    return seen


def package_sidecar(root: Path) -> tuple[list[str], dict[int, tuple[list[str], list[str]]]]:
    """(base packages, {version: (added, removed)}) of lock/line.packages.toml, read as plain
    TOML; each version must appear once."""
    path = root / "lock" / "line.packages.toml"
    if not path.exists():
        return [], {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = data.get("versions", [])
    versions = [entry["version"] for entry in entries]
    assert len(versions) == len(set(versions)), f"{path} has a version twice: {versions}"
    deltas = {entry["version"]: (entry["added"], entry["removed"]) for entry in entries}
    return list(data["base"]["packages"]), deltas


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str
    seconds: float  # from the moment all were started to this one's exit


def run_together(*runs: tuple[Path, tuple[str, ...]], timeout: float = 300) -> list[Finished]:
    """Start one imagectl per (root, args) at the same moment; wait for all of them."""
    start = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "imagectl", "-C", str(root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root, args in runs
    ]

    def finish(process: subprocess.Popen[str]) -> Finished:
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            process.kill()  # a no-op once it has ended; never leave one behind on a timeout
        return Finished(process.returncode, out, err, time.monotonic() - start)

    with ThreadPoolExecutor(max_workers=len(processes)) as pool:
        return list(pool.map(finish, processes))
