"""Helpers for tests on the real engine: small busybox lines and what they built."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

from imagectl import lockfile
from imagectl.model import Lock

from .conftest import BUSYBOX, docker
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
