"""Test helpers: image repositories built in a temporary folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

from imagectl.core.config import RepositoryLayout
from imagectl.core.model import Lock, LockedVersion


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_line(
    root: Path,
    name: str,
    *,
    repository: str,
    base: str,
    increments: dict[str, str] | None = None,
    variables: str = "",
) -> RepositoryLayout:
    """An image line file plus file increments {"0001-x": template text}."""
    write(
        root / "images" / f"{name}.toml",
        f'repository = "{repository}"\nbase = "{base}"\n[vars]\n{variables}',
    )
    for stem, text in (increments or {}).items():
        write(root / "increments" / name / f"{stem}.Dockerfile.j2", text)
    (root / "lock").mkdir(exist_ok=True)
    return RepositoryLayout(root=root)


def git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    git_commit_all(root, "init")


def git_commit_all(root: Path, message: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", *identity, "commit", "-q", "-m", message], cwd=root, check=True)


def locked_version(version: int, **overrides: object) -> LockedVersion:
    values: dict[str, object] = {
        "version": version,
        "tag": f"localhost:5000/t/line:v{version}",
        "increment": f"increments/line/{version:04d}-step.Dockerfile.j2",
        "summary": f"step {version}",
        "increment_hash": f"sha256:{version:064x}",
        "dockerfile_hash": f"sha256:{version + 100:064x}",
        "parent": f"localhost:5000/t/line:v{version - 1}",
        "parent_digest": f"sha256:{version + 200:064x}",
        "image_id": f"sha256:{version + 300:064x}",
        "layers": version + 1,
        "size": 1000 * version,
        "builder": "buildx",
        "built_at": "2026-11-25T12:00:00Z",
        "commit": f"{version:040x}",
        "digest": "",
    }
    values.update(overrides)
    return LockedVersion(**values)  # type: ignore[arg-type]


def sample_lock(count: int) -> Lock:
    return Lock(
        line="line",
        repository="localhost:5000/t/line",
        base="localhost:5000/busybox:latest",
        base_digest=f"sha256:{7:064x}",
        base_image_id=f"sha256:{8:064x}",
        versions=tuple(locked_version(n) for n in range(1, count + 1)),
    )
