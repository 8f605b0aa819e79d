"""A pod backup laid over its patched successor (pure): every path of the backup classified
three-way against the version it was taken on (REF) and what the successor's own layers
changed above REF, the system databases merged by entry, and the verdict.

A copied-up file hides the successor's whole file, a whiteout deletes and an opaque folder
hides whatever the successor has there: so a path the fix did not touch is the user's alone
(kept), a copy identical to REF's file is stale (dropped: the successor's wins), and a path
that both the user and the fix changed, or that the backup hides or deletes while the fix
added or changed it, is a conflict; a database both changed is merged by entry instead."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from imagectl.core.layerfiles import LayerChange, Meta
from imagectl.core.layertar import LayerEntry, LayerTar, content_hash
from imagectl.core.sysdbs import EntryConflict, merge_for, regenerated


class Verdict(enum.StrEnum):
    SAFE = "safe"  # the raw backup may be laid over the successor as it is
    SAFE_AFTER_MERGE = (
        "safe after merge"  # the merged layer may (--write); the raw one hides the fix
    )
    CONFLICTS = "conflicts"  # the user and the fix changed the same thing: a person decides
    REFUSED = "refused"  # the backup uses overlay features that make any restore undefined


class Class(enum.StrEnum):
    USER_ONLY = "user only"  # the fix did not touch it: kept
    STALE_COPY = "stale copy"  # REF's file (or the successor's) as it was: dropped if the fix
    # changed the path, kept (it changes nothing) if not
    MERGED = "merged"  # a database both changed, merged by entry
    REGENERATED = "regenerated cache"  # the successor's system writes it again: dropped
    DIRECTORY = "directory"  # a folder the layer holds for what is below it: kept
    CONFLICT = "conflict"


Action = Literal["keep", "drop", "merge", "none"]
FixChange = Literal["added", "changed", "deleted", ""]


@dataclass(frozen=True, slots=True, kw_only=True)
class PathCheck:
    """What the backup does at one path and what becomes of it."""

    path: str
    kind: str  # the entry's kind, or "whiteout" / "opaque"
    cls: Class
    fix: FixChange = ""  # what the successor's layers did to this path
    hides_fix: bool = False  # laid over the successor raw, it would hide or undo the fix

    @property
    def action(self) -> Action:
        if self.cls is Class.STALE_COPY and not self.fix:
            # The successor has REF's file there, content, mode and owner: the copy changes
            # nothing of it (and when a reader could not say REF's mode and owner, the copy
            # keeps one the user may have set).
            return "keep"
        actions: dict[Class, Action] = {
            Class.USER_ONLY: "keep",
            Class.DIRECTORY: "keep",
            Class.STALE_COPY: "drop",
            Class.REGENERATED: "drop",
            Class.MERGED: "merge",
        }
        return actions.get(self.cls, "none")

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": self.kind,
            "class": str(self.cls),
            "action": self.action,
            "fix": self.fix or None,
            "hides_fix": self.hides_fix,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """A path where the backup and the fix disagree, with both sides."""

    path: str
    reason: str
    backup: str  # what the backup has there (a content hash, "deleted", ...)
    successor: str  # what the successor has there
    entries: tuple[EntryConflict, ...] = ()  # a database's entries both changed

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "reason": self.reason,
            "backup": self.backup,
            "successor": self.successor,
            "entries": [entry.to_json() for entry in self.entries],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Merge:
    """A database merged by entry: what each side brought to it."""

    path: str
    from_backup: tuple[str, ...]
    from_successor: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "from_backup": list(self.from_backup),
            "from_successor": list(self.from_successor),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreCheck:
    verdict: Verdict
    paths: tuple[PathCheck, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    merges: tuple[Merge, ...] = ()
    refusals: tuple[tuple[str, str], ...] = ()  # (path, overlay mark)
    merged_content: Mapping[str, bytes] = field(default_factory=dict)  # path -> merged file

    @property
    def dropped(self) -> frozenset[str]:
        return frozenset(p.path for p in self.paths if p.action == "drop")

    def counts(self) -> dict[str, int]:
        found = {str(cls): 0 for cls in Class}
        for path in self.paths:
            found[str(path.cls)] += 1
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class FixChanges:
    """What the successor's layers above REF change, merged bottom first."""

    files: Mapping[str, bytes]  # regular files they add or replace, as the successor has them
    links: Mapping[str, str]  # symlinks they add or replace: path -> target
    deleted: frozenset[str]  # paths of REF their whiteouts remove (and all below)
    hidden: frozenset[str]  # folders of REF they make opaque
    meta: Mapping[str, Meta] = field(default_factory=dict)  # the files' mode and owner
    dirs: frozenset[str] = frozenset()  # folders their layers have (made, or holding changes)

    def removes(self, path: str) -> bool:
        """Whether the successor no longer has REF's `path` (and did not add it again)."""
        if self.touches(path):
            return False
        ancestors = _ancestors(path)
        return path in self.deleted or any(a in self.deleted or a in self.hidden for a in ancestors)

    def touches(self, path: str) -> bool:
        """Whether the fix added or changed a file or symlink at `path`."""
        return path in self.files or path in self.links

    def added_folders(self, ref_dirs: frozenset[str] | None) -> frozenset[str]:
        """The folders the fix made: in its layers and not among REF's (`ref_dirs`, REF's
        folders among those asked of it); none when REF's folders are not known."""
        return frozenset() if ref_dirs is None else self.dirs - ref_dirs

    def below(self, folder: str, *, itself: bool) -> tuple[str, ...]:
        """The files and symlinks the fix added or changed below `folder` (and `folder`)."""
        prefix = f"{folder}/"
        return tuple(
            sorted(
                p
                for p in (*self.files, *self.links)
                if p.startswith(prefix) or (itself and p == folder)
            )
        )


def relevant_to(backup: LayerTar) -> Callable[[str], bool]:
    """The paths of the successor's layers the check of `backup` needs: its own paths, the
    folders above them (the fix may have put a file there), and everything below its
    whiteouts and opaque folders; the rest of the fix's files are never read."""
    own = set(backup.entries)
    above = {a for path in (*own, *backup.deleted, *backup.opaque) for a in _ancestors(path)}
    roots = set(backup.deleted) | set(backup.opaque)

    def wanted(path: str) -> bool:
        if path in own or path in above or path in roots:
            return True
        return any(a in roots for a in _ancestors(path))

    return wanted


def folders_to_ask(backup: LayerTar, fix: FixChanges) -> frozenset[str]:
    """The fix's folders whose presence in REF decides the check: those at or below the
    backup's whiteouts, below its opaque folders, and at its files, symlinks and other
    non-folders (each hides the folder if the fix made it)."""
    roots = set(backup.deleted)
    asked = {d for d in fix.dirs if d in roots or any(a in roots for a in _ancestors(d))}
    asked |= {d for d in fix.dirs if any(a in backup.opaque for a in _ancestors(d))}
    asked |= {p for p, e in backup.entries.items() if e.kind != "dir" and p in fix.dirs}
    return frozenset(asked)


def fix_changes(layers: Iterable[LayerChange]) -> FixChanges:
    """The successor's added layers (bottom first) as one change set."""
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    meta: dict[str, Meta] = {}
    dirs: set[str] = set()
    deleted: set[str] = set()
    hidden: set[str] = set()
    for layer in layers:
        for path in [*files, *links, *dirs]:
            if any(path == d or path.startswith(f"{d}/") for d in layer.deleted) or any(
                path.startswith(f"{o}/") for o in layer.opaque
            ):
                files.pop(path, None)
                links.pop(path, None)
                meta.pop(path, None)
                dirs.discard(path)
        deleted.update(layer.deleted)
        hidden.update(layer.opaque)
        # a layer's own files and symlinks lie above its whiteouts, and replace each other
        for path in layer.files:
            links.pop(path, None)
        for path in layer.links:
            files.pop(path, None)
            meta.pop(path, None)
        for path in layer.dirs:  # a folder put where a file or symlink was
            files.pop(path, None)
            links.pop(path, None)
            meta.pop(path, None)
        dirs.difference_update(layer.files, layer.links)
        dirs.update(layer.dirs)
        files.update(layer.files)
        links.update(layer.links)
        for path in layer.files:
            if path in layer.meta:
                meta[path] = layer.meta[path]
            else:
                meta.pop(path, None)
    return FixChanges(
        files=files,
        links=links,
        deleted=frozenset(deleted),
        hidden=frozenset(hidden),
        meta=meta,
        dirs=frozenset(dirs),
    )


def check_restore(
    backup: LayerTar,
    *,
    ref_files: Mapping[str, bytes],
    fix: FixChanges,
    ref_meta: Mapping[str, Meta] | None = None,
    ref_dirs: frozenset[str] | None = None,
) -> RestoreCheck:
    """Classify every path of `backup` (taken on REF, whose regular files at the backup's
    paths are `ref_files`, with their mode and owner `ref_meta`) against the successor's
    change set `fix`; merge the databases. A file whose mode and owner REF's reader did not
    say is compared by content alone. `ref_dirs` are REF's folders among `folders_to_ask`:
    the fix's other folders are ones it made (None: not known, none taken as made)."""
    ref_meta = ref_meta or {}
    made = fix.added_folders(ref_dirs)
    if backup.undefined:
        return RestoreCheck(verdict=Verdict.REFUSED, refusals=backup.undefined)
    ref_hashes = {path: content_hash(data) for path, data in ref_files.items()}
    paths: list[PathCheck] = []
    conflicts: list[Conflict] = []
    merges: list[Merge] = []
    merged: dict[str, bytes] = {}
    for path in backup.deleted:
        touched = _with_folders(fix.below(path, itself=True), made, path, itself=True)
        if touched:
            paths.append(PathCheck(path=path, kind="whiteout", cls=Class.CONFLICT, fix="changed"))
            conflicts.append(
                Conflict(
                    path=path,
                    reason="the backup deletes it, and the fix added or changed "
                    + _listed(touched),
                    backup="deleted",
                    successor=_listed(touched),
                )
            )
        else:
            paths.append(PathCheck(path=path, kind="whiteout", cls=Class.USER_ONLY))
    for path in backup.opaque:
        touched = _with_folders(fix.below(path, itself=False), made, path, itself=False)
        if touched:
            paths.append(PathCheck(path=path, kind="opaque", cls=Class.CONFLICT, fix="changed"))
            conflicts.append(
                Conflict(
                    path=path,
                    reason="the backup's opaque folder hides what the fix added or changed "
                    "in it: " + _listed(touched),
                    backup="opaque folder",
                    successor=_listed(touched),
                )
            )
        else:
            paths.append(PathCheck(path=path, kind="opaque", cls=Class.USER_ONLY))
    for path, entry in sorted(backup.entries.items()):
        if entry.kind == "dir" and path in backup.opaque:
            continue  # the opaque folder, classified above (and kept as the folder it is)
        checked, conflict, merge = _check_entry(
            entry, backup=backup, ref_files=ref_files, ref_hashes=ref_hashes, fix=fix,
            ref_meta=ref_meta, made=made,
        )  # fmt: skip
        paths.append(checked)
        if conflict is not None:
            conflicts.append(conflict)
        if merge is not None:
            merges.append(merge[0])
            merged[path] = merge[1]
    if conflicts:
        verdict = Verdict.CONFLICTS
    elif any(p.hides_fix for p in paths):
        verdict = Verdict.SAFE_AFTER_MERGE
    else:
        verdict = Verdict.SAFE
    return RestoreCheck(
        verdict=verdict,
        paths=tuple(sorted(paths, key=lambda p: p.path)),
        conflicts=tuple(sorted(conflicts, key=lambda c: c.path)),
        merges=tuple(merges),
        merged_content=merged,
    )


def _check_entry(
    entry: LayerEntry,
    *,
    backup: LayerTar,
    ref_files: Mapping[str, bytes],
    ref_hashes: Mapping[str, str],
    fix: FixChanges,
    ref_meta: Mapping[str, Meta],
    made: frozenset[str],
) -> tuple[PathCheck, Conflict | None, tuple[Merge, bytes] | None]:
    path = entry.path
    changed = fix.touches(path)
    removed = fix.removes(path)
    fixed: FixChange = ("changed" if path in ref_files else "added") if changed else ""
    fixed = "deleted" if removed else fixed

    def checked(cls: Class, *, hides: bool = False) -> PathCheck:
        return PathCheck(path=path, kind=entry.kind, cls=cls, fix=fixed, hides_fix=hides)

    over = [a for a in _ancestors(path) if fix.touches(a)]
    if over:
        return checked(Class.CONFLICT), _conflict(
            path, f"the fix made {over[0]!r} a file or symlink, and the backup has {path!r} "
            "below it",
            entry, fix,
        ), None  # fmt: skip
    if regenerated(path):
        return checked(Class.REGENERATED, hides=changed or removed), None, None
    if entry.kind == "dir" and changed:
        reason = f"the backup has a folder where the fix {fixed} a file or symlink"
        return checked(Class.CONFLICT), _conflict(path, reason, entry, fix), None
    if entry.kind == "dir":
        return checked(Class.DIRECTORY), None, None
    if path in made:
        reason = f"the backup has a {entry.kind} where the fix made a folder, which it hides"
        return PathCheck(path=path, kind=entry.kind, cls=Class.CONFLICT, fix="added"), Conflict(
            path=path, reason=reason, backup=entry.sha256 or entry.kind,
            successor="folder (made by the fix)",
        ), None  # fmt: skip
    if entry.kind == "symlink" and fix.links.get(path, None) == entry.link:
        return checked(Class.STALE_COPY), None, None  # the successor has it already
    if entry.kind not in ("file", "hardlink"):
        if changed or removed:
            reason = f"the backup has a {entry.kind} where the fix {fixed} a file or symlink"
            return checked(Class.CONFLICT), _conflict(path, reason, entry, fix), None
        return checked(Class.USER_ONLY), None, None
    ours: Meta = (entry.mode, entry.uid, entry.gid)
    # a mode or owner the user set (a chmod, a chown): a change of the user's, as content is
    user_meta = path in ref_meta and ours != ref_meta[path]
    same_as_ref = ref_hashes.get(path) == entry.sha256 and not user_meta
    if not (changed or removed):
        return checked(Class.STALE_COPY if same_as_ref else Class.USER_ONLY), None, None
    if same_as_ref:
        return checked(Class.STALE_COPY, hides=True), None, None  # the successor's wins
    if (
        path in fix.files
        and content_hash(fix.files[path]) == entry.sha256
        and (not user_meta or fix.meta.get(path, ours) == ours)
    ):
        return checked(Class.STALE_COPY), None, None  # the successor has it already
    theirs = content_hash(fix.files[path]) if path in fix.files else ""
    if user_meta and entry.sha256 in (ref_hashes.get(path), theirs):
        reason = (
            f"the fix {fixed} it, and the backup changed only its mode or owner "
            f"({_meta(ref_meta[path])} in REF, {_meta(ours)} in the backup)"
        )
        return checked(Class.CONFLICT), _conflict(path, reason, entry, fix), None
    merge = merge_for(path) if path in fix.files and entry.kind == "file" else None
    if merge is not None and path in backup.contents:
        done = merge(ref_files.get(path, b""), backup.contents[path], fix.files[path])
        if done.conflicts:
            conflict = Conflict(
                path=path,
                reason=f"both changed {len(done.conflicts)} of its entries",
                backup=entry.sha256,
                successor=content_hash(fix.files[path]),
                entries=done.conflicts,
            )
            return checked(Class.CONFLICT), conflict, None
        record = Merge(path=path, from_backup=done.from_backup, from_successor=done.from_successor)
        return checked(Class.MERGED, hides=True), None, (record, done.content)
    reason = (
        "the fix deleted it, and the backup changed it"
        if removed
        else f"both changed it: the fix {fixed} it, and the backup's copy is neither REF's "
        "nor the successor's"
    )
    return checked(Class.CONFLICT), _conflict(path, reason, entry, fix), None


def _conflict(path: str, reason: str, entry: LayerEntry, fix: FixChanges) -> Conflict:
    ours = entry.sha256 or f"{entry.kind}{f' -> {entry.link}' if entry.link else ''}"
    if path in fix.files:
        theirs = content_hash(fix.files[path])
    elif path in fix.links:
        theirs = f"symlink -> {fix.links[path]}"
    elif fix.removes(path):
        theirs = "deleted"
    else:
        theirs = "unchanged"
    return Conflict(path=path, reason=reason, backup=ours, successor=theirs)


def _with_folders(
    touched: tuple[str, ...], made: frozenset[str], folder: str, *, itself: bool
) -> tuple[str, ...]:
    """The fix's files and symlinks at or below `folder`, and the folders it made there."""
    prefix = f"{folder}/"
    folders = {d for d in made if d.startswith(prefix) or (itself and d == folder)}
    return tuple(sorted({*touched, *(f"{d}/" for d in folders)}))


def _meta(meta: Meta) -> str:
    return f"mode {meta[0]:04o}, owner {meta[1]}:{meta[2]}"


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _listed(paths: tuple[str, ...], most: int = 5) -> str:
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")
