"""The test gate: every test of every increment up to a version, rendered with the line's vars,
run on one image in version order (the tests of one version side by side, bounded), and what
each gave. `build next` and `checkpoint` run it before the tag; `imagectl test` on demand."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

from imagectl.app.results.testing import PreparedTest, TestOutcome
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import TestFailedError
from imagectl.core.linerenders import render_test
from imagectl.core.linestate import LineState
from imagectl.core.model import ImageLine, Increment, RecordedTest
from imagectl.core.ports import ImageStore, Say

Owner = tuple[Increment, int, str]  # an increment, the version built from it, and its parent


def built_owners(state: LineState, upto: int) -> list[Owner]:
    """The increments built into version `upto` (checkpoints and skipped versions add none),
    each with the version built from it and that version's parent, oldest first."""
    built = [v for v in state.lock.versions[:upto] if not v.checkpoint and not v.skipped]
    return [
        (increment, version.version, version.parent)
        for increment, version in zip(state.increments, built, strict=False)
    ]


def prepare_suite(
    layout: RepositoryLayout, line: ImageLine, owners: Sequence[Owner]
) -> tuple[PreparedTest, ...]:
    """Every test of the owners' increments, in version order, each rendered or read now: a
    test improved since a version was built runs as it is now."""
    return tuple(
        PreparedTest(
            test=test,
            increment=increment.path.as_posix(),
            version=version,
            text=render_test(layout, line, test, version=version, parent=parent),
        )
        for increment, version, parent in owners
        for test in increment.tests
    )


def run_suite(
    suite: Sequence[PreparedTest],
    *,
    image: str,
    images: ImageStore,
    timeout: float,
    jobs: int,
) -> tuple[TestOutcome, ...]:
    """Run `suite` on `image`: version by version, the tests of one version side by side (at
    most `jobs` at once); every test runs, so that one report names every failure."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 (a build without tests)

    outcomes: list[TestOutcome] = []
    with tempfile.TemporaryDirectory(prefix="imagectl-tests-") as tmp:
        for _, group in groupby(enumerate(suite), key=lambda item: item[1].version):
            batch = list(group)
            scripts = [_written(Path(tmp, str(index)), prepared) for index, prepared in batch]

            def run(item: tuple[Path, PreparedTest]) -> TestOutcome:
                script, prepared = item
                done = images.run_test(
                    image, script, start=prepared.test.kind == "start-test", timeout=timeout
                )
                return TestOutcome(test=prepared, run=done, timeout=timeout)

            pairs = list(zip(scripts, (prepared for _, prepared in batch), strict=True))
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pairs)))) as pool:
                outcomes.extend(pool.map(run, pairs))
    return tuple(outcomes)


def _written(folder: Path, prepared: PreparedTest) -> Path:
    """The script in a file of its own (a bind mount needs a file on this host), readable by
    any user the image runs as."""
    folder.mkdir(mode=0o755)
    script = folder / prepared.test.script_name
    script.write_text(prepared.text, encoding="utf-8")
    script.chmod(0o644)
    return script


def gate(
    line: ImageLine,
    suite: Sequence[PreparedTest],
    *,
    version: int,
    image: str,
    images: ImageStore,
    jobs: int,
    say: Say,
) -> tuple[RecordedTest, ...]:
    """Run the suite on the candidate `image` of `version`; raise TestFailedError (nothing may
    be tagged then) unless every test passed. Returns what the lock records."""
    if not suite:
        return ()
    versions = len({prepared.version for prepared in suite})
    say(
        f"{line.name}: testing v{version}: {count(len(suite), 'test')} of "
        f"{count(versions, 'increment')}"
    )
    outcomes = run_suite(suite, image=image, images=images, timeout=line.test_timeout, jobs=jobs)
    failed = [outcome for outcome in outcomes if outcome.result != "passed"]
    if failed:
        raise failure(f"v{version}", outcomes)
    say(f"{line.name}: v{version} passed {count(len(outcomes), 'test')}")
    return tuple(outcome.recorded() for outcome in outcomes)


def failure(what: str, outcomes: Sequence[TestOutcome]) -> TestFailedError:
    """The error naming every failed test, with the end of each one's output as details."""
    failed = [outcome for outcome in outcomes if outcome.result != "passed"]
    named = "; ".join(f"{o.test.test.name} ({o.summary()})" for o in failed)
    details = "\n".join(
        f"== {o.test.test.name} ({o.test.test.kind} of v{o.test.version}, {o.summary()})\n"
        f"{o.shown_output()}"
        for o in failed
    )
    return TestFailedError(
        f"{what} failed {len(failed)} of {count(len(outcomes), 'test')}: {named}. Nothing was "
        "tagged or recorded.",
        hint="The output of each failed test is below. Fix the increment in a new one (or the "
        "test, if it is wrong) and build again; `imagectl test LINE` runs the tests of a built "
        "version.",
        details=details,
        tests=tuple(outcome.to_json() for outcome in outcomes),
    )


def count(number: int, noun: str) -> str:
    """`1 test`, `2 tests`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
