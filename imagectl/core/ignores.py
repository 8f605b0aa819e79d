"""What `verify` does not count as drift: files that differ on every faithful build (pure).

Glob patterns from the image root: `*` and `?` within one path segment, `**` as a whole segment
for any number of segments. A pattern that names a directory covers everything below it. The
default list holds what apt, dpkg and pip write differently on every run; a line adds its own
with `[verify] ignore = [...]` in its line file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from imagectl.core.trees import TreeDiff

# Each entry is here because it differs between two faithful builds of the same Dockerfile.
DEFAULT_IGNORE: tuple[str, ...] = (
    "/**/__pycache__",  # byte code: pip and python compile with the build's timestamps
    "/**/*.pyc",
    "/var/log/dpkg.log",  # dpkg's, apt's and update-alternatives' logs: dates and times
    "/var/log/alternatives.log",
    "/var/log/apt/*",
    "/var/cache/ldconfig/aux-cache",  # ldconfig's cache keyed by inode and mtime
    "/var/cache/debconf/*-old",  # debconf's copy of its database before the last change
    "/var/cache/apt/*.bin",  # apt's package caches (pkgcache.bin, srcpkgcache.bin): rebuilt by
    # every apt-get update, with the lists' times inside
    "/var/lib/apt/lists/*",  # the mirror's indices as fetched: security and updates re-sign their
    # Release several times a day, so a rebuild minutes later fetches newer ones (what got installed
    # is compared by the package databases, not by the lists)
    "/etc/machine-id",  # written once per install (systemd, dbus)
    "/tmp/*",  # noqa: S108 - scratch space left by build steps, never created here
)


def check_pattern(pattern: str) -> str:
    """The reason `pattern` is not a usable ignore pattern, or ""."""
    if not pattern.startswith("/") or not pattern.strip("/"):
        return "patterns match from the image root: start with / and name something below it"
    if "//" in pattern:
        return "a pattern has no empty path segment (//)"
    if any("**" in part and part != "**" for part in pattern.split("/")):
        return "** stands alone as a whole path segment (/**/name, /dir/**)"
    return ""


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    segments = pattern.strip("/").split("/")
    pieces = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            pieces.append(".*" if last else "(?:[^/]+/)*")
            continue
        text = "".join(
            "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            for char in segment
        )
        pieces.append(text if last else f"{text}/")
    return re.compile("".join(pieces) + "(?:/.*)?")  # and everything below a directory


def matching(path: str, patterns: Iterable[str]) -> str:
    """The first pattern that covers `path` (relative to the image root), or ""."""
    for pattern in patterns:
        if _compiled(pattern).fullmatch(path):
            return pattern
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """How many differences each pattern silenced (patterns that silenced none left out)."""

    counts: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        return sum(count for _, count in self.counts)

    def to_json(self) -> dict[str, object]:
        return {"total": self.total, "by_pattern": dict(self.counts)}


def split_ignored(diff: TreeDiff, patterns: tuple[str, ...]) -> tuple[TreeDiff, Ignored]:
    """The differences that are drift, and the count of those the patterns cover."""
    counts = dict.fromkeys(patterns, 0)

    def kept(path: str) -> bool:
        pattern = matching(path, patterns)
        if pattern:
            counts[pattern] += 1
        return not pattern

    drift = TreeDiff(
        missing=tuple(p for p in diff.missing if kept(p)),
        extra=tuple(p for p in diff.extra if kept(p)),
        different=tuple((p, kind) for p, kind in diff.different if kept(p)),
    )
    return drift, Ignored(counts=tuple((p, n) for p, n in counts.items() if n))
