"""What a version's tests gave (`imagectl test`, and the gate before a tag)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imagectl.core.model import (
    IncrementTest,
    RecordedTest,
    TestResult,
)

if TYPE_CHECKING:
    from imagectl.core.ports import TestRun


SHOWN_LINES = 30  # of a failing test's output, in the one-paragraph error; --json has it all


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedTest:
    """A test ready to run: its script as it runs (a template rendered with the vars of the
    version built from its increment), whose hash the lock records."""

    test: IncrementTest
    increment: str  # its increment, relative to the repository root
    version: int  # the version built from its increment
    text: str

    @property
    def hash(self) -> str:
        from imagectl.core.recipe import hash_text  # noqa: PLC0415 (not for history, resolve)

        return hash_text(self.text)


@dataclass(frozen=True, slots=True, kw_only=True)
class TestOutcome:
    """One test that ran, and what it gave."""

    __test__ = False  # not a pytest class

    test: PreparedTest
    run: TestRun
    timeout: float

    @property
    def result(self) -> TestResult:
        if self.run.exit_code is None:
            return "timed out"
        return "passed" if self.run.passed else "failed"

    def recorded(self) -> RecordedTest:
        return RecordedTest(name=self.test.test.name, hash=self.test.hash, result=self.result)

    def to_json(self) -> dict[str, object]:
        """Everything, the output complete."""
        prepared = self.test
        return {
            "name": prepared.test.name,
            "kind": prepared.test.kind,
            "increment": prepared.increment,
            "version": prepared.version,
            "hash": prepared.hash,
            "result": self.result,
            "exit_code": self.run.exit_code,
            "duration": round(self.run.seconds, 3),
            "output": self.run.output,
        }

    def summary(self) -> str:
        """The test's result in a few words: `exit code 1`, `timed out after 120 s`."""
        if self.run.exit_code is None:
            return f"timed out after {self.timeout:g} s"
        return "passed" if self.run.passed else f"exit code {self.run.exit_code}"

    def shown_output(self) -> str:
        """The end of its output, for a person."""
        lines = self.run.output.rstrip("\n").splitlines() or ["(no output)"]
        shown = lines[-SHOWN_LINES:]
        if len(lines) > SHOWN_LINES:
            left = len(lines) - SHOWN_LINES
            shown.insert(0, f"... {left} earlier lines left out (--json has them all)")
        return "\n".join(shown)


@dataclass(frozen=True, slots=True, kw_only=True)
class TestReport:
    """`imagectl test`: every test up to a built version, run on its image now."""

    __test__ = False  # not a pytest class

    line: str
    version: int
    tag: str
    image_id: str
    outcomes: tuple[TestOutcome, ...]
    deleted: tuple[str, ...] = ()  # tests that ran on these versions once, gone from disk

    @property
    def passed(self) -> bool:
        return all(outcome.result == "passed" for outcome in self.outcomes)

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "version": self.version,
            "tag": self.tag,
            "image_id": self.image_id,
            "passed": self.passed,
            "tests": [outcome.to_json() for outcome in self.outcomes],
            "deleted_tests": list(self.deleted),
        }
