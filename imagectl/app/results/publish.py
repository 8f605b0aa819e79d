"""What `publish`, `audit` and the CI job hand back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from imagectl.core.errors import (
        Failures,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedVersion:
    line: str
    version: int
    tag: str
    digest: str
    # recorded: the registry already had this very image; would push: a dry run's plan
    action: Literal["pushed", "recorded", "would push"]

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "version": self.version,
            "tag": self.tag,
            "digest": self.digest,
            "action": self.action,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedSbom:
    line: str
    version: int
    digest: str  # the SBOM artifact's manifest digest ("" in a dry run's plan)

    def to_json(self) -> dict[str, object]:
        return {"line": self.line, "version": self.version, "digest": self.digest}


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredArchive:
    """A version's input archive stored by `publish` under `<repository>-inputs:v<N>`."""

    line: str
    version: int
    digest: str
    files: int
    complete: bool

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line, "version": self.version, "digest": self.digest,
            "files": self.files, "complete": self.complete,
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    published: tuple[PublishedVersion, ...]
    failures: Failures
    dry_run: bool = False
    sboms: tuple[AttachedSbom, ...] = ()
    archives: tuple[StoredArchive, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "published": [p.to_json() for p in self.published],
            "sboms": [s.to_json() for s in self.sboms],
            "archives": [a.to_json() for a in self.archives],
            "failures": [{"line": line, **exc.to_json()} for line, exc in self.failures],
        }


AuditStatus = Literal["ok", "tampered", "missing", "deleted"]
# The SBOM attached to it: none recorded (""), there and listed, gone, or no longer listed
# under the referrers tag (so clients looking for the image's SBOM would not find it).
SbomStatus = Literal["", "ok", "missing", "unlisted"]
# Its input archive: none to check (""), stored as recorded, not stored yet although the
# version keeps one ("unstored"), gone, or its tag naming other content ("changed").
ArchiveStatus = Literal["", "ok", "unstored", "missing", "changed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    line: str
    version: int
    tag: str
    recorded: str  # the digest the lock records
    status: AuditStatus
    served: str  # what the tag names now ("" when it is gone)
    digest_exists: bool  # the recorded digest can still be pulled by digest
    sbom: SbomStatus = ""
    archive: ArchiveStatus = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.sbom in ("", "ok") and self.archive in ("", "ok")

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "version": self.version,
            "tag": self.tag,
            "status": self.status,
            "recorded": self.recorded,
            "served": self.served or None,
            "digest_exists": self.digest_exists,
            "sbom": self.sbom or None,
            "archive": self.archive or None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    findings: tuple[Finding, ...]  # every published version, oldest first per line

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.ok)

    def to_json(self) -> dict[str, object]:
        return {
            "checked": len(self.findings),
            "problems": len(self.problems),
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    lines: tuple[str, ...]  # the lines this job worked on
    tags: tuple[str, ...]  # built or published by this job, as named in the commit
    commit: str  # the lock commit pushed, "" when there was nothing to commit
    attempts: int

    def to_json(self) -> dict[str, object]:
        return {
            "lines": list(self.lines),
            "tags": list(self.tags),
            "commit": self.commit,
            "attempts": self.attempts,
        }
