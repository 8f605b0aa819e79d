"""`publish`, `ci-publish` and `audit`: the commands that talk to the registry."""

from __future__ import annotations

import argparse

from imagectl.app import publishing
from imagectl.app.project import Project
from imagectl.app.results.publish import AuditReport, PublishResult
from imagectl.commands import say, streamed
from imagectl.commands.exits import EXIT_CHECK, EXIT_ERROR, EXIT_OK
from imagectl.commands.outcome import Outcome


def publish(args: argparse.Namespace, project: Project) -> Outcome:
    if args.dry_run:
        planned = publishing.publish_plan(project, args.lines)
        return Outcome(planned, publish_text(planned))
    result = publishing.publish(project, args.lines, wait=args.wait, say=say, output=streamed(args))
    errors = tuple(exc for _, exc in result.failures)
    return Outcome(result, publish_text(result), EXIT_ERROR if errors else EXIT_OK, errors)


def publish_text(result: PublishResult) -> str:
    if result.dry_run:
        by_line: dict[str, list[str]] = {}
        for item in result.published:
            by_line.setdefault(item.line, []).append(item.tag)
        return "\n".join(f"{line}: {', '.join(tags)}" for line, tags in by_line.items()) or (
            "nothing to publish"
        )
    out = [f"{item.line}: {item.action} {item.tag}@{item.digest}" for item in result.published]
    out += [f"{s.line}: attached the SBOM of v{s.version} ({s.digest})" for s in result.sboms]
    out += [
        f"{a.line}: stored the input archive of v{a.version} ({a.files} files, "
        f"{'complete' if a.complete else 'incomplete'}, {a.digest})"
        for a in result.archives
    ]
    if not (result.published or result.sboms or result.archives or result.failures):
        out.append("nothing to publish")
    return "\n".join(out)


def ci_publish(args: argparse.Namespace, project: Project) -> Outcome:
    from imagectl.app.ci_job import run_publish_job  # noqa: PLC0415 (GitPython: this command only)

    result = run_publish_job(
        project, remote=args.remote, branch=args.branch, attempts=args.attempts, say=say,
        output=streamed(args), lines=args.lines,
    )  # fmt: skip
    if result.commit:
        text = f"pushed lock commit {result.commit[:12]} with {len(result.tags)} new tag(s)"
    else:
        text = "nothing to publish"
    return Outcome(result, text)


def audit(args: argparse.Namespace, project: Project) -> Outcome:
    report = publishing.audit(project, args.lines)
    return Outcome(report, audit_text(report), EXIT_CHECK if report.problems else EXIT_OK)


ARCHIVE_WORDS = {
    "unstored": "NOT STORED (the next publish stores it, from the machine that built it)",
    "missing": "MISSING (the artifact the lock records is gone)",
    "changed": "CHANGED (its tag names other content than the lock records)",
}


def audit_text(report: AuditReport) -> str:
    out = []
    for f in report.problems:
        if f.status == "tampered":
            out.append(
                f"{f.line}: TAMPERED {f.tag} names {f.served}, the lock records {f.recorded}"
            )
        elif f.status == "missing":
            out.append(f"{f.line}: MISSING {f.tag} is gone ({f.recorded} is still there by digest)")
        elif f.status == "deleted":
            out.append(f"{f.line}: DELETED {f.tag}: {f.recorded} is gone from the registry")
        if f.sbom == "missing":
            out.append(f"{f.line}: SBOM MISSING for {f.tag}: the artifact the lock records is gone")
        elif f.sbom == "unlisted":
            out.append(
                f"{f.line}: SBOM UNLISTED for {f.tag}: stored, but its referrers index no "
                "longer lists it"
            )
        if f.archive not in ("", "ok"):
            out.append(f"{f.line}: ARCHIVE {ARCHIVE_WORDS.get(f.archive, f.archive)} for {f.tag}")
    out.append(
        f"{len(report.findings)} published versions checked, {len(report.problems)} problems"
    )
    return "\n".join(out)
