"""Locks and package records written directly, for the commands that read them alone."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from imagectl.core import lockfile, sidecar
from imagectl.core.model import Lock, LockedVersion
from imagectl.core.packages import PackageRecord

from .helpers import make_line

BASE = "localhost:5000/busybox:latest"
PIP = "/opt/venv/lib/python3.12/site-packages"


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def version(line: str, n: int, **changes: object) -> LockedVersion:
    built = LockedVersion(
        version=n,
        tag=f"localhost:5000/{line}:v{n}",
        increment=f"increments/{line}/{n:04d}-x.Dockerfile.j2",
        summary=f"step {n}",
        increment_hash=digest(f"{line}h{n}"),
        dockerfile_hash=digest(f"{line}f{n}"),
        parent=f"localhost:5000/{line}:v{n - 1}",
        parent_digest=digest(f"{line}i{n - 1}"),
        image_id=digest(f"{line}i{n}"),
        layers=n + 1,
        size=1000 + n,
        builder="buildx",
        built_at=f"2026-01-0{n}T00:00:00Z",
        commit="0" * 40,
    )
    return replace(built, **changes)  # type: ignore[arg-type]


def write_line(
    root: Path,
    name: str,
    versions: tuple[LockedVersion, ...],
    record: PackageRecord | None,
    *,
    base_digest: str = "",
) -> None:
    layout = make_line(root, name, repository=f"localhost:5000/{name}", base=BASE)
    lock = Lock(
        line=name,
        repository=f"localhost:5000/{name}",
        base=BASE,
        base_digest=base_digest or digest("base"),
        base_image_id=digest("baseid"),
        versions=versions,
    )
    lockfile.write_lock(layout.lock_path(name), lock)
    if record is not None:
        sidecar.write_packages(
            sidecar.packages_path(layout.lock_path(name)), line=name, record=record
        )
