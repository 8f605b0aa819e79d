"""`imagectl verify --all`: every line with a version verified, one after the other, each
line's failure kept apart, and the summary the scheduled CI job shows (a table, and with
`--reports DIR` each line's report and the summary as files)."""

from __future__ import annotations

import json
from pathlib import Path

from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.results.verify import LineVerdict, VerifySummary
from imagectl.core.config import check_secret_sources
from imagectl.core.errors import ConfigError, ImagectlError
from imagectl.core.lockfile import write_atomic
from imagectl.core.ports import Say


def verify_all(project: Project, *, say: Say, output: Say) -> VerifySummary:
    """Verify every line that has a version; a line that cannot be verified is reported and
    the others still run."""
    from imagectl.app.verifier import verify_line  # noqa: PLC0415

    builder = project.adapters.builder
    builder.check()
    say(builder.describe())
    verdicts = []
    for line in project.lines:
        try:
            if line_lock(project, line).head is None:
                verdicts.append(LineVerdict(line=line.name))
                continue
            say(f"== {line.name}")
            check_secret_sources(line)  # the rebuild uses the line's build secrets too
            report = verify_line(project, line, say=say, output=output)
            verdicts.append(LineVerdict(line=line.name, report=report))
        except ImagectlError as error:
            say(f"{line.name}: could not be verified: {error.kind}: {error}")
            verdicts.append(LineVerdict(line=line.name, error=error))
    return VerifySummary(verdicts=tuple(verdicts))


def write_reports(folder: Path, summary: VerifySummary) -> None:
    """DIR/<line>.json (the report, or the error), DIR/summary.json, DIR/summary.md (the
    table, for a CI job summary) and DIR/annotations.txt (GitHub Actions error annotations)."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            "is not a folder, so the reports cannot be written into it.",
            hint="Name a folder (it is made when missing); nothing was written.",
            path=str(folder),
        )
    folder.mkdir(parents=True, exist_ok=True)
    for verdict in summary.verdicts:
        body = verdict.report.to_json() if verdict.report else verdict.to_json()
        write_atomic(folder / f"{verdict.line}.json", json.dumps(body, indent=2) + "\n")
    write_atomic(folder / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
    write_atomic(folder / "summary.md", summary.markdown())
    write_atomic(folder / "annotations.txt", summary.annotations())
