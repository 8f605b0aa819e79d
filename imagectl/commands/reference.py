"""`squash`, `render` and `diff`: a line's reference Dockerfile, one version's exact
Dockerfile, and what changed between two versions."""

from __future__ import annotations

import argparse

from imagectl.app import workflows
from imagectl.app.project import Project
from imagectl.app.results.build import References, ReferenceStatus, Rendered, VersionDiff
from imagectl.commands.exits import EXIT_CHECK, EXIT_OK
from imagectl.commands.outcome import Outcome
from imagectl.core.packages import display


def squash(args: argparse.Namespace, project: Project) -> Outcome:
    found = References(references=workflows.squash_lines(project, args.lines, check=args.check))
    stale = any(r.state == "stale" for r in found.references)
    return Outcome(found, references_text(found), EXIT_CHECK if stale else EXIT_OK)


def references_text(result: References) -> str:
    def what(item: ReferenceStatus) -> str:
        return "stale: run `imagectl squash`" if item.state == "stale" else item.state

    return "\n".join(f"{r.line}: {r.path} {what(r)}" for r in result.references)


def render(args: argparse.Namespace, project: Project) -> Outcome:
    text = workflows.render_version(project, args.line, args.version)
    found = Rendered(line=args.line, version=args.version, dockerfile=text)
    return Outcome(found, found.dockerfile.rstrip("\n"))


def diff(args: argparse.Namespace, project: Project) -> Outcome:
    found = workflows.diff_versions(project, args.line, args.old, args.new)
    return Outcome(found, diff_text(found))


def diff_text(found: VersionDiff) -> str:
    pkgs = found.packages
    out = [f"{found.line}: v{found.old} -> v{found.new}: packages {pkgs.summary}"]
    out += [f"  + {display(entry)}" for entry in pkgs.added]
    out += [f"  - {display(entry)}" for entry in pkgs.removed]
    out += [f"  ~ {change.name} {change.old} -> {change.new}" for change in pkgs.changed]
    for version in found.between:
        what = version.increment.rsplit("/", 1)[-1] or "(checkpoint)"
        out.append(f"  v{version.version}  {what}  {version.summary}")
    return "\n".join(out)
