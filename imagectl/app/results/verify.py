"""What `verify` (one line, or --all) hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from imagectl.core.ignores import Ignored

if TYPE_CHECKING:
    from imagectl.core.errors import (
        ImagectlError,
    )
    from imagectl.core.packages import PackageDiff
    from imagectl.core.trees import TreeDiff


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    line: str
    version: int  # the newest version, compared with the reference
    packages: PackageDiff  # from the newest version to the rebuilt reference
    files: TreeDiff  # from the newest version to the rebuilt reference: the drift
    same_layers: bool  # equal layer diff ids: equal content, no tree walk needed
    ignored: Ignored = field(default_factory=Ignored)  # differences the ignore list covers
    ignore: tuple[str, ...] = ()  # the patterns used: the default list, then the line's
    offline: bool = False  # rebuilt from the input archives (verify --offline)

    @property
    def drift(self) -> bool:
        return not self.packages.empty or not self.files.empty

    def to_json(self) -> dict[str, object]:
        """Every difference, with its kind; nothing is cut off. Ignored ones are counted."""
        return {
            "line": self.line,
            "version": self.version,
            "drift": self.drift,
            "same_layers": self.same_layers,
            "packages": self.packages.to_json(),
            "files": {
                "missing": list(self.files.missing),
                "extra": list(self.files.extra),
                "different": [{"path": p, "kind": k} for p, k in self.files.different],
            },
            "ignored": self.ignored.to_json(),
            "ignore": list(self.ignore),
            "offline": self.offline,
        }


VerifyState = Literal["matches", "drift", "failed", "not built"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineVerdict:
    line: str
    report: VerifyReport | None = None  # None: not built, or failed
    error: ImagectlError | None = None

    @property
    def state(self) -> VerifyState:
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

    def named(self, state: VerifyState) -> list[str]:
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
