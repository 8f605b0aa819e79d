"""Recording a new version: its package delta, then the lock (atomically, last), then the
reference Dockerfile. Build and checkpoint both end here."""

from __future__ import annotations

from dataclasses import replace

from imagectl import lockfile
from imagectl.config import RepositoryLayout
from imagectl.faults import pause_point
from imagectl.linestate import LineState, write_reference
from imagectl.model import Lock, LockedVersion
from imagectl.packages import PackageDiff, diff_manifests, parse_dpkg_status, replay
from imagectl.ports import ImageStore

DPKG_STATUS = "/var/lib/dpkg/status"


def record_version(
    layout: RepositoryLayout,
    state: LineState,
    version: LockedVersion,
    *,
    parent_image: str,
    images: ImageStore,
    base: tuple[str, str] | None = None,
) -> Lock:
    """Write `version` (built on `parent_image`) into the line's files; returns the new lock.

    `base` is (registry digest, image id) of the base for the line's first version.
    """
    # Packages first: a crash before the lock write leaves an entry the rerun overwrites.
    record_packages(
        state, version=version.version, image=version.image_id, parent=parent_image, images=images
    )
    pause_point("after-packages")  # the sidecar has the new version, the lock does not
    lock = state.lock
    if base is not None:
        lock = lock.with_base(digest=base[0], image_id=base[1])
    new_lock = lock.with_version(version)
    lockfile.write_lock(state.lock_path, new_lock)
    # The reference follows the lock; it is derived, so a crash before this line loses nothing
    # that `imagectl squash` cannot write again.
    write_reference(layout, replace(state, lock=new_lock))
    return new_lock


def record_skip(state: LineState, skipped: LockedVersion) -> Lock:
    """Write a skipped version: an empty package delta (its successor's parent is the version
    before it), then the lock."""
    path = lockfile.packages_path(state.lock_path)
    base, deltas = lockfile.read_packages(path)
    deltas = {v: d for v, d in deltas.items() if v < skipped.version}
    deltas[skipped.version] = ((), ())
    lockfile.write_packages(path, line=state.line.name, base=base, deltas=deltas)
    new_lock = state.lock.with_version(skipped)
    lockfile.write_lock(state.lock_path, new_lock)
    return new_lock


def record_packages(
    state: LineState, *, version: int, image: str, parent: str, images: ImageStore
) -> PackageDiff:
    """Store what `version` changed in the Debian package set against its parent."""
    path = lockfile.packages_path(state.lock_path)
    base, deltas = lockfile.read_packages(path)
    complete = all(v in deltas for v in range(1, version)) and (version > 1 or base)
    if version == 1:
        base = manifest_of(parent, images=images)
        parent_manifest = base
    elif complete:
        parent_manifest = replay(base, deltas, version - 1)
    else:  # versions built before imagectl recorded packages: ask the parent image itself
        parent_manifest = manifest_of(parent, images=images)
    current = manifest_of(image, images=images)
    diff = diff_manifests(parent_manifest, current)
    added = set(diff.added) | {
        f"{c.name.rpartition(':')[0]} {c.new} {c.name.rpartition(':')[2]}" for c in diff.changed
    }
    removed = set(diff.removed) | {
        f"{c.name.rpartition(':')[0]} {c.old} {c.name.rpartition(':')[2]}" for c in diff.changed
    }
    deltas = {v: d for v, d in deltas.items() if v < version}
    deltas[version] = (tuple(sorted(added)), tuple(sorted(removed)))
    lockfile.write_packages(path, line=state.line.name, base=base, deltas=deltas)
    return diff


def manifest_of(image: str, *, images: ImageStore) -> tuple[str, ...]:
    """The image's installed Debian packages; empty for an image without dpkg."""
    status = images.read_file(image, DPKG_STATUS)
    return parse_dpkg_status(status.decode(errors="replace")) if status else ()
