"""`imagectl audit`: what the registry serves now for every published version.

Registries overwrite tags silently (CNCF distribution), retention policies delete, people push
by hand. One HEAD per tag says whether the tag still names the recorded digest; only when it
does not, a second HEAD asks whether the recorded digest itself still exists. A version with an
SBOM costs a HEAD of the SBOM and a GET of its referrers index more.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from imagectl.app.results.publish import (
    ArchiveStatus,
    AuditReport,
    AuditStatus,
    Finding,
    SbomStatus,
)
from imagectl.core.archive import archive_tag
from imagectl.core.model import Lock, LockedVersion
from imagectl.core.ports import Registry
from imagectl.core.references import pinned, repository_of

CONCURRENCY = 16  # HEAD requests in flight at once


def audit_locks(locks: Sequence[Lock], *, registry: Registry) -> AuditReport:
    """Check every published version of `locks` against the registry, CONCURRENCY at a time."""
    work = [(lock.line, v) for lock in locks for v in lock.built_versions if v.digest]
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        findings = list(pool.map(lambda item: _check(*item, registry=registry), work))
    return AuditReport(findings=tuple(findings))


def _check(line: str, version: LockedVersion, *, registry: Registry) -> Finding:
    served = registry.exists(version.tag) or ""
    if served == version.digest:
        status: AuditStatus = "ok"
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
        sbom=_sbom_status(version, registry=registry) if digest_exists else "",
        archive=_archive_status(version, registry=registry),
    )


def _archive_status(version: LockedVersion, *, registry: Registry) -> ArchiveStatus:
    """Whether the version's input archive is stored under its tag as the lock records it."""
    if not version.archive_state:
        return ""
    if not version.archive:
        return "unstored"
    tag = archive_tag(repository_of(version.tag), version.version)
    served = registry.exists(tag)
    if served == version.archive:
        return "ok"
    if served:
        return "changed"
    kept = registry.exists(pinned(repository_of(tag), version.archive)) == version.archive
    return "missing" if not kept else "changed"


def _sbom_status(version: LockedVersion, *, registry: Registry) -> SbomStatus:
    """Whether the recorded SBOM is still stored and still listed as the image's referrer."""
    if not version.sbom:
        return ""
    repository = repository_of(version.tag)
    if registry.exists(pinned(repository, version.sbom)) != version.sbom:
        return "missing"
    listed = registry.referrers(pinned(repository, version.digest))
    return "ok" if any(found.digest == version.sbom for found in listed) else "unlisted"
