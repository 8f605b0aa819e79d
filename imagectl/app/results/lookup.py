"""What the commands that read the locks alone hand back: plan, history, withdraw, query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl.core.model import (
    LinePlan,
    Lock,
    LockedVersion,
)

if TYPE_CHECKING:
    from imagectl.core.packages import PackageDiff
    from imagectl.core.query import DigestHit, PackageFound
    from imagectl.core.resolver import Resolution


@dataclass(frozen=True, slots=True, kw_only=True)
class Plans:
    plans: tuple[LinePlan, ...]

    def to_json(self) -> list[dict[str, object]]:
        return [plan.to_json() for plan in self.plans]


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    lock: Lock
    packages: dict[int, PackageDiff]  # what each version with a manifest changed

    def to_json(self) -> list[dict[str, object]]:
        from imagectl.core.history import history_records  # noqa: PLC0415 (not for resolve)

        return history_records(self.lock, self.packages)


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawal:
    line: str
    version: LockedVersion  # as the lock records it now
    oldest: Resolution  # what the line's oldest version resolves to now
    is_head: bool  # the newest version with an image: the next build is built on it

    @property
    def warnings(self) -> tuple[str, ...]:
        if not (self.version.withdrawn and self.is_head):
            return ()
        return (
            f"v{self.version.version} is the head of {self.line}: `imagectl build next` builds "
            f"the next version on it, as always, so make that version the fix (or set "
            f'[withdraw] build_on = "kept" in the line file to build it on the newest kept '
            "version instead, which forks the chain)",
        )

    def to_json(self) -> dict[str, object]:
        version = self.version
        return {
            "line": self.line,
            "version": version.version,
            "tag": version.tag,
            "withdrawn": version.withdrawn,
            "reason": version.withdrawn_reason,
            "by": version.withdrawn_by,
            "at": version.withdrawn_at,
            "oldest_resolves_to": self.oldest.newest.version,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageAnswer:
    """`imagectl query package`: every line and version that has the package."""

    name: str
    kind: str
    constraint: str
    found: PackageFound

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.found.warnings

    def to_json(self) -> dict[str, object]:
        hits = self.found.hits
        return {
            "query": {"name": self.name, "kind": self.kind, "version": self.constraint},
            "lines": len({hit.line for hit in hits}),
            "versions": len({(hit.line, hit.version.version) for hit in hits}),
            "hits": [hit.to_json() for hit in hits],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestAnswer:
    """`imagectl query digest`: the versions (or bases) a digest names, with their successors."""

    digest: str
    hits: tuple[DigestHit, ...]

    def to_json(self) -> dict[str, object]:
        return {"query": self.digest, "hits": [hit.to_json() for hit in self.hits]}


@dataclass(frozen=True, slots=True, kw_only=True)
class SbomMade:
    """`imagectl sbom`: a version's SPDX document, as bytes (what `publish` pushes too)."""

    line: str
    version: LockedVersion
    data: bytes
    packages: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> object:
        import json  # noqa: PLC0415 (the document is already JSON)

        return json.loads(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteMade:
    """`imagectl site`: where the site is and how much of it was rendered anew."""

    out: Path
    pages: int
    rendered: int  # the rest were unchanged, linked from the site before

    def to_json(self) -> dict[str, object]:
        return {"out": str(self.out), "pages": self.pages, "rendered": self.rendered}
