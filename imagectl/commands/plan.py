"""`imagectl plan` (and `build next --dry-run`): what building would do, from files only."""

from __future__ import annotations

import argparse

from imagectl.app.plans import plan_lines
from imagectl.app.project import Project
from imagectl.app.results.lookup import Plans
from imagectl.commands import versions_text
from imagectl.commands.outcome import Outcome


def plan(args: argparse.Namespace, project: Project) -> Outcome:
    return planned(project, args.lines, all_versions=True)


def planned(project: Project, names: list[str], *, all_versions: bool) -> Outcome:
    found = Plans(plans=plan_lines(project, names, all_versions=all_versions))
    return Outcome(found, plans_text(found))


def plans_text(result: Plans) -> str:
    out = []
    for line_plan in result.plans:
        deleted = [
            f"  ! test {name} ran on a built version and no longer exists"
            for name in line_plan.deleted_tests
        ]
        deleted += [
            f"  ! v{version} is withdrawn ({reason}): resolve passes over it"
            for version, reason in line_plan.withdrawn
        ]
        unpublished = line_plan.unpublished
        to_publish = f"; to publish: {versions_text(unpublished)}" if unpublished else ""
        if not line_plan.steps:
            state = "up to date" if line_plan.up_to_date else "nothing to build"
            out += [f"{line_plan.line}: {state} (v{line_plan.built}){to_publish}", *deleted]
            continue
        out.append(
            f"{line_plan.line}: v{line_plan.built} built, {line_plan.pending} pending{to_publish}"
        )
        out += deleted
        for step in line_plan.steps:
            summary = f"  # {step.increment.summary}" if step.increment.summary else ""
            out.append(
                f"  v{step.version}  {step.increment.path.as_posix()}  FROM {step.parent}{summary}"
            )
    return "\n".join(out)
