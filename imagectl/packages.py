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
from typing import Literal

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


def manifest_from_files(files: Mapping[str, bytes]) -> Manifest:
    """Every deb, pip distribution and conda package these files of an image describe."""
    status = files.get(DPKG_STATUS)
    debs = parse_dpkg_status(status.decode(errors="replace")) if status else ()
    owned = _dpkg_owned(files)
    conda, conda_owned = _conda_packages(files)
    pips = _pip_distributions(files, owned | conda_owned)
    return tuple(sorted({*debs, *pips, *conda}))


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


def _dpkg_owned(files: Mapping[str, bytes]) -> set[str]:
    """The distribution folders and files dpkg installed (its info/*.list files name them)."""
    owned = set()
    for path, content in files.items():
        if DPKG_LISTS.fullmatch(path):
            for line in content.decode(errors="replace").splitlines():
                if line.endswith((".dist-info", ".egg-info")):
                    owned.add(line.lstrip("/"))
    return owned


def _conda_packages(files: Mapping[str, bytes]) -> tuple[set[str], set[str]]:
    """conda's packages (conda-meta/*.json of each environment) and the distribution folders
    they installed."""
    entries, owned = set(), set()
    for path, content in files.items():
        found = CONDA_META.fullmatch(path)
        if found is None:
            continue
        try:
            meta = json.loads(content)
        except ValueError:
            continue
        if not isinstance(meta, dict) or not meta.get("name"):
            continue
        prefix = found["prefix"].rstrip("/")
        package = Package(
            kind="conda",
            name=str(meta["name"]),
            version=str(meta.get("version", "")),
            location=f"/{prefix}",
        )
        entries.add(package.entry)
        for name in meta.get("files") or ():
            dist = re.search(r"^(.*?\.(?:dist-info|egg-info))(?:/|$)", str(name))
            if dist:
                owned.add(f"{prefix}/{dist[1]}".lstrip("/"))
    return entries, owned


def _pip_distributions(files: Mapping[str, bytes], owned: set[str]) -> set[str]:
    entries = set()
    for path, content in files.items():
        found = DISTRIBUTION.fullmatch(path)
        if found is None or f"{found['site']}/{found['dist']}" in owned:
            continue
        name, version = _name_and_version(content.decode(errors="replace"))
        if name:
            package = Package(
                kind="pip", name=canonical_name(name), version=version, location=f"/{found['site']}"
            )
            entries.add(package.entry)
    return entries


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


def canonical_name(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): Foo_Bar and foo-bar are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- a line's recorded packages: the base, then what each version changed ----------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionDelta:
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
        current = set(self.base)
        for version in range(1, upto + 1):
            delta = self.versions[version]
            current = ((current | set(delta.baseline)) - set(delta.removed)) | set(delta.added)
        return tuple(sorted(current))

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
