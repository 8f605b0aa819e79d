"""What `restore-check` hands back: the verdict on a pod backup laid over its successor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagectl.core.resolver import Resolution
    from imagectl.core.restores import RestoreCheck


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreReport:
    backup: str  # the backup's path, as given
    resolution: Resolution  # REF and the successor a restored pod starts on
    check: RestoreCheck
    added_layers: int  # the successor's layers above REF's, the only ones read
    read_from: str = "engine"  # "engine" (its overlay2 store here) or "registry" (the blobs)
    written: str = ""  # the merged layer's path, when --write wrote it

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.resolution.warnings

    def to_json(self) -> dict[str, object]:
        found, check = self.resolution, self.check
        return {
            "backup": self.backup,
            "on": found.query,
            "line": found.line,
            "version": found.matched.version,
            "successor": {
                "version": found.newest.version,
                "tag": found.newest.tag,
                "reference": found.reference,
                "added_layers": self.added_layers,
                "read_from": self.read_from,
            },
            "verdict": str(check.verdict),
            "counts": check.counts(),
            "paths": [path.to_json() for path in check.paths],
            "conflicts": [conflict.to_json() for conflict in check.conflicts],
            "merges": [merge.to_json() for merge in check.merges],
            "refusals": [{"path": path, "mark": mark} for path, mark in check.refusals],
            "written": self.written or None,
            "warnings": list(self.warnings),
        }
