"""The entry point: `python -m bench [--quick] [--only 1,3] [--results PATH] [--keep]` (through
`bench/run`, which starts the engine, the registry and the venv first)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import bench
from bench.archive import bench_archive
from bench.audit import bench_audit
from bench.cli import bench_cli
from bench.common import FULL, PYTHON, QUICK, ROOT, Session, run, say
from bench.dpkg import bench_dpkg
from bench.fanout import bench_fanout
from bench.flat import bench_flat
from bench.overhead import bench_overhead
from bench.podsized import bench_podsized
from bench.publish import bench_publish
from bench.report import (
    Section,
    failed_section,
    imagectl_content,
    loadavg,
    machine,
    results_markdown,
    table,
    verdict,
)
from bench.shards import bench_shards

BENCHMARKS: dict[int, Callable[[Session], Section]] = {
    1: bench_overhead,
    2: bench_flat,
    3: bench_cli,
    4: bench_fanout,
    5: bench_publish,
    6: bench_shards,
    7: bench_audit,
    8: bench_dpkg,
    9: bench_podsized,
    10: bench_archive,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    description = (bench.__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="bench/run", description=description)
    parser.add_argument("--quick", action="store_true", help="shrink every size (smoke run)")
    parser.add_argument(
        "--only", default="", metavar="1,3", help=f"run these benchmarks only (1-{len(BENCHMARKS)})"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="where to write the report (default bench/RESULTS.md, "
        "bench/RESULTS.quick.md with --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and its path)")
    return parser.parse_args(argv)


def _command(argv: Sequence[str] | None) -> str:
    return "bench/run" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))


def _name(number: int) -> str:
    return BENCHMARKS[number].__name__.removeprefix("bench_")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # In the order given (the most wanted first when time is short), each once.
    chosen = list(dict.fromkeys(int(x) for x in args.only.split(",") if x.strip()))
    chosen = chosen or sorted(BENCHMARKS)
    results = args.results or ROOT / "bench" / ("RESULTS.quick.md" if args.quick else "RESULTS.md")
    work = Path(tempfile.mkdtemp(prefix="imagectl-bench-"))
    session = Session(work, QUICK if args.quick else FULL, quick=args.quick)
    say(f"work dir {work}, repositories {session.prefix}/...")
    # imagectl/ compiled to bytecode up front, as an installed package is: with
    # PYTHONDONTWRITEBYTECODE set (as on this machine's test shells) every timed run would
    # otherwise compile all of imagectl's sources again.
    run([PYTHON, "-m", "compileall", "-q", str(ROOT / "imagectl")])
    start_load = loadavg()
    facts = machine()
    facts.append(
        (
            "bytecode",
            "imagectl/ precompiled (compileall); PYTHONDONTWRITEBYTECODE="
            + os.environ.get("PYTHONDONTWRITEBYTECODE", "(unset)"),
        )
    )
    sections: list[Section] = []
    started = time.perf_counter()

    def report(extra: list[tuple[str, str]]) -> str:
        return results_markdown(
            sections,
            [*facts, *extra],
            command=_command(argv),
            elapsed=time.perf_counter() - started,
            loads=(start_load, loadavg()),
        )

    try:
        _run_all(session, chosen, sections, results, report)
    finally:
        removed = session.cleanup()
        say(f"removed {removed} local tags under {session.prefix}/")
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return _finish(sections, facts, results, report, time.perf_counter() - started)


def _run_all(
    session: Session,
    chosen: list[int],
    sections: list[Section],
    results: Path,
    report: Callable[[list[tuple[str, str]]], str],
) -> None:
    for number in chosen:
        began = time.perf_counter()
        say(f"-- {number}. {_name(number)}")
        try:
            section = BENCHMARKS[number](session)
        except Exception as exc:  # report it and go on with the others
            say(f"   FAILED: {exc}")
            section = failed_section(number, _name(number), exc)
        section.seconds = time.perf_counter() - began
        sections.append(section)
        say(f"   done in {section.seconds:.0f} s (load {loadavg()})")
        pending = [n for n in chosen if n not in {s.number for s in sections}]
        if pending:  # a partial report, so a run cut short still leaves its figures
            partial = report([("PARTIAL", f"run still going; not yet run: {pending}")])
            results.write_text(partial, encoding="utf-8")


def _finish(
    sections: list[Section],
    facts: list[tuple[str, str]],
    results: Path,
    report: Callable[[list[tuple[str, str]]], str],
    elapsed: float,
) -> int:
    """The final report, with a warning if imagectl/ changed under the run; the exit code."""
    content = imagectl_content()
    started_with = dict(facts)["imagectl/*.py content hash (start)"]
    facts.append(("imagectl/*.py content hash (end)", content))
    if content != started_with:
        say("warning: imagectl/ changed during the run; results mix two versions of it")
        facts.append(("warning", "imagectl/ changed during the run: results mix two versions"))
    results.write_text(report([]), encoding="utf-8")
    print(table(sections))
    print()
    for section in sections:
        print(f"{section.number}. {section.title}: target {section.target}: {verdict(section.met)}")
    print(f"\n{elapsed / 60:.1f} min; report written to {results}")
    return 1 if any(section.title.endswith("(FAILED)") for section in sections) else 0


if __name__ == "__main__":
    raise SystemExit(main())
