"""`imagectl query package` and `imagectl query digest`: questions across every line, answered
from the locks and package records, without the engine."""

from __future__ import annotations

import argparse
from itertools import groupby

from imagectl.app.lookups import query_digest as find_digest
from imagectl.app.lookups import query_package as find_package
from imagectl.app.project import Project
from imagectl.app.results.lookup import DigestAnswer, PackageAnswer
from imagectl.commands import versions_text
from imagectl.commands.outcome import Outcome


def query_package(args: argparse.Namespace, project: Project) -> Outcome:
    found = find_package(project, args.name, kind=args.kind or "", version=args.version or "")
    return Outcome(found, package_text(found), warnings=found.warnings)


def query_digest(args: argparse.Namespace, project: Project) -> Outcome:
    found = find_digest(project, args.digest)
    return Outcome(found, digest_text(found))


def package_text(found: PackageAnswer) -> str:
    """One row per line and package version: the versions of the line that have it, as runs."""
    asked = found.name + (f" ({found.kind})" if found.kind else "")
    asked += f" {found.constraint}" if found.constraint else ""
    hits = found.found.hits
    if not hits:
        return f"no version of any line has {asked}"
    rows = []
    by_package = sorted(hits, key=lambda h: (h.line, h.package.entry, h.version.version))
    for (line, _), group in groupby(by_package, key=lambda h: (h.line, h.package.entry)):
        same = list(group)
        newest = " (newest)" if same[-1].newest else ""
        versions = versions_text(tuple(h.version.version for h in same))
        rows.append((line, versions + newest, same[0].package.display()))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    line_count = len({h.line for h in hits})
    version_count = len({(h.line, h.version.version) for h in hits})
    head = (
        f"{asked}: {version_count} version{'s' * (version_count != 1)} of {line_count} "
        f"line{'s' * (line_count != 1)}"
    )
    return "\n".join([head, *(f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)])


def digest_text(found: DigestAnswer) -> str:
    rows = []
    for hit in found.hits:
        if hit.version is None or hit.resolution is None:
            rows.append(f"{hit.line}: the line's base")
            continue
        what = "registry digest" if hit.what == "digest" else "image id"
        withdrawn = " (withdrawn)" if hit.version.withdrawn else ""
        rows.append(
            f"{hit.line} v{hit.version.version}{withdrawn}: {hit.version.tag} ({what}); "
            f"a pod restored from it starts on v{hit.resolution.newest.version}: "
            f"{hit.resolution.reference}"
        )
    return "\n".join(rows)
