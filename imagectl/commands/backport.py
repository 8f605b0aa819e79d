"""`imagectl backport`: one new increment including a shared fix, in every selected line."""

from __future__ import annotations

import argparse

from imagectl.app import workflows
from imagectl.app.project import Project
from imagectl.commands.exits import EXIT_ERROR, EXIT_OK
from imagectl.commands.outcome import Outcome
from imagectl.core.backport import BackportPlan


def backport(args: argparse.Namespace, project: Project) -> Outcome:
    plan = workflows.backport(project, args.fix, pattern=args.lines, dry_run=args.dry_run)
    code = EXIT_ERROR if plan.failures else EXIT_OK
    return Outcome(plan, backport_text(plan), code, warnings=plan.warnings)


def backport_text(plan: BackportPlan) -> str:
    verb = "would add" if plan.dry_run else "added"
    failed = dict(plan.failures)
    out = []
    for step in plan.steps:
        state = f" -- FAILS: {failed[step.line]}" if step.line in failed else ""
        tests = "".join(f" and {path.name}" for path, _ in step.tests)
        out.append(f"{step.line}: {verb} {step.path}{tests}{state}")
    out += [f"{line}: includes {plan.fix} already" for line in plan.already]
    if plan.steps and not plan.dry_run:
        out.append("next: imagectl build next --all [--jobs N]")
    return "\n".join(out)
