"""What each command shows a person; `--json` prints each result's own `to_json()` instead."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from imagectl.audit import AuditReport
from imagectl.backport import BackportPlan
from imagectl.ci_job import JobResult
from imagectl.gate import TestReport, count
from imagectl.history import history_table
from imagectl.model import BuiltVersion, LinePlan, LockedVersion
from imagectl.packages import display
from imagectl.resolver import Resolution
from imagectl.verifier import VerifyReport
from imagectl.workflows import (
    BuildResult,
    History,
    PublishResult,
    ReferenceStatus,
    VersionDiff,
)

SHOWN = 20  # entries of each kind a person sees; `--json` has them all


@dataclass(frozen=True, slots=True, kw_only=True)
class Plans:
    plans: tuple[LinePlan, ...]

    def to_json(self) -> list[dict[str, object]]:
        return [plan.to_json() for plan in self.plans]


@dataclass(frozen=True, slots=True, kw_only=True)
class References:
    references: tuple[ReferenceStatus, ...]

    def to_json(self) -> dict[str, object]:
        return {"references": [r.to_json() for r in self.references]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    line: str
    version: int | None
    dockerfile: str

    def to_json(self) -> dict[str, object]:
        return {"line": self.line, "version": self.version, "dockerfile": self.dockerfile}


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    line: str
    version: LockedVersion

    def to_json(self) -> dict[str, object]:
        v = self.version
        return {
            "line": self.line,
            "version": v.version,
            "tag": v.tag,
            "reason": v.reason,
            "foreign_digest": v.foreign_digest,
            "skipped_at": v.built_at,
        }


def plans(result: Plans) -> str:
    out = []
    for line_plan in result.plans:
        deleted = [
            f"  ! test {name} ran on a built version and no longer exists"
            for name in line_plan.deleted_tests
        ]
        unpublished = line_plan.unpublished
        to_publish = f"; to publish: {_versions(unpublished)}" if unpublished else ""
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


def _versions(versions: tuple[int, ...]) -> str:
    """Versions as runs: "v1-v200", "v3, v5-v7" (a line of 200 unpublished versions is one
    short line, not 200 entries)."""
    runs: list[list[int]] = []
    for version in versions:
        if runs and version == runs[-1][-1] + 1:
            runs[-1].append(version)
        else:
            runs.append([version])
    return ", ".join(f"v{r[0]}" if len(r) == 1 else f"v{r[0]}-v{r[-1]}" for r in runs)


def build(result: BuildResult) -> str:
    out = []
    for built in result.built:
        short = built.image_id.removeprefix("sha256:")[:12]
        out.append(f"{built.line}: {'adopted' if built.adopted else 'built'} {built.tag} ({short})")
    out += [f"{name}: up to date, nothing to build" for name in result.up_to_date]
    out += [f"{name}: FAILED ({exc.kind})" for name, exc in result.failures]
    return "\n".join(out)


def publish(result: PublishResult) -> str:
    if result.dry_run:
        by_line: dict[str, list[str]] = {}
        for item in result.published:
            by_line.setdefault(item.line, []).append(item.tag)
        return "\n".join(f"{line}: {', '.join(tags)}" for line, tags in by_line.items()) or (
            "nothing to publish"
        )
    out = [f"{item.line}: {item.action} {item.tag}@{item.digest}" for item in result.published]
    if not result.published and not result.failures:
        out.append("nothing to publish")
    return "\n".join(out)


def references(result: References) -> str:
    def what(item: ReferenceStatus) -> str:
        return "stale: run `imagectl squash`" if item.state == "stale" else item.state

    return "\n".join(f"{r.line}: {r.path} {what(r)}" for r in result.references)


def resolution(result: Resolution) -> str:
    return result.reference


def backport(plan: BackportPlan) -> str:
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


def rendered(result: Rendered) -> str:
    return result.dockerfile.rstrip("\n")


def diff(found: VersionDiff) -> str:
    pkgs = found.packages
    out = [f"{found.line}: v{found.old} -> v{found.new}: packages {pkgs.summary}"]
    out += [f"  + {display(entry)}" for entry in pkgs.added]
    out += [f"  - {display(entry)}" for entry in pkgs.removed]
    out += [f"  ~ {change.name} {change.old} -> {change.new}" for change in pkgs.changed]
    for version in found.between:
        what = version.increment.rsplit("/", 1)[-1] or "(checkpoint)"
        out.append(f"  v{version.version}  {what}  {version.summary}")
    return "\n".join(out)


def verify(report: VerifyReport) -> str:
    files, pkgs, v, ignored = report.files, report.packages, report.version, _ignored(report)
    if not report.drift:
        return f"{report.line}: the reference rebuilt from scratch matches v{v}{ignored}"
    out = [
        f"{report.line}: DRIFT between v{v} and its reference rebuilt now: packages "
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


def test_report(report: TestReport) -> str:
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


def built_version(made: BuiltVersion) -> str:
    return f"{made.line}: checkpoint {made.tag} ({made.image_id.removeprefix('sha256:')[:12]})"


def job(result: JobResult) -> str:
    if result.commit:
        return f"pushed lock commit {result.commit[:12]} with {len(result.tags)} new tag(s)"
    return "nothing to publish"


def audit(report: AuditReport) -> str:
    out = []
    for f in report.problems:
        if f.status == "tampered":
            out.append(
                f"{f.line}: TAMPERED {f.tag} names {f.served}, the lock records {f.recorded}"
            )
        elif f.status == "missing":
            out.append(f"{f.line}: MISSING {f.tag} is gone ({f.recorded} is still there by digest)")
        else:
            out.append(f"{f.line}: DELETED {f.tag}: {f.recorded} is gone from the registry")
    out.append(
        f"{len(report.findings)} published versions checked, {len(report.problems)} problems"
    )
    return "\n".join(out)


def skipped(line: str, version: LockedVersion) -> str:
    return (
        f"{line}: v{version.version} skipped ({version.tag} holds {version.foreign_digest}); "
        f"`imagectl build next {line}` builds v{version.version + 1} on the version before"
    )


def history(found: History, line: str) -> str:
    if not found.lock.versions:
        return f"{line}: no versions built yet"
    return history_table(found.lock, found.packages)
