"""The one bench module that imports imagectl's internal modules (they are reorganised from
time to time: keep every such import here). Synthetic repositories of built versions without
building anything, and what the benchmarks read back from locks and package sidecars."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import BUSYBOX, git_init, write
from imagectl.core import lockfile, sidecar
from imagectl.core.config import RepositoryLayout, load_lines
from imagectl.core.increments import discover_increments, hash_increment
from imagectl.core.model import Lock, LockedVersion
from imagectl.core.packages import PackageRecord, VersionDelta
from imagectl.core.positions import pinned_base
from imagectl.core.rendering import render_step


def fake_digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def make_synthetic(root: Path, prefix: str, lines: int, versions: int) -> None:
    """lines x versions built versions, valid for imagectl (no drift), without building."""
    # The line files and increments are plain files; only the locks need imagectl's hashes.
    for index in range(lines):
        name = f"line{index:03d}"
        write(
            root / "images" / f"{name}.toml",
            f'repository = "{prefix}/{name}"\nbase = "{BUSYBOX}"\n[vars]\nflavour = "{index}"\n',
        )
        for n in range(1, versions + 1):
            write(
                root / "increments" / name / f"{n:04d}-step.Dockerfile.j2",
                f"# step {n}\nRUN echo {{{{ line }}}} {{{{ version }}}}\n",
            )
    write(root / ".gitignore", ".imagectl/\n")
    _write_locks(root)
    _write_package_records(root, versions)
    git_init(root)


BASE_DEBS = 600  # about a pod base's (Ubuntu minbase ~100, with Jupyter, R and sshd ~600+)
SITE = "/opt/conda/lib/python3.12/site-packages"


def _write_package_records(root: Path, versions: int) -> None:
    """A package record per line as a pod line's looks: 600 debs and 100 pip distributions in
    the base; each version upgrades one deb (libssl3 every 20th) and every 10th adds a pip one."""
    debs = {f"pkg{i:03d}": f"1.0-{i}" for i in range(BASE_DEBS)} | {"libssl3": "3.0.13-0ubuntu3"}
    base = [f"{name} {version} amd64" for name, version in debs.items()]
    base += [f"pip:dist{i:03d} 1.{i} {SITE}" for i in range(100)]
    deltas: dict[int, VersionDelta] = {}
    for n in range(1, versions + 1):
        upgraded = ["libssl3"] if n % 20 == 0 else [f"pkg{n % BASE_DEBS:03d}"]
        removed = [f"{name} {debs[name]} amd64" for name in upgraded]
        for name in upgraded:
            debs[name] = (
                f"{debs[name].partition('.v')[0]}.v{n}"
                if name != "libssl3"
                else (f"3.0.13-0ubuntu3.{n}")
            )
        added = [f"{name} {debs[name]} amd64" for name in upgraded]
        if n % 10 == 0:
            added.append(f"pip:added{n:04d} 2.{n} {SITE}")
        deltas[n] = VersionDelta(added=tuple(sorted(added)), removed=tuple(sorted(removed)))
    record = PackageRecord(base=tuple(sorted(base)), versions=deltas)
    for path in sorted((root / "lock").glob("*.lock.toml")):
        line = path.name.removesuffix(".lock.toml")
        sidecar.write_packages(sidecar.packages_path(path), line=line, record=record)


def _write_locks(root: Path) -> None:
    """A lock per line recording every increment as built, with the hashes imagectl checks."""
    layout = RepositoryLayout(root=root)
    for line in load_lines(layout):
        lock = Lock(
            line=line.name,
            repository=line.repository,
            base=line.base,
            base_digest=fake_digest("base-digest"),
            base_image_id=fake_digest("base-id"),
        )
        recorded: list[LockedVersion] = []
        for increment in discover_increments(layout, line.name):
            n = increment.number
            parent = pinned_base(line, lock) if n == 1 else line.tag_for(n - 1)
            rendered = render_step(layout, line, increment, version=n, parent=parent)
            recorded.append(
                LockedVersion(
                    version=n,
                    tag=line.tag_for(n),
                    increment=increment.path.as_posix(),
                    summary=increment.summary,
                    increment_hash=hash_increment(root / increment.path),
                    dockerfile_hash=rendered.dockerfile_hash,
                    instructions_hash=rendered.instructions_hash,
                    inputs_hash=rendered.inputs,
                    includes=rendered.includes,
                    parent=parent,
                    parent_digest=(
                        lock.base_digest if n == 1 else fake_digest(line.name, "id", n - 1)
                    ),
                    image_id=fake_digest(line.name, "id", n),
                    layers=n + 1,
                    size=2_000_000 + n,
                    builder="buildx",
                    built_at="2026-01-01T00:00:00Z",
                    commit="0" * 40,
                    digest="",
                )
            )
        lockfile.write_lock(layout.lock_path(line.name), replace(lock, versions=tuple(recorded)))


def record_published(root: Path, digest: str) -> None:
    """Record every version of the repository's one line as published under `digest`."""
    layout = RepositoryLayout(root=root)
    (line,) = load_lines(layout)
    path = layout.lock_path(line.name)
    lock = lockfile.read_lock(path, line=line.name, repository=line.repository, base=line.base)
    published = tuple(replace(v, digest=digest) for v in lock.versions)
    lockfile.write_lock(path, replace(lock, versions=published))


@dataclass(frozen=True, slots=True)
class LockCounts:
    versions: int  # every version in the lock
    checkpoints: int  # of which checkpoints (the rest were built from increments)


def lock_counts(path: Path, *, line: str, repository: str, base: str) -> LockCounts:
    lock = lockfile.read_lock(path, line=line, repository=repository, base=base)
    return LockCounts(
        versions=len(lock.versions),
        checkpoints=sum(1 for version in lock.versions if version.checkpoint),
    )


def replay_sidecar(path: Path) -> tuple[float, int]:
    """Seconds to parse a package sidecar and replay it to its newest version, as each build
    did before the cached head; and the number of packages of its base."""
    start = time.perf_counter()
    record = sidecar.read_packages(path)
    record.manifest(max(record.versions))
    return time.perf_counter() - start, len(record.base)
