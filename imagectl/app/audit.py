"""`imagectl audit`: what the registry serves now for every published version.

Registries overwrite tags silently (CNCF distribution), retention policies delete, people push
by hand. One HEAD per tag says whether the tag still names the recorded digest; only when it
does not, a second HEAD asks whether the recorded digest itself still exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from imagectl.core.model import Lock, LockedVersion
from imagectl.core.ports import Registry
from imagectl.core.references import pinned, repository_of

Status = Literal["ok", "tampered", "missing", "deleted"]
CONCURRENCY = 16  # HEAD requests in flight at once


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    line: str
    version: int
    tag: str
    recorded: str  # the digest the lock records
    status: Status
    served: str  # what the tag names now ("" when it is gone)
    digest_exists: bool  # the recorded digest can still be pulled by digest

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "version": self.version,
            "tag": self.tag,
            "status": self.status,
            "recorded": self.recorded,
            "served": self.served or None,
            "digest_exists": self.digest_exists,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    findings: tuple[Finding, ...]  # every published version, oldest first per line

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status != "ok")

    def to_json(self) -> dict[str, object]:
        return {
            "checked": len(self.findings),
            "problems": len(self.problems),
            "findings": [f.to_json() for f in self.findings],
        }


def audit_locks(locks: Sequence[Lock], *, registry: Registry) -> AuditReport:
    """Check every published version of `locks` against the registry, CONCURRENCY at a time."""
    work = [(lock.line, v) for lock in locks for v in lock.built_versions if v.digest]
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        findings = list(pool.map(lambda item: _check(*item, registry=registry), work))
    return AuditReport(findings=tuple(findings))


def _check(line: str, version: LockedVersion, *, registry: Registry) -> Finding:
    served = registry.exists(version.tag) or ""
    if served == version.digest:
        status: Status = "ok"
        digest_exists = True
    else:
        by_digest = pinned(repository_of(version.tag), version.digest)
        digest_exists = registry.exists(by_digest) == version.digest
        # Another digest under the tag is tampering, whether or not the recorded one is left.
        status = "tampered" if served else ("missing" if digest_exists else "deleted")
    return Finding(
        line=line,
        version=version.version,
        tag=version.tag,
        recorded=version.digest,
        status=status,
        served=served,
        digest_exists=digest_exists,
    )
