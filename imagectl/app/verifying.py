"""`imagectl verify --all`: every line with a version verified, one after the other, each
line's failure kept apart, and the summary the scheduled CI job shows (a table, and with
`--reports DIR` each line's report and the summary as files)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.verifier import VerifyReport
from imagectl.core.config import check_secret_sources
from imagectl.core.errors import ConfigError, ImagectlError
from imagectl.core.lockfile import write_atomic
from imagectl.core.ports import Say

State = Literal["matches", "drift", "failed", "not built"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineVerdict:
    line: str
    report: VerifyReport | None = None  # None: not built, or failed
    error: ImagectlError | None = None

    @property
    def state(self) -> State:
        if self.error is not None:
            return "failed"
        if self.report is None:
            return "not built"
        return "drift" if self.report.drift else "matches"

    @property
    def result(self) -> str:
        """The summary table's result cell."""
        if self.report is None:
            return "FAILED" if self.error is not None else "not built yet"
        return f"{'DRIFT' if self.report.drift else 'matches'} v{self.report.version}"

    @property
    def details(self) -> str:
        """The summary table's counts (or the error)."""
        if self.error is not None:
            return f"{self.error.kind}: {self.error}"
        if self.report is None:
            return "-"
        files, packages = self.report.files, self.report.packages
        return (
            f"packages +{len(packages.added)} -{len(packages.removed)} ~{len(packages.changed)}, "
            f"files missing {len(files.missing)}, extra {len(files.extra)}, different "
            f"{len(files.different)}; {self.report.ignored.total} ignored differences"
        )

    @property
    def annotation(self) -> str:
        """A GitHub Actions error annotation for a drifted or failed line; "" otherwise."""
        if self.state == "drift":
            return f"::error title=imagectl verify: {self.line} drifted::{self.row}"
        if self.state == "failed":
            return f"::error title=imagectl verify: {self.line} could not be verified::{self.row}"
        return ""

    @property
    def row(self) -> str:
        return f"| {self.line} | {self.result} | {self.details.replace('|', '/')} |"

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "state": self.state,
            "report": self.report.to_json() if self.report else None,
            "error": self.error.to_json() if self.error else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifySummary:
    verdicts: tuple[LineVerdict, ...]

    def named(self, state: State) -> list[str]:
        return [v.line for v in self.verdicts if v.state == state]

    def to_json(self) -> dict[str, object]:
        return {
            "lines": [v.to_json() for v in self.verdicts],
            "drift": self.named("drift"),
            "failed": self.named("failed"),
        }

    def table(self) -> list[tuple[str, str, str]]:
        return [(v.line, v.result, v.details) for v in self.verdicts]

    def markdown(self) -> str:
        head = ["## imagectl verify", "", "| line | result | details |", "|---|---|---|"]
        return "\n".join([*head, *(v.row for v in self.verdicts), ""])

    def annotations(self) -> str:
        return "".join(f"{v.annotation}\n" for v in self.verdicts if v.annotation)


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
