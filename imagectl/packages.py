"""Debian package manifests: parsing dpkg's status file and diffing two manifests (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Manifest = tuple[str, ...]  # sorted "name version arch" entries


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageChange:
    name: str  # name:arch
    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageDiff:
    added: tuple[str, ...]  # "name version arch"
    removed: tuple[str, ...]
    changed: tuple[PackageChange, ...]

    @property
    def summary(self) -> str:
        return f"+{len(self.added)} -{len(self.removed)} ~{len(self.changed)}"

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
        }

    def to_json(self) -> dict[str, object]:
        """Entries as objects: {"name", "version", "arch"}; changes as {"package", "old", "new"}."""
        return {
            "added": [package_entry(e) for e in self.added],
            "removed": [package_entry(e) for e in self.removed],
            "changed": [{"package": c.name, "old": c.old, "new": c.new} for c in self.changed],
        }

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def package_entry(entry: str) -> dict[str, str]:
    """A manifest entry "name version arch" as an object."""
    name, version, arch = ([*entry.split(" "), "", ""])[:3]
    return {"name": name, "version": version, "arch": arch}


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


def _by_key(manifest: Iterable[str]) -> dict[str, str]:
    table = {}
    for entry in manifest:
        name, version, arch = ([*entry.split(" "), "", ""])[:3]
        table[f"{name}:{arch}"] = version
    return table


def diff_manifests(old: Iterable[str], new: Iterable[str]) -> PackageDiff:
    """What changed from `old` to `new`, keyed by name and architecture."""
    before, after = _by_key(old), _by_key(new)
    added = tuple(sorted(_entry(k, after[k]) for k in after.keys() - before.keys()))
    removed = tuple(sorted(_entry(k, before[k]) for k in before.keys() - after.keys()))
    changed = tuple(
        PackageChange(name=k, old=before[k], new=after[k])
        for k in sorted(before.keys() & after.keys())
        if before[k] != after[k]
    )
    return PackageDiff(added=added, removed=removed, changed=changed)


def apply_delta(manifest: Iterable[str], added: Iterable[str], removed: Iterable[str]) -> Manifest:
    return tuple(sorted((set(manifest) - set(removed)) | set(added)))


def replay(base: Manifest, deltas: Mapping[int, tuple[Manifest, Manifest]], upto: int) -> Manifest:
    """The manifest of version `upto`, from the base and each version's (added, removed)."""
    current = base
    for version in range(1, upto + 1):
        added, removed = deltas.get(version, ((), ()))
        current = apply_delta(current, added, removed)
    return current


def _entry(key: str, version: str) -> str:
    name, _, arch = key.rpartition(":")
    return f"{name} {version} {arch}".strip()
