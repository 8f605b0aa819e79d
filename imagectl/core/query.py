"""Questions across every line and version, answered from the locks and package records (pure):
which versions have a package (at which versions of it), and which version a digest names.

A version's packages are its line's base manifest plus every delta up to it, in version order,
as the package record stores them. Only the entries of the asked-for package are replayed, so
a query costs the size of the records, not lines x versions x packages.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from imagectl.core.model import Lock, LockedVersion
from imagectl.core.packages import KINDS, Package, PackageRecord, canonical_name, parse_entry
from imagectl.core.resolver import HEX, Resolution, matched_by, newest_on
from imagectl.core.versionorder import Constraint, NotComparableError


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageQuery:
    """A package by name (a glob such as `libssl*` matches several), of one kind or any, at the
    versions the constraint allows. pip names compare as pip does (Foo_Bar is foo-bar)."""

    name: str
    kind: str = ""  # "" for every kind
    constraint: Constraint = field(default_factory=Constraint)

    def matcher(self) -> Callable[[str], bool]:
        """Whether a manifest entry is this package at any version: made once per query, as
        it is asked of every entry of every record (a plain name is three string tests)."""
        if any(char in self.name for char in "*?["):
            return self._wants
        deb, conda = f"{self.name} ", f"conda:{self.name} "
        pip = canonical_name(self.name)
        kinds = self.kind or "deb pip conda"

        def wants(entry: str) -> bool:
            if entry.startswith("pip:"):
                return "pip" in kinds and canonical_name(entry[4:].partition(" ")[0]) == pip
            return ("deb" in kinds and entry.startswith(deb)) or (
                "conda" in kinds and entry.startswith(conda)
            )

        return wants

    def _wants(self, entry: str) -> bool:
        head = entry.partition(" ")[0]
        kind, colon, name = head.partition(":")
        if not (colon and kind in ("pip", "conda")):
            kind, name = "deb", head
        if self.kind and kind != self.kind:
            return False
        wanted = self.name
        if kind == "pip":
            name, wanted = canonical_name(name), canonical_name(wanted)
        return fnmatch.fnmatchcase(name, wanted)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageHit:
    line: str
    version: LockedVersion
    package: Package
    newest: bool  # the line's newest built version

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "version": self.version.version,
            "tag": self.version.tag,
            "digest": self.version.digest,
            "image_id": self.version.image_id,
            "built_at": self.version.built_at,
            "newest": self.newest,
            "withdrawn": self.version.withdrawn,
            "package": self.package.to_json(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageFound:
    hits: tuple[PackageHit, ...]  # by line, then version, then package
    warnings: tuple[str, ...]  # lines or versions that could not be asked


def find_package(query: PackageQuery, lines: Iterable[tuple[Lock, PackageRecord]]) -> PackageFound:
    hits: list[PackageHit] = []
    warnings: list[str] = []
    # The same few package versions recur in every version of every line: each entry is parsed
    # and held against the constraint once per query.
    judged: dict[str, tuple[Package, bool | str]] = {}
    for lock, record in lines:
        found, said = _line_hits(query, lock, record, judged)
        hits += found
        warnings += said
    return PackageFound(hits=tuple(hits), warnings=tuple(warnings))


def _line_hits(
    query: PackageQuery,
    lock: Lock,
    record: PackageRecord,
    judged: dict[str, tuple[Package, bool | str]],
) -> tuple[list[PackageHit], list[str]]:
    built = {version.version: version for version in lock.built_versions}
    if not built or (query.kind and query.kind not in KINDS):
        return [], []
    newest = max(built)
    wants = query.matcher()
    current = {entry for entry in record.base if wants(entry)}
    hits: list[PackageHit] = []
    uncompared: set[str] = set()
    for number in range(1, newest + 1):
        delta = record.versions.get(number)
        if delta is None:
            return hits, [
                f"{lock.line}: v{number} and later have no package record (built before "
                "imagectl recorded packages, or the record is gone): not asked"
            ]
        current |= {entry for entry in delta.baseline if wants(entry)}
        current -= set(delta.removed)
        current |= {entry for entry in delta.added if wants(entry)}
        version = built.get(number)
        if version is None:
            continue  # skipped: no image
        for entry in sorted(current):
            package, allowed = judged.get(entry) or judged.setdefault(entry, _judge(query, entry))
            if allowed is True:
                hits.append(
                    PackageHit(
                        line=lock.line, version=version, package=package, newest=number == newest
                    )
                )
            elif allowed:
                uncompared.add(entry)
    return hits, [
        f"{lock.line}: {judged[entry][0].display()} not compared with {query.constraint} "
        f"({judged[entry][1]})"
        for entry in sorted(uncompared)
    ]


def _judge(query: PackageQuery, entry: str) -> tuple[Package, bool | str]:
    """The entry as a package, and whether the constraint allows it (or why it cannot say)."""
    package = parse_entry(entry)
    try:
        return package, query.constraint.holds(package.kind, package.version)
    except NotComparableError as exc:
        return package, str(exc)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestHit:
    """A version (or a line's base) that a digest or image id names, and where a pod restored
    from a backup taken on it starts today."""

    line: str
    what: str  # "digest" (the registry's), "image_id", "base"
    version: LockedVersion | None  # None for the base
    resolution: Resolution | None  # None for the base

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {"line": self.line, "matched": self.what}
        if self.version is not None:
            found |= {
                "version": self.version.version,
                "tag": self.version.tag,
                "digest": self.version.digest,
                "image_id": self.version.image_id,
                "withdrawn": self.version.withdrawn,
            }
        if self.resolution is not None:
            found["successor"] = self.resolution.to_json()
        return found


def find_digest(text: str, locks: Sequence[Lock]) -> tuple[DigestHit, ...]:
    """Every version whose registry digest or image id is `text` (or starts with it: 12 hex
    digits or more), and every line built on that base."""
    hexed = HEX.match(text.strip())
    if hexed is None:
        return ()
    prefix = f"sha256:{hexed.group(1)}"
    hits: list[DigestHit] = []
    for lock in locks:
        if lock.base_digest.startswith(prefix) or lock.base_image_id.startswith(prefix):
            hits.append(DigestHit(line=lock.line, what="base", version=None, resolution=None))
        for version in lock.built_versions:
            what = matched_by(text, version)
            if what:
                resolution = newest_on(lock, version, query=text.strip())
                hits.append(
                    DigestHit(line=lock.line, what=what, version=version, resolution=resolution)
                )
    return tuple(hits)
