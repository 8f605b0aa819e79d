"""Package manifests (pure): Debian's dpkg status, pip distributions and conda packages read
from an image's files, diffs between two manifests, and the recorded history of one line.

A manifest is a sorted tuple of entries, one string per package as the sidecar stores it:
`name version arch` for a deb (what older sidecars hold), `pip:name version location` for a pip
distribution (location: its site-packages folder) and `conda:name version location` for a
conda package (location: its environment). A distribution that apt or conda installed is theirs:
it is listed once, as a deb or a conda package, never again as pip.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from imagectl.core.layerfiles import FileSelection, LayerChange

Kind = Literal["deb", "pip", "conda"]
KINDS: tuple[Kind, ...] = ("deb", "pip", "conda")
Manifest = tuple[str, ...]  # sorted entries

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_LISTS = re.compile(r"var/lib/dpkg/info/[^/]+\.list")
# A distribution's metadata in a site-packages or dist-packages folder (paths from the root).
DISTRIBUTION = re.compile(
    r"(?P<site>(?:.+/)?(?:site|dist)-packages)/(?P<dist>[^/]+\.(?:dist-info|egg-info))"
    r"(?P<file>/METADATA|/PKG-INFO)?"
)
CONDA_META = re.compile(r"(?P<prefix>(?:.+/)?)conda-meta/[^/]+\.json")


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    """One installed package: deb, pip or conda."""

    kind: Kind
    name: str
    version: str
    arch: str = ""  # a deb's architecture
    location: str = ""  # pip: its site-packages folder; conda: its environment

    @property
    def key(self) -> str:
        """What identifies the package across versions: a version change keeps it."""
        if self.kind == "deb":
            return f"{self.name}:{self.arch}" if self.arch else self.name
        return f"{self.kind}:{self.name}@{self.location}"

    @property
    def entry(self) -> str:
        if self.kind == "deb":
            return f"{self.name} {self.version} {self.arch}".strip()
        return f"{self.kind}:{self.name} {self.version} {self.location}"

    @property
    def label(self) -> str:
        """The package without its version, as a person reads it."""
        if self.kind == "deb":
            return f"{self.name}:{self.arch}" if self.arch else self.name
        return f"{self.name} ({self.kind}, {self.location})"

    def display(self) -> str:
        if self.kind == "deb":
            return self.entry
        return f"{self.name} {self.version} ({self.kind}, {self.location})"

    def to_json(self) -> dict[str, str]:
        found: dict[str, str] = {"name": self.name, "version": self.version, "kind": self.kind}
        if self.kind == "deb":
            found["arch"] = self.arch
        else:
            found["location"] = self.location
        return found


@lru_cache(maxsize=1 << 16)  # the same entries recur in every version of a line
def parse_entry(entry: str) -> Package:
    """A manifest entry as a Package; an entry without a kind is a deb (older sidecars)."""
    head, _, rest = entry.partition(" ")
    kind, colon, name = head.partition(":")
    if colon and kind in ("pip", "conda"):
        version, _, location = rest.partition(" ")
        return Package(kind=kind, name=name, version=version, location=location)  # type: ignore[arg-type]
    version, _, arch = rest.partition(" ")
    return Package(kind="deb", name=head, version=version, arch=arch)


def display(entry: str) -> str:
    return parse_entry(entry).display()


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageChange:
    """One package at another version."""

    before: Package
    after: Package

    @property
    def name(self) -> str:
        return self.before.label

    @property
    def old(self) -> str:
        return self.before.version

    @property
    def new(self) -> str:
        return self.after.version

    def to_json(self) -> dict[str, str]:
        found = {"package": self.before.key, **self.before.to_json()}
        del found["version"]
        return {**found, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageDiff:
    """Packages added, removed and changed between two manifests."""

    added: Manifest  # entries
    removed: Manifest
    changed: tuple[PackageChange, ...]

    @property
    def summary(self) -> str:
        """ "+added -removed ~changed", then each kind's share when more than debs changed."""
        total = f"+{len(self.added)} -{len(self.removed)} ~{len(self.changed)}"
        kinds = self.kind_counts()
        if set(kinds) <= {"deb"}:
            return total
        parts = []
        for kind, counts in kinds.items():
            numbers = zip("+-~", counts.values(), strict=True)
            parts.append(f"{kind} " + " ".join(f"{sign}{n}" for sign, n in numbers if n))
        return f"{total} ({', '.join(parts)})"

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
        }

    def kind_counts(self) -> dict[str, dict[str, int]]:
        """Counts per kind of package, for the kinds that changed at all."""
        found: dict[str, dict[str, int]] = {}
        for what, kinds in (
            ("added", (parse_entry(e).kind for e in self.added)),
            ("removed", (parse_entry(e).kind for e in self.removed)),
            ("changed", (c.before.kind for c in self.changed)),
        ):
            for kind in kinds:
                found.setdefault(kind, {"added": 0, "removed": 0, "changed": 0})[what] += 1
        return {kind: found[kind] for kind in KINDS if kind in found}

    def to_json(self) -> dict[str, object]:
        """Entries as objects: {"name", "version", "kind", "arch" (deb) or "location"};
        changes as {"package", "name", "kind", "arch" or "location", "old", "new"}."""
        return {
            "added": [parse_entry(e).to_json() for e in self.added],
            "removed": [parse_entry(e).to_json() for e in self.removed],
            "changed": [c.to_json() for c in self.changed],
        }

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_manifests(old: Iterable[str], new: Iterable[str]) -> PackageDiff:
    """What changed from `old` to `new`, keyed by kind, name and architecture or location."""
    before = {p.key: p for p in map(parse_entry, old)}
    after = {p.key: p for p in map(parse_entry, new)}
    added = tuple(sorted(after[k].entry for k in after.keys() - before.keys()))
    removed = tuple(sorted(before[k].entry for k in before.keys() - after.keys()))
    changed = tuple(
        PackageChange(before=before[k], after=after[k])
        for k in sorted(before.keys() & after.keys())
        if before[k].version != after[k].version
    )
    return PackageDiff(added=added, removed=removed, changed=changed)


def delta_of(diff: PackageDiff) -> tuple[Manifest, Manifest]:
    """(added, removed) entries as the sidecar stores them: a change is a removal and an add."""
    added = set(diff.added) | {c.after.entry for c in diff.changed}
    removed = set(diff.removed) | {c.before.entry for c in diff.changed}
    return tuple(sorted(added)), tuple(sorted(removed))


def apply_delta(manifest: Iterable[str], added: Iterable[str], removed: Iterable[str]) -> Manifest:
    return tuple(sorted((set(manifest) - set(removed)) | set(added)))


def of_kinds(manifest: Iterable[str], kinds: Iterable[str]) -> Manifest:
    wanted = set(kinds)
    return tuple(entry for entry in manifest if parse_entry(entry).kind in wanted)


# -- reading an image's packages from its files ------------------------------------------------


def wanted_file(path: str) -> bool:
    """Whether the manifest needs this file of the image (a path from the root, no leading /)."""
    if path == DPKG_STATUS or DPKG_LISTS.fullmatch(path) or CONDA_META.fullmatch(path):
        return True
    found = DISTRIBUTION.fullmatch(path)
    if found is None:
        return False
    if found["dist"].endswith(".dist-info"):
        return found["file"] == "/METADATA"
    return found["file"] in (None, "/PKG-INFO")  # an .egg-info file, or its folder's PKG-INFO


# `find -path` patterns selecting at least every file `wanted_file` takes (a `*` of find
# matches across folders, so these select more; `wanted_file` decides).
PACKAGE_GLOBS = (
    f"/{DPKG_STATUS}",
    "/var/lib/dpkg/info/*.list",
    "*-packages/*.dist-info/METADATA",
    "*-packages/*.egg-info",
    "*-packages/*.egg-info/PKG-INFO",
    "*/conda-meta/*.json",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFacts:
    """What one package database file says: packages it lists (dpkg's status: debs; a conda
    record: its package), distribution folders it says apt or conda installed, or (a pip
    distribution's metadata) the distribution and its folder."""

    entries: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()  # distribution folders, paths from the root
    folder: str = ""  # a pip distribution's .dist-info or .egg-info, from the root
    pip: str = ""  # its entry

    def to_json(self) -> list[object]:
        return [list(self.entries), list(self.owns), self.folder, self.pip]

    @classmethod
    def from_json(cls, raw: object) -> FileFacts:
        """The cached form; anything else raises ValueError (the cache is then not used)."""
        if not isinstance(raw, list) or len(raw) != 4:
            raise ValueError("not file facts")
        entries, owns, folder, pip = raw
        if not (
            isinstance(entries, list)
            and isinstance(owns, list)
            and isinstance(folder, str)
            and isinstance(pip, str)
            and all(isinstance(e, str) for e in (*entries, *owns))
        ):
            raise ValueError("not file facts")
        return cls(entries=tuple(entries), owns=tuple(owns), folder=folder, pip=pip)


Sources = Mapping[str, FileFacts]  # every package database file of an image, by path


def facts_of(path: str, content: bytes) -> FileFacts | None:
    """What the database file at `path` says; None for a file that says nothing (a record
    that is not JSON, metadata without a name)."""
    if path == DPKG_STATUS:
        return FileFacts(entries=parse_dpkg_status(content.decode(errors="replace")))
    if DPKG_LISTS.fullmatch(path):
        lines = content.decode(errors="replace").splitlines()
        owns = tuple(line.lstrip("/") for line in lines if line.endswith(DIST_SUFFIXES))
        return FileFacts(owns=owns) if owns else None
    conda = CONDA_META.fullmatch(path)
    if conda is not None:
        return _conda_facts(conda["prefix"].rstrip("/"), content)
    found = DISTRIBUTION.fullmatch(path)
    if found is not None:
        name, version = _name_and_version(content.decode(errors="replace"))
        if name:
            site = found["site"]
            package = Package(
                kind="pip", name=canonical_name(name), version=version, location=f"/{site}"
            )
            return FileFacts(folder=f"{site}/{found['dist']}", pip=package.entry)
    return None


DIST_SUFFIXES = (".dist-info", ".egg-info")


def _conda_facts(prefix: str, content: bytes) -> FileFacts | None:
    """A conda-meta/*.json record: its package, and the distribution folders it installed."""
    try:
        meta = json.loads(content)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not meta.get("name"):
        return None
    package = Package(
        kind="conda",
        name=str(meta["name"]),
        version=str(meta.get("version", "")),
        location=f"/{prefix}",
    )
    owns = set()
    for name in meta.get("files") or ():
        dist = re.search(r"^(.*?\.(?:dist-info|egg-info))(?:/|$)", str(name))
        if dist:
            owns.add(f"{prefix}/{dist[1]}".lstrip("/"))
    return FileFacts(entries=(package.entry,), owns=tuple(sorted(owns)))


def sources_from_files(files: Mapping[str, bytes]) -> dict[str, FileFacts]:
    """The facts of every database file among `files` (an image's wanted files)."""
    found = {}
    for path, content in files.items():
        facts = facts_of(path, content)
        if facts is not None:
            found[path] = facts
    return found


def manifest_from_sources(sources: Sources) -> Manifest:
    """Every deb, conda package and pip distribution the files say; a distribution that apt
    or conda installed is theirs, listed once as a deb or conda package, never as pip."""
    owned = {folder for facts in sources.values() for folder in facts.owns}
    entries = {entry for facts in sources.values() for entry in facts.entries}
    pips = {f.pip for f in sources.values() if f.pip and f.folder not in owned}
    return tuple(sorted(entries | pips))


def manifest_from_files(files: Mapping[str, bytes]) -> Manifest:
    """Every deb, pip distribution and conda package these files of an image describe."""
    return manifest_from_sources(sources_from_files(files))


def apply_layers(sources: Sources, changes: Iterable[LayerChange]) -> dict[str, FileFacts]:
    """The sources after each layer (bottom first), as an overlay merges them: a whiteout
    removes a path and all below it, an opaque folder hides what the layers below had in it,
    then the layer's own files replace or add theirs."""
    result = dict(sources)
    for change in changes:
        gone = [*change.deleted, *change.opaque]
        if gone:
            for path in [p for p in result if _under_any(p, change.deleted, change.opaque)]:
                del result[path]
        for path, content in change.files.items():
            facts = facts_of(path, content)
            if facts is None:
                result.pop(path, None)
            else:
                result[path] = facts
    return result


def _under_any(path: str, deleted: tuple[str, ...], opaque: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(f"{d}/") for d in deleted) or any(
        path.startswith(f"{o}/") for o in opaque
    )


def changes_packages(changes: Iterable[LayerChange], manifest: Manifest) -> bool:
    """Whether layers could change the packages of an image whose manifest is `manifest`,
    known without the image's database files: they add or replace a database file, or they
    delete (or hide) something at, above or below a place packages are recorded (dpkg's
    folder, a pip entry's site-packages, a conda environment). Deleting anything else (a
    cache, /tmp) changes no package."""
    roots = {"var/lib/dpkg"} | {
        package.location.strip("/")
        for package in map(parse_entry, manifest)
        if package.kind != "deb"
    }
    for change in changes:
        if change.files:
            return True
        for path in (*change.deleted, *change.opaque):
            if any(_related(path, root) for root in roots):
                return True
    return False


def _related(path: str, root: str) -> bool:
    """`path` is `root`, above it or below it ("" is the file system's root)."""
    if not root:
        return True
    return path == root or root.startswith(f"{path}/") or path.startswith(f"{root}/")


def parse_dpkg_status(text: str) -> Manifest:
    """Every installed package in /var/lib/dpkg/status as "name version arch", sorted."""
    entries = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # continuation lines (descriptions, conffiles)
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("status", "").endswith(" installed") and "package" in fields:
            entries.append(
                f"{fields['package']} {fields.get('version', '')} "
                f"{fields.get('architecture', '')}".strip()
            )
    return tuple(sorted(set(entries)))


def _name_and_version(metadata: str) -> tuple[str, str]:
    """Name and Version from the headers of a METADATA or PKG-INFO file."""
    fields: dict[str, str] = {}
    for line in metadata.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line; the description follows
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() in ("name", "version"):
            fields.setdefault(key.strip().lower(), value.strip())
    return fields.get("name", ""), fields.get("version", "")


PACKAGE_FILES = FileSelection(match=wanted_file, globs=PACKAGE_GLOBS)


def canonical_name(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): Foo_Bar and foo-bar are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- a line's recorded packages: the base, then what each version changed ----------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionDelta:
    """What one version changed in the package record, as the sidecar stores it."""

    added: Manifest = ()
    removed: Manifest = ()
    # Kinds recorded from this version on, by a sidecar that did not record them before, and
    # what the parent had of them: replay adds that first, and it is not part of the change.
    tracked: tuple[str, ...] = ()
    baseline: Manifest = ()

    def diff(self) -> PackageDiff:
        return diff_manifests(self.removed, self.added)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRecord:
    """The sidecar's content: the base's manifest and each version's delta to its parent."""

    base: Manifest = ()
    kinds: tuple[str, ...] = KINDS  # what the base records; an older sidecar's is ("deb",)
    versions: Mapping[int, VersionDelta] = field(default_factory=dict)

    def complete(self, upto: int) -> bool:
        return all(v in self.versions for v in range(1, upto + 1))

    def manifest(self, upto: int) -> Manifest:
        """The manifest of version `upto` (0 is the base); the record must be complete."""
        return self.manifests({upto})[upto] if upto else tuple(sorted(self.base))

    def manifests(self, wanted: Iterable[int]) -> dict[int, Manifest]:
        """The manifests of the `wanted` versions, from one pass over the deltas (asking for
        each alone would replay the record once per version)."""
        wanted = set(wanted)
        found: dict[int, Manifest] = {}
        current = set(self.base)
        for version in range(1, max(wanted, default=0) + 1):
            delta = self.versions[version]
            current = ((current | set(delta.baseline)) - set(delta.removed)) | set(delta.added)
            if version in wanted:
                found[version] = tuple(sorted(current))
        return found

    def kinds_at(self, version: int) -> tuple[str, ...]:
        """The kinds of package the manifest of `version` records."""
        tracked = set(self.kinds)
        for number, delta in self.versions.items():
            if number <= version:
                tracked |= set(delta.tracked)
        return tuple(kind for kind in KINDS if kind in tracked)

    def diff(self, old: int, new: int) -> PackageDiff:
        """From version `old` to `new`, over the kinds both record."""
        kinds = self.kinds_at(min(old, new))
        return diff_manifests(
            of_kinds(self.manifest(old), kinds), of_kinds(self.manifest(new), kinds)
        )

    def before(self, version: int) -> PackageRecord:
        """The record without `version` and later ones (left by an interrupted build)."""
        return replace(self, versions={v: d for v, d in self.versions.items() if v < version})

    def with_version(self, version: int, delta: VersionDelta) -> PackageRecord:
        return replace(self, versions={**self.versions, version: delta})
