"""Faults around the build: an unwritable lock folder, build secrets that must never leak."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BUSYBOX, docker, imagectl
from .engine_helpers import busybox_repo, read_lock
from .helpers import make_line, write

pytestmark = pytest.mark.engine

SECRET = "s3cr3t-TOKEN-do-not-leak-4711"


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders made read-only by a read-only bind mount (as root, chmod would not stop writes)."""
    mounted: list[Path] = []
    yield mounted
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def make_read_only(folder: Path, mounted: list[Path]) -> None:
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    mounted.append(folder)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)


def test_read_only_lock_folder_fails_before_building(
    tmp_path: Path, repo_name: str, read_only: list[Path]
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0
    before = (root / "lock" / "line.lock.toml").read_bytes()
    make_read_only(root / "lock", read_only)
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "imagectl: lockfile error: lock: the lock folder is not writable" in result.stderr
    assert "Read-only file system" in result.stderr
    assert "building v2" not in result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert docker("image", "ls", "-q", f"{repo_name}:v2") == ""
    published = imagectl(root, "publish")
    assert published.code == 1
    assert "not writable" in published.stderr


def secret_repo(tmp_path: Path, repo_name: str) -> Path:
    root = tmp_path / "repo"
    make_line(
        root,
        "line",
        repository=repo_name,
        base=BUSYBOX,
        increments={
            "0001-uses-secret": "# Uses a build secret without keeping it\n"
            "RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-16"
            " > /token-hash\n"
        },
    )
    text = (root / "images" / "line.toml").read_text()
    write(
        root / "images" / "line.toml",
        text.replace("[vars]", '[secrets]\ntoken = "env:IMAGECTL_TEST_TOKEN"\n\n[vars]'),
    )
    return root


def test_build_secret_reaches_the_build_and_nothing_else(tmp_path: Path, repo_name: str) -> None:
    root = secret_repo(tmp_path, repo_name)
    env = {"IMAGECTL_TEST_TOKEN": SECRET}
    built = imagectl(root, "build", "next", env=env)
    assert built.code == 0, built.stderr
    tag = f"{repo_name}:v1"
    expected = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert docker("run", "--rm", tag, "cat", "/token-hash") == expected  # it was used
    outputs = [built.stdout, built.stderr]
    for args in (
        ("history", "line"),
        ("history", "line", "--json"),
        ("plan",),
        ("publish",),
        ("squash",),
        ("resolve", tag),
    ):
        result = imagectl(root, *args, env=env)
        assert result.code == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    outputs.append(docker("history", "--no-trunc", tag))
    outputs.append(docker("image", "inspect", tag))
    for path in root.rglob("*"):
        if path.is_file():
            outputs.append(path.read_text(errors="replace"))
    assert not [text for text in outputs if SECRET in text]
    assert read_lock(root, repo_name).versions[0].digest.startswith("sha256:")


def test_build_secrets_with_the_legacy_builder_are_refused(tmp_path: Path, repo_name: str) -> None:
    root = secret_repo(tmp_path, repo_name)
    result = imagectl(
        root, "build", "next", env={"IMAGECTL_TEST_TOKEN": SECRET, "IMAGECTL_BUILDER": "legacy"}
    )
    assert result.code == 1
    assert "build secrets need BuildKit" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert not (root / "lock" / "line.lock.toml").exists()
