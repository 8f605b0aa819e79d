"""`build next`, `checkpoint`, `verify`, `test` and `skip`: the commands that use the engine."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagectl.app import workflows
from imagectl.app.gate import count
from imagectl.app.project import Project
from imagectl.app.results.build import BuildResult, Skipped
from imagectl.app.results.testing import TestReport
from imagectl.commands import say, streamed
from imagectl.commands.exits import EXIT_CHECK, EXIT_ERROR, EXIT_OK
from imagectl.commands.outcome import Outcome
from imagectl.core.errors import ConfigError
from imagectl.core.model import BuiltVersion, LockedVersion
from imagectl.core.packages import display

if TYPE_CHECKING:
    from imagectl.app.results.verify import VerifyReport, VerifySummary

SHOWN = 20  # entries of each kind a person sees; `--json` has them all


def build_next(args: argparse.Namespace, project: Project) -> Outcome:
    if args.dry_run:
        from imagectl.commands.plan import planned  # noqa: PLC0415 (--dry-run only)

        return planned(project, args.lines, all_versions=args.all_versions)
    result = workflows.build_next(
        project, args.lines, all_versions=args.all_versions, wait=args.wait, say=say,
        output=streamed(args), jobs=args.jobs,
    )  # fmt: skip
    errors = tuple(exc for _, exc in result.failures)
    return Outcome(result, build_text(result), EXIT_ERROR if errors else EXIT_OK, errors)


def build_text(result: BuildResult) -> str:
    out = []
    for built in result.built:
        short = built.image_id.removeprefix("sha256:")[:12]
        out.append(f"{built.line}: {'adopted' if built.adopted else 'built'} {built.tag} ({short})")
    out += [f"{name}: up to date, nothing to build" for name in result.up_to_date]
    out += [f"{name}: FAILED ({exc.kind})" for name, exc in result.failures]
    return "\n".join(out)


def checkpoint(args: argparse.Namespace, project: Project) -> Outcome:
    made = workflows.checkpoint(project, args.line, wait=args.wait, say=say)
    return Outcome(made, checkpoint_text(made))


def checkpoint_text(made: BuiltVersion) -> str:
    return f"{made.line}: checkpoint {made.tag} ({made.image_id.removeprefix('sha256:')[:12]})"


def verify(args: argparse.Namespace, project: Project) -> Outcome:
    from imagectl.app import verifying  # noqa: PLC0415 (verify only)

    if args.all_lines == bool(args.line):
        raise ConfigError(
            "verify takes one LINE or --all.",
            hint="imagectl verify LINE, or imagectl verify --all for every line that has a "
            "version.",
        )
    if args.offline and args.all_lines:
        raise ConfigError(
            "verify --offline takes one LINE.",
            hint="Run imagectl verify --offline LINE for each line to rebuild from its archives.",
        )
    if not args.all_lines:
        report = workflows.verify(
            project, args.line, say=say, output=streamed(args), offline=args.offline
        )
        if args.reports:
            from imagectl.app.results.verify import (  # noqa: PLC0415 (not on build's path)
                LineVerdict,
                VerifySummary,
            )

            summary = VerifySummary(verdicts=(LineVerdict(line=report.line, report=report),))
            verifying.write_reports(args.reports, summary)
        return Outcome(report, verify_text(report), EXIT_CHECK if report.drift else EXIT_OK)
    summary = verifying.verify_all(project, say=say, output=streamed(args))
    if args.reports:
        verifying.write_reports(args.reports, summary)
    code = (
        EXIT_CHECK if summary.named("drift") else EXIT_ERROR if summary.named("failed") else EXIT_OK
    )
    return Outcome(summary, verify_summary_text(summary), code)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """The untagged image an offline rebuild made of a version."""

    line: str
    version: int
    image_id: str

    def to_json(self) -> dict[str, object]:
        return {"line": self.line, "version": self.version, "image_id": self.image_id}


def rebuild(args: argparse.Namespace, project: Project) -> Outcome:
    image_id = workflows.rebuild(project, args.line, args.version, say=say, output=streamed(args))
    made = Rebuilt(line=args.line, version=args.version, image_id=image_id)
    return Outcome(made, f"{args.line}: v{args.version} rebuilt offline as {image_id} (untagged)")


def verify_summary_text(summary: VerifySummary) -> str:
    from imagectl.core.history import format_table  # noqa: PLC0415

    return format_table([("LINE", "RESULT", "DETAILS"), *summary.table()])


def verify_text(report: VerifyReport) -> str:
    files, pkgs, v, ignored = report.files, report.packages, report.version, _ignored(report)
    rebuilt = "rebuilt offline from its archives" if report.offline else "rebuilt from scratch"
    if not report.drift:
        return f"{report.line}: the reference {rebuilt} matches v{v}{ignored}"
    out = [
        f"{report.line}: DRIFT between v{v} and its reference {rebuilt}: packages "
        f"{pkgs.summary}, files missing {len(files.missing)}, extra {len(files.extra)}, "
        f"different {len(files.different)}{ignored}"
    ]
    out += _first(f"  ~ {c.name} {c.old} (v{v}) -> {c.new} (now)" for c in pkgs.changed)
    out += _first(f"  - {display(entry)} (only in v{v})" for entry in pkgs.removed)
    out += _first(f"  + {display(entry)} (only in the rebuilt reference)" for entry in pkgs.added)
    out += _first(f"  ! /{path} differs ({kind})" for path, kind in files.different)
    out += _first(f"  - /{path} missing from the rebuilt reference" for path in files.missing)
    out += _first(f"  + /{path} only in the rebuilt reference" for path in files.extra)
    return "\n".join(out)


def _ignored(report: VerifyReport) -> str:
    """How many differences the ignore list covered, and by which patterns."""
    counts = report.ignored.counts
    if not counts:
        return ""
    shown = ", ".join(f"{pattern} {count:,}" for pattern, count in counts)
    total = report.ignored.total
    return f"; {total:,} difference{'' if total == 1 else 's'} ignored, not drift ({shown})"


def _first(lines: Iterable[str]) -> list[str]:
    """The first SHOWN lines of one kind, then how many more there are."""
    items = list(lines)
    shown = items[:SHOWN]
    if len(items) > SHOWN:
        shown.append(f"    ... and {len(items) - SHOWN} more (--json lists them all)")
    return shown


def test(args: argparse.Namespace, project: Project) -> Outcome:
    report = workflows.test_version(project, args.line, args.version)
    return Outcome(report, outcomes_text(report), EXIT_OK if report.passed else EXIT_ERROR)


def outcomes_text(report: TestReport) -> str:
    short = report.image_id.removeprefix("sha256:")[:12]
    failed = sum(outcome.result != "passed" for outcome in report.outcomes)
    verdict = f"{failed} FAILED" if failed else "all passed"
    out = [
        f"{report.line} v{report.version} ({report.tag}, {short}): "
        + (f"{count(len(report.outcomes), 'test')}, {verdict}" if report.outcomes else "no tests")
    ]
    for outcome in report.outcomes:
        result = "passed" if outcome.result == "passed" else outcome.result.upper()
        seconds = f"{outcome.run.seconds:.1f} s"
        why = seconds if outcome.result == "passed" else f"{outcome.summary()}, {seconds}"
        out.append(f"  {result:<9}  v{outcome.test.version}  {outcome.test.test.name}  ({why})")
        if outcome.result != "passed":
            out += [f"      | {line}" for line in outcome.shown_output().splitlines()]
    out += [f"  ! test {name} ran on one of these versions and no longer exists"
            for name in report.deleted]  # fmt: skip
    return "\n".join(out)


def skip(args: argparse.Namespace, project: Project) -> Outcome:
    skipped = workflows.skip(
        project, args.line, args.version, reason=args.reason, wait=args.wait, say=say
    )
    return Outcome(Skipped(line=args.line, version=skipped), skipped_text(args.line, skipped))


def skipped_text(line: str, version: LockedVersion) -> str:
    return (
        f"{line}: v{version.version} skipped ({version.tag} holds {version.foreign_digest}); "
        f"`imagectl build next {line}` builds v{version.version + 1} on the version before"
    )
