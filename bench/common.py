"""What every benchmark shares: the sizes, running and timing commands, throw-away git
repositories of image lines, and the session (temp dir, repository prefix, clean-up)."""

from __future__ import annotations

import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
IMAGECTL = str(VENV_BIN / "imagectl")
PYTHON = str(VENV_BIN / "python")
REGISTRY = "localhost:5000"
BUSYBOX = f"{REGISTRY}/busybox:latest"
DEBIAN = f"{REGISTRY}/debian:bookworm"
UBUNTU = f"{REGISTRY}/ubuntu:noble"
GIT_ID = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]


@dataclass(frozen=True, slots=True)
class Sizes:
    overhead_reps: int  # 1: imagectl and raw builds each
    flat_points: tuple[int, ...]  # 2: line lengths
    flat_reps: int  # 2: timed incremental builds per length
    scratch_reps: int  # 2: reference builds from scratch per length
    cli_lines: int  # 3: synthetic repository
    cli_versions: int
    cli_reps: int
    fan_lines: int  # 4: lines per set
    fan_rounds: int  # 4: rounds (the second one swaps the sets)
    publish_versions: int  # 5: versions per line
    publish_rounds: int
    shard_lines: int  # 6: lines of the repository the CI job publishes
    shard_versions: int  # 6: pending versions per line
    shard_rounds: int
    audit_tags: int  # 7: published versions audited
    dpkg_points: tuple[int, ...] = (1, 50, 100)  # 8: line lengths on the Debian base
    dpkg_reps: int = 5  # 8: timed builds per length
    dpkg_sidecar: int = 300  # 8: versions at which the sidecar's size is given
    pod_bytes: int = 3 << 30  # 9: data generated on top of the noble rootfs
    pod_files: int = 50_000  # 9: data files generated (package metadata comes on top)
    pod_reps: int = 5  # 9: imagectl and raw builds each (each one exports the whole image today)


FULL = Sizes(
    overhead_reps=7,
    flat_points=(1, 25, 50, 100),
    flat_reps=5,
    scratch_reps=2,
    cli_lines=50,
    cli_versions=200,
    cli_reps=5,
    fan_lines=8,
    fan_rounds=2,
    publish_versions=20,
    publish_rounds=4,  # its ratio moved 1.17-1.26 between runs at a median of 2
    shard_lines=8,
    shard_versions=2,
    shard_rounds=2,
    audit_tags=1000,
)
QUICK = Sizes(
    overhead_reps=3,
    flat_points=(1, 10, 20),
    flat_reps=2,
    scratch_reps=1,
    cli_lines=10,
    cli_versions=40,
    cli_reps=5,
    fan_lines=4,
    fan_rounds=1,
    publish_versions=5,
    publish_rounds=1,
    shard_lines=4,
    shard_versions=1,
    shard_rounds=1,
    audit_tags=200,
    dpkg_points=(1, 10),
    dpkg_reps=2,
    dpkg_sidecar=20,
    pod_bytes=300 << 20,
    pod_files=5_000,
    pod_reps=3,
)


# -- running things ----------------------------------------------------------------------------


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


class CommandFailedError(RuntimeError):
    pass


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    argv = [str(part) for part in command]
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise CommandFailedError(
            f"`{' '.join(argv)}` exited {done.returncode}:\n{done.stdout[-2000:]}\n"
            f"{done.stderr[-4000:]}"
        )
    return done


def timed(
    command: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> float:
    """Wall time of one command (which must succeed)."""
    start = time.perf_counter()
    run(command, cwd=cwd, env=env)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_times(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def nonce() -> str:
    return secrets.token_hex(6)


def write(path: Path, text: str, *, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if mode is not None:
        path.chmod(mode)


# -- image repositories in git -----------------------------------------------------------------


def git_init(root: Path) -> None:
    run(["git", "init", "-q", "-b", "main"], cwd=root)
    git_commit(root, "init")


def git_commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], cwd=root)
    run(["git", *GIT_ID, "commit", "-q", "--allow-empty", "-m", message], cwd=root)


def new_repo(root: Path, lines: dict[str, str], *, base: str = BUSYBOX) -> Path:
    """An image repository with one line on `base` per {name: repository}, in git."""
    for name, repository in lines.items():
        write(
            root / "images" / f"{name}.toml",
            f'repository = "{repository}"\nbase = "{base}"\n[vars]\n',
        )
    (root / "lock").mkdir(parents=True, exist_ok=True)
    (root / "increments").mkdir(parents=True, exist_ok=True)
    write(root / ".gitignore", ".imagectl/\n")
    git_init(root)
    return root


def imagectl(root: Path, *args: str, env: dict[str, str] | None = None) -> float:
    """Wall time of the imagectl CLI as a user runs it (console script: Python start-up too)."""
    return timed([IMAGECTL, "-C", str(root), *args], env=env)


class Session:
    """The temp dir, the unique repository prefix, and the clean-up of every local tag made."""

    def __init__(self, work: Path, sizes: Sizes, *, quick: bool) -> None:
        self.work = work
        self.sizes = sizes
        self.quick = quick
        self.run_id = secrets.token_hex(5)
        self.prefix = f"{REGISTRY}/bench/{self.run_id}"

    def repository(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def local_tags(self) -> list[str]:
        listed = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).stdout
        return [tag for tag in listed.split() if tag.startswith(f"{self.prefix}/")]

    def cleanup(self) -> int:
        tags = self.local_tags()
        for start in range(0, len(tags), 100):
            run(["docker", "rmi", *tags[start : start + 100]], check=False)
        return len(tags)
