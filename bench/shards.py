"""6. Sharded CI job: `ci/publish` of all lines in one job vs two `--lines` shards, each in its
own clone, started at the same moment, on bare git remotes of their own."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import (
    ROOT,
    VENV_BIN,
    CommandFailedError,
    Session,
    fmt_times,
    git_commit,
    median,
    new_repo,
    nonce,
    run,
    say,
    write,
)
from bench.report import Row, Section


def shard_remote(session: Session, label: str) -> Path:
    """A bare git remote holding `shard_lines` busybox lines of `shard_versions` pending
    versions each, all content new (a nonce per line)."""
    sizes = session.sizes
    names = {
        f"shard{i}": session.repository(f"shards-{label}/shard{i}")
        for i in range(sizes.shard_lines)
    }
    source = new_repo(session.work / f"shards-{label}-source", names)
    for name in names:
        for version in range(1, sizes.shard_versions + 1):
            write(
                source / "increments" / name / f"{version:04d}-step.Dockerfile.j2",
                f"# step {version}\nRUN echo {name} {version} {nonce()} >> /steps\n",
            )
    git_commit(source, "increments")
    bare = session.work / f"shards-{label}.git"
    run(["git", "clone", "-q", "--bare", str(source), str(bare)])
    return bare


def ci_shards(session: Session, bare: Path, globs: Sequence[str]) -> tuple[float, list[str]]:
    """Wall time of one `ci/publish --lines GLOB` per glob, each in its own clone (a runner),
    all started at the same moment; and each job's JSON result."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    checkouts = []
    for index in range(len(globs)):
        checkout = bare.with_name(f"{bare.stem}-runner{index}")
        run(["git", "clone", "-q", str(bare), str(checkout)])
        checkouts.append(checkout)
    start = time.perf_counter()
    command = [str(ROOT / "ci" / "publish"), "--json", "--quiet", "--attempts", "10"]
    jobs = [
        subprocess.Popen(
            [*command, "--lines", glob],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for glob, checkout in zip(globs, checkouts, strict=True)
    ]
    results = []
    for job in jobs:
        out, err = job.communicate()
        if job.returncode != 0:
            raise CommandFailedError(f"ci/publish exited {job.returncode}:\n{err[-4000:]}")
        results.append(out)
    return time.perf_counter() - start, results


def bench_shards(session: Session) -> Section:
    sizes = session.sizes
    lines, versions = sizes.shard_lines, sizes.shard_versions
    half = lines // 2
    # Two shards of half the lines each (line names end in one digit: at most 10 lines).
    globs = (f"shard[0-{half - 1}]", f"shard[{half}-{lines - 1}]")
    section = Section(
        6,
        "Sharded CI job",
        f"`ci/publish` (build, publish, commit, push to a bare git remote) of {lines} busybox "
        f"lines with {versions} pending versions each: one job for all lines vs two shards "
        f"(`--lines {globs[0]}` and `--lines {globs[1]}`, each in its own clone) started at "
        "the same moment, until both pushed; each measurement on a remote of its own (new "
        "content), the order alternated",
        "informational: two shards on one machine share its cores and its engine; on CI each "
        "shard has a runner of its own",
    )
    single: list[float] = []
    sharded: list[float] = []
    attempts: list[str] = []
    for round_index in range(sizes.shard_rounds):
        one_remote = shard_remote(session, f"r{round_index}-one")
        two_remote = shard_remote(session, f"r{round_index}-two")
        say(f"6 shards: round {round_index + 1}: remotes ready (not timed)")

        def measure_one(bare: Path = one_remote) -> None:
            single.append(ci_shards(session, bare, ("*",))[0])

        def measure_two(bare: Path = two_remote) -> None:
            seconds, results = ci_shards(session, bare, globs)
            sharded.append(seconds)
            attempts.append("/".join(str(json.loads(out)["attempts"]) for out in results))

        order = [measure_one, measure_two]
        if round_index % 2:
            order.reverse()
        for measure in order:
            measure()
        say(
            f"6 shards: round {round_index + 1}: 1 job {single[-1]:.2f} s, "
            f"2 shards {sharded[-1]:.2f} s"
        )
    _shard_report(section, session, single, sharded, attempts)
    return section


def _shard_report(
    section: Section,
    session: Session,
    single: list[float],
    sharded: list[float],
    attempts: list[str],
) -> None:
    sizes = session.sizes
    lines, versions = sizes.shard_lines, sizes.shard_versions
    ratio = median(single) / median(sharded)
    section.rows.append(
        Row(
            "6 shards",
            f"1 job / 2 shards, wall, {lines} lines x {versions} versions "
            f"(median of {sizes.shard_rounds})",
            f"**{ratio:.2f}** ({median(single):.2f} s / {median(sharded):.2f} s)",
            "(informational)",
            None,
        )
    )
    section.details += [
        f"one job (s): {fmt_times(single)}; two shards (s): {fmt_times(sharded)}",
        f"attempts of the two shards per round (the one that pushed second rebased onto the "
        f"other's lock commit and pushed again): {', '.join(attempts)}",
        f"per version: {median(single) / (lines * versions):.3f} s in one job, "
        f"{median(sharded) / (lines * versions):.3f} s with two shards on this machine",
        "",
    ]
