"""`imagectl restore-check`: what a pod backup and the fix do to each other on its successor."""

from __future__ import annotations

import argparse

from imagectl.app.project import Project
from imagectl.app.restoring import Source
from imagectl.app.restoring import restore_check as check_backup
from imagectl.app.results.restore import RestoreReport
from imagectl.commands.exits import EXIT_CHECK, EXIT_ERROR, EXIT_OK
from imagectl.commands.outcome import Outcome
from imagectl.core.restores import Class, Verdict

EXIT_CODES = {
    Verdict.SAFE: EXIT_OK,
    Verdict.SAFE_AFTER_MERGE: EXIT_OK,
    Verdict.CONFLICTS: EXIT_CHECK,
    Verdict.REFUSED: EXIT_ERROR,
}
SOURCES: dict[str | None, Source] = {None: "auto", "engine": "engine", "registry": "registry"}
WHERE = {"engine": "the engine's store", "registry": "the registry"}
ADVICE = {
    Verdict.SAFE: "the backup may be laid over it as it is",
    Verdict.SAFE_AFTER_MERGE: "lay the merged layer over it (--write MERGED.tar), not the raw "
    "backup, which would hide or undo some of the fix",
    Verdict.CONFLICTS: "a person decides each conflict below; nothing was written",
    Verdict.REFUSED: "the backup uses overlay features that make a restore undefined; "
    "nothing was written",
}


def restore_check(args: argparse.Namespace, project: Project) -> Outcome:
    source = SOURCES[args.read_from]
    report = check_backup(project, args.backup, on=args.on, write=args.write, source=source)
    return Outcome(
        report,
        report_text(report),
        code=EXIT_CODES[report.check.verdict],
        warnings=report.warnings,
    )


def report_text(report: RestoreReport) -> str:
    found, check = report.resolution, report.check
    lines = [
        f"{report.backup}: taken on v{found.matched.version} of {found.line}, restored on "
        f"{found.reference}: {check.verdict}: {ADVICE[check.verdict]}"
    ]
    counts = check.counts()
    lines.append(
        "  "
        + ", ".join(f"{counts[str(cls)]} {cls}" for cls in Class if counts[str(cls)])
        + f" (of {len(check.paths)} paths; {report.added_layers} layer(s) of the successor read "
        + f"from {WHERE[report.read_from]})"
    )
    for path in check.paths:
        if path.hides_fix and path.action == "drop":
            lines.append(f"  dropped {path.path}: {path.cls}; the fix {path.fix or 'changed'} it")
    for merge in check.merges:
        lines.append(
            f"  merged {merge.path}: from the backup {', '.join(merge.from_backup) or 'nothing'}; "
            f"from the successor {', '.join(merge.from_successor) or 'nothing'}"
        )
    for conflict in check.conflicts:
        lines.append(f"  conflict {conflict.path}: {conflict.reason}")
        if conflict.entries:
            lines.extend(f"    {entry.entry}: {entry.reason}" for entry in conflict.entries)
        else:
            lines.append(f"    backup: {conflict.backup}; successor: {conflict.successor}")
    lines.extend(f"  refused {path}: it has the {mark} xattr" for path, mark in check.refusals)
    if report.written:
        lines.append(f"  wrote {report.written}: lay it over {found.reference}")
    return "\n".join(lines)
