"""One short function per subcommand: call the workflow, pair its result with what a person
sees and the exit code. The CLI parses before and prints after."""

from __future__ import annotations

import argparse
import sys

from imagectl import output, workflows
from imagectl.outcome import EXIT_CHECK, EXIT_ERROR, EXIT_OK, Outcome
from imagectl.ports import Say
from imagectl.project import Project


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _output(args: argparse.Namespace) -> Say:
    """Build and push output, streamed to stderr unless --quiet (or --json, which keeps stdout)."""

    def show(line: str) -> None:
        print(f"  | {line}", file=sys.stderr, flush=True)

    return (lambda _line: None) if args.quiet else show


def plan(args: argparse.Namespace, project: Project) -> Outcome:
    found = output.Plans(plans=workflows.plan(project, args.lines, all_versions=True))
    return Outcome(found, output.plans(found))


def build_next(args: argparse.Namespace, project: Project) -> Outcome:
    if args.dry_run:
        planned = workflows.plan(project, args.lines, all_versions=args.all_versions)
        found = output.Plans(plans=planned)
        return Outcome(found, output.plans(found))
    result = workflows.build_next(
        project, args.lines, all_versions=args.all_versions, wait=args.wait, say=_say,
        output=_output(args), jobs=args.jobs,
    )  # fmt: skip
    errors = tuple(exc for _, exc in result.failures)
    return Outcome(result, output.build(result), EXIT_ERROR if errors else EXIT_OK, errors)


def publish(args: argparse.Namespace, project: Project) -> Outcome:
    if args.dry_run:
        planned = workflows.publish_plan(project, args.lines)
        return Outcome(planned, output.publish(planned))
    result = workflows.publish(project, args.lines, wait=args.wait, say=_say, output=_output(args))
    errors = tuple(exc for _, exc in result.failures)
    return Outcome(result, output.publish(result), EXIT_ERROR if errors else EXIT_OK, errors)


def ci_publish(args: argparse.Namespace, project: Project) -> Outcome:
    from imagectl.ci_job import run_publish_job  # noqa: PLC0415

    result = run_publish_job(
        project, remote=args.remote, branch=args.branch, attempts=args.attempts, say=_say,
        output=_output(args), lines=args.lines,
    )  # fmt: skip
    return Outcome(result, output.job(result))


def squash(args: argparse.Namespace, project: Project) -> Outcome:
    found = output.References(
        references=workflows.squash_lines(project, args.lines, check=args.check)
    )
    stale = any(r.state == "stale" for r in found.references)
    return Outcome(found, output.references(found), EXIT_CHECK if stale else EXIT_OK)


def resolve(args: argparse.Namespace, project: Project) -> Outcome:
    found = workflows.resolve(project, args.ref)
    return Outcome(found, output.resolution(found))


def backport(args: argparse.Namespace, project: Project) -> Outcome:
    plan = workflows.backport(project, args.fix, pattern=args.lines, dry_run=args.dry_run)
    return Outcome(plan, output.backport(plan), EXIT_ERROR if plan.failures else EXIT_OK)


def render(args: argparse.Namespace, project: Project) -> Outcome:
    text = workflows.render_version(project, args.line, args.version)
    found = output.Rendered(line=args.line, version=args.version, dockerfile=text)
    return Outcome(found, output.rendered(found))


def diff(args: argparse.Namespace, project: Project) -> Outcome:
    found = workflows.diff_versions(project, args.line, args.old, args.new)
    return Outcome(found, output.diff(found))


def verify(args: argparse.Namespace, project: Project) -> Outcome:
    report = workflows.verify(project, args.line, say=_say, output=_output(args))
    return Outcome(report, output.verify(report), EXIT_CHECK if report.drift else EXIT_OK)


def checkpoint(args: argparse.Namespace, project: Project) -> Outcome:
    made = workflows.checkpoint(project, args.line, wait=args.wait, say=_say)
    return Outcome(made, output.built_version(made))


def audit(args: argparse.Namespace, project: Project) -> Outcome:
    report = workflows.audit(project, args.lines)
    return Outcome(report, output.audit(report), EXIT_CHECK if report.problems else EXIT_OK)


def skip(args: argparse.Namespace, project: Project) -> Outcome:
    skipped = workflows.skip(project, args.line, args.version, reason=args.reason, wait=args.wait)
    return Outcome(
        output.Skipped(line=args.line, version=skipped), output.skipped(args.line, skipped)
    )


def test(args: argparse.Namespace, project: Project) -> Outcome:
    report = workflows.test_version(project, args.line, args.version)
    return Outcome(report, output.test_report(report), EXIT_OK if report.passed else EXIT_ERROR)


def history(args: argparse.Namespace, project: Project) -> Outcome:
    found = workflows.read_history(project, args.line)
    return Outcome(found, output.history(found, args.line))
