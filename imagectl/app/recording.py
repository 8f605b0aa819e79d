"""Recording a new version: its package delta, then the lock (atomically, last), then the
reference Dockerfile. Build and checkpoint both end here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from imagectl.core import lockfile, sidecar
from imagectl.core.config import RepositoryLayout
from imagectl.core.faults import pause_point
from imagectl.core.linerenders import write_reference
from imagectl.core.linestate import LineState
from imagectl.core.model import Lock, LockedVersion
from imagectl.core.packages import (
    KINDS,
    PACKAGE_FILES,
    Manifest,
    PackageDiff,
    PackageRecord,
    Sources,
    VersionDelta,
    apply_layers,
    changes_packages,
    delta_of,
    diff_manifests,
    manifest_from_sources,
    of_kinds,
    sources_from_files,
)
from imagectl.core.ports import ImageStore


def record_version(
    layout: RepositoryLayout,
    state: LineState,
    version: LockedVersion,
    *,
    parent: Parent,
    images: ImageStore,
    base: tuple[str, str] | None = None,
    measured: MeasuredPackages | None = None,
) -> Lock:
    """Write `version` (built on `parent`) into the line's files; returns the new lock.

    `base` is (registry digest, image id) of the base for the line's first version; `measured`
    its packages when the build read them already (to prove its input archive).
    """
    # Packages first: a crash before the lock write leaves an entry the rerun overwrites.
    if measured is None:
        measured = measure_packages(
            state, version=version.version, image=version.image_id, parent=parent, images=images
        )
    store_packages(state, measured)
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
    before it, whose packages it then compares with), then the lock. A skipped v1 gets no
    entry: the base's packages are recorded when the first version is built."""
    path = sidecar.packages_path(state.lock_path)
    if skipped.version > 1:
        head = sidecar.read_package_head(path)
        if head is not None and head.version == skipped.version - 1:
            text = sidecar.append_packages(path, head.text, skipped.version, VersionDelta())
            sidecar.write_package_head(
                path, text, skipped.version, head.manifest, image_id=head.image_id,
                sources=head.sources,
            )  # fmt: skip
        else:
            record = sidecar.read_packages(path).before(skipped.version)
            sidecar.write_packages(
                path,
                line=state.line.name,
                record=record.with_version(skipped.version, VersionDelta()),
            )
    new_lock = state.lock.with_version(skipped)
    lockfile.write_lock(state.lock_path, new_lock)
    return new_lock


@dataclass(frozen=True, slots=True, kw_only=True)
class Parent:
    """The image a new version was built on."""

    image_id: str
    layers: int | None  # its layer count when the version is built on its layers (a build),
    # None when it is not (a checkpoint: a one-layer copy)


def record_packages(
    state: LineState, *, version: int, image: str, parent: Parent, images: ImageStore
) -> PackageDiff:
    """Store what `version` changed in the image's packages against its parent."""
    measured = measure_packages(state, version=version, image=image, parent=parent, images=images)
    store_packages(state, measured)
    return measured.diff


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasuredPackages:
    """What a version changed in its packages, read but not yet stored: the build proves its
    input archive against it before the tag, and records the same reading after."""

    version: int
    image: str
    diff: PackageDiff
    text: str  # the sidecar's text with the version's delta
    current: Manifest
    found: Sources | None


def measure_packages(
    state: LineState, *, version: int, image: str, parent: Parent, images: ImageStore
) -> MeasuredPackages:
    """What `version` changed in the image's packages against its parent; nothing written.

    The usual case costs the same on the 300th version as on the 2nd, and the same on a 20 GB
    image as on a small one: the parent's manifest and database facts come from the cached
    head, only the version's own new layers are read. Anything else (a fresh clone, an entry
    left by an interrupted build, an older sidecar) replays the sidecar once."""
    path = sidecar.packages_path(state.lock_path)
    head = sidecar.read_package_head(path) if version > 1 else None
    forked = head is not None and head.image_id != parent.image_id and parent.layers is not None
    if head is not None and head.version == version - 1 and not forked:
        sources = head.sources if head.image_id == parent.image_id else None
        known = Known(manifest=head.manifest, sources=sources)
        current, found = read_manifest(image, parent=parent, known=known, images=images)
        diff = diff_manifests(head.manifest, current)
        added, removed = delta_of(diff)
        text = sidecar.appended_text(head.text, version, VersionDelta(added=added, removed=removed))
    else:
        diff, text, current, found = _record_replaying(
            state, version=version, image=image, parent=parent, images=images
        )
    return MeasuredPackages(
        version=version, image=image, diff=diff, text=text, current=current, found=found
    )


def store_packages(state: LineState, measured: MeasuredPackages) -> None:
    path = sidecar.packages_path(state.lock_path)
    sidecar.write_packages_text(path, measured.text)
    sidecar.write_package_head(
        path, measured.text, measured.version, measured.current, image_id=measured.image,
        sources=measured.found,
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What is known of the parent's packages without reading it."""

    manifest: Manifest
    sources: Sources | None = None  # its database files' facts, when cached


def read_manifest(
    image: str, *, parent: Parent | None, known: Known | None, images: ImageStore
) -> tuple[Manifest, Sources | None]:
    """The image's manifest (and its database facts, when read): from its own new layers on
    top of what is known of the parent, when the engine's layers can be read from here; else
    from the selected files of the whole image (never the rest of its file system)."""
    if parent is not None and parent.layers is not None and known is not None:
        changes = images.layer_changes(image, PACKAGE_FILES, above=parent.layers)
        if changes is not None:
            if known.sources is not None:
                sources = apply_layers(known.sources, changes)
                return manifest_from_sources(sources), sources
            if not changes_packages(changes, known.manifest):
                return known.manifest, None  # the layers touch no package
    sources = sources_from_files(images.read_files(image, PACKAGE_FILES))
    return manifest_from_sources(sources), sources


def _record_replaying(
    state: LineState,
    *,
    version: int,
    image: str,
    parent: Parent,
    images: ImageStore,
) -> tuple[PackageDiff, str, Manifest, Sources | None]:
    """measure_packages without the cached head: read and replay the sidecar, and its text
    rewritten (written by store_packages)."""
    path = sidecar.packages_path(state.lock_path)
    record = sidecar.read_packages(path).before(version)
    tracked: tuple[str, ...] = ()
    baseline: Manifest = ()
    known: Known | None = None
    if version == 1:
        record = PackageRecord(base=manifest_of(parent.image_id, images=images))
        parent_manifest = record.base
        known = Known(manifest=parent_manifest)
    elif record.complete(version - 1):
        parent_manifest = record.manifest(version - 1)
        tracked = tuple(k for k in KINDS if k not in record.kinds_at(version - 1))
        if tracked:  # a sidecar from before imagectl read these kinds: start them here
            baseline = of_kinds(manifest_of(parent.image_id, images=images), tracked)
            parent_manifest = tuple(sorted({*parent_manifest, *baseline}))
        known = Known(manifest=parent_manifest)
        built_on = _built_on(state, parent.image_id)
        if built_on is not None and built_on < version - 1 and not tracked:
            # A fork ([withdraw] build_on = "kept"): read the new layers on top of what the
            # parent had, but record the delta against the version before, as every delta
            # of the sidecar is (its manifests are the deltas summed in version order).
            known = Known(manifest=record.manifest(built_on))
    else:  # versions built before imagectl recorded packages: ask the parent image itself
        parent_manifest = manifest_of(parent.image_id, images=images)
    current, found = read_manifest(image, parent=parent, known=known, images=images)
    diff = diff_manifests(parent_manifest, current)
    added, removed = delta_of(diff)
    delta = VersionDelta(added=added, removed=removed, tracked=tracked, baseline=baseline)
    text = sidecar.packages_text(line=state.line.name, record=record.with_version(version, delta))
    return diff, text, current, found


def _built_on(state: LineState, image_id: str) -> int | None:
    """The number of the version whose image is `image_id`, if one of the line's is."""
    found = [v.version for v in state.lock.built_versions if v.image_id == image_id]
    return found[-1] if found else None


def manifest_of(image: str, *, images: ImageStore) -> Manifest:
    """The image's debs, pip distributions and conda packages, read from its package
    database files only; empty for an image with none of them."""
    return read_manifest(image, parent=None, known=None, images=images)[0]
