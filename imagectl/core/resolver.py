"""Resolving any reference of a built version to the newest version of its line."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from imagectl.core.errors import PlanError
from imagectl.core.model import Lock, LockedVersion
from imagectl.core.references import digest_of, is_pinned, pinned, repository_of, without_digest
from imagectl.core.withdrawals import chain_from

HEX = re.compile(r"^(?:sha256:)?([0-9a-f]{12,64})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """Where a tag resolves: the version that built it and its newest successor."""

    query: str
    line: str
    matched: LockedVersion
    newest: LockedVersion
    # Withdrawn versions built on `matched` that a pod would have landed on but for that.
    withdrawn_skipped: tuple[LockedVersion, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        """What a pod should start on: the tag pinned by registry digest when published."""
        if self.newest.digest:
            return pinned(self.newest.tag, self.newest.digest)
        return self.newest.tag

    def to_json(self) -> dict[str, object]:
        return {
            "query": self.query,
            "line": self.line,
            "version": self.matched.version,
            "newest": self.newest.version,
            "tag": self.newest.tag,
            "digest": self.newest.digest,
            "image_id": self.newest.image_id,
            "reference": self.reference,
            "published": bool(self.newest.digest),
            "withdrawn": self.newest.withdrawn,
            "withdrawn_skipped": [
                {"version": v.version, "tag": v.tag, "reason": v.withdrawn_reason}
                for v in self.withdrawn_skipped
            ],
            "warnings": list(self.warnings),
        }


def resolve_ref(query: str, locks: Sequence[Lock]) -> Resolution:
    """The newest version of the line that built `query` (repo:vN, repo@sha256:..., image id)."""
    ref = query.strip()
    matches = [
        (lock, version)
        for lock in locks
        for version in lock.built_versions
        if _matches(ref, lock, version)
    ]
    if not matches:
        raise PlanError(
            f"no image line built {ref!r}.",
            hint="Give repo:vN, repo@sha256:<registry digest> or an image id of a version that "
            "a lockfile in lock/ records (see `imagectl history LINE`).",
        )
    lines = {lock.line for lock, _ in matches}
    if len(lines) > 1:
        raise PlanError(
            f"{ref!r} matches versions of several lines ({', '.join(sorted(lines))}).",
            hint="Give a longer image id or the full reference.",
        )
    lock, matched = matches[0]
    return newest_on(lock, matched, query=ref)


def newest_on(lock: Lock, matched: LockedVersion, *, query: str) -> Resolution:
    """The newest version built on `matched` that is not withdrawn: published when the line
    has published any (a pod starts on what the registry serves), and never older than
    `matched` (never send a pod back to an older image than it was on)."""
    chain = chain_from(lock, matched)
    any_published = any(v.digest for v in lock.built_versions)
    kept = [v for v in chain if not v.withdrawn and (v.digest or not any_published)]
    newest = kept[-1] if kept else matched
    passed = tuple(v for v in chain if v.withdrawn and v.version > newest.version)
    warnings = [
        f"v{v.version} of {lock.line} is withdrawn ({v.withdrawn_reason}): passed over"
        for v in passed
    ]
    if newest.withdrawn:
        warnings.append(
            f"v{newest.version} of {lock.line} is withdrawn ({newest.withdrawn_reason}) and no "
            "version built on it is kept: answering it itself; build a fix on it "
            f"(imagectl build next {lock.line})"
        )
    return Resolution(
        query=query,
        line=lock.line,
        matched=matched,
        newest=newest,
        withdrawn_skipped=passed,
        warnings=tuple(warnings),
    )


def _matches(ref: str, lock: Lock, version: LockedVersion) -> bool:
    if is_pinned(ref):
        name, digest = without_digest(ref), digest_of(ref)
        if repository_of(name) != lock.repository:
            return False
        if name not in (lock.repository, version.tag):
            return False  # repo:vN@digest must name this very version
        return digest in (version.digest, version.image_id)
    if HEX.match(ref):
        return bool(matched_by(ref, version))
    return ref == version.tag


def matched_by(ref: str, version: LockedVersion) -> str:
    """Which of the version's digests a bare digest or image id (or 12+ hex digits of one)
    names: "digest" (the registry's), "image_id", or ""."""
    hexed = HEX.match(ref.strip())
    if hexed is None:
        return ""
    prefix = f"sha256:{hexed.group(1)}"
    if version.digest and version.digest.startswith(prefix):
        return "digest"
    return "image_id" if version.image_id.startswith(prefix) else ""
