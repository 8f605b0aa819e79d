"""Fixtures for tests on the real engine and registry, started by scripts/engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "localhost:5000"
BUSYBOX = f"{REGISTRY}/busybox:latest"
DEBIAN = f"{REGISTRY}/debian:bookworm"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def engine() -> str:
    """A running engine, registry and base images: started here if needed, never skipped."""
    ready = subprocess.run(
        [str(ROOT / "scripts" / "engine"), "status"], capture_output=True, text=True, check=False
    )
    if ready.returncode != 0:
        started = subprocess.run(
            [str(ROOT / "scripts" / "engine"), "up"], capture_output=True, text=True, check=False
        )
        if started.returncode != 0:
            pytest.fail(
                "scripts/engine up failed; the tests need a real Docker engine and "
                f"registry:\n{started.stdout}\n{started.stderr}",
                pytrace=False,
            )
    return REGISTRY


def imagectl(
    root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> Result:
    """Run the CLI as a user would, in a separate process."""
    merged = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "imagectl", "-C", str(root), *args],
        capture_output=True,
        text=True,
        env=merged,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref)


@pytest.fixture
def repo_name(engine: str) -> Iterator[str]:
    """A unique repository per test; its local tags are removed afterwards."""
    name = f"{engine}/imagectl-test/{uuid.uuid4().hex[:10]}"
    yield name
    tags = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", name, check=False)
    for tag in tags.split():
        docker("rmi", "--no-prune", tag, check=False)


@pytest.fixture
def example_repo(tmp_path: Path, repo_name: str) -> Path:
    """A copy of this project's example lines, each moved to a unique test repository."""
    target = tmp_path / "repo"
    target.mkdir()
    for part in ("images", "increments"):
        shutil.copytree(ROOT / part, target / part)
    (target / "lock").mkdir()
    for line_file in (target / "images").glob("*.toml"):
        text = line_file.read_text()
        start = text.index('repository = "') + len('repository = "')
        end = text.index('"', start)
        line_file.write_text(f"{text[:start]}{repo_name}/{line_file.stem}{text[end:]}")
    return target
