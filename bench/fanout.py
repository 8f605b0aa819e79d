"""4. Fan-out: `build next --all --jobs N` of a back-ported fix over several busybox pod lines,
against raw buildx's own speed-up from 1 to N builds at a time."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.breakdown import breakdown
from bench.common import (
    BUSYBOX,
    IMAGECTL,
    ROOT,
    Session,
    fmt_times,
    git_commit,
    imagectl,
    median,
    new_repo,
    nonce,
    run,
    say,
    write,
)
from bench.report import Row, Section

OOM_FIX = ROOT / "increments" / "_shared" / "oom-score-adj.Dockerfile.j2"
POD_INIT = 'COPY pod-start /usr/local/bin/pod-start\nENTRYPOINT ["/usr/local/bin/pod-start"]\n'


def fan_repo(session: Session, label: str, count: int) -> Path:
    names = {f"fan{i}": session.repository(f"fan-{label}/fan{i}") for i in range(count)}
    root = session.work / f"fan-{label}"
    write(root / "increments" / "_shared" / OOM_FIX.name, OOM_FIX.read_text(encoding="utf-8"))
    for name in names:
        folder = root / "increments" / name / "0001-pod-init"
        write(folder / "Dockerfile.j2", f"# Pod start-up script\n{POD_INIT}")
        # The nonce makes every line of every set new content: no build-cache hits across sets.
        write(folder / "pod-start", f'#!/bin/sh\n# {label} {nonce()}\nexec "$@"\n', mode=0o755)
    return new_repo(root, names)


def raw_fanout(session: Session, count: int, jobs: int, label: str) -> float:
    """`count` raw buildx builds of one new RUN each on busybox, `jobs` at a time."""
    folder = session.work / f"fanraw-{label}"
    (folder / "context").mkdir(parents=True, exist_ok=True)
    commands = []
    for index in range(count):
        dockerfile = folder / f"Dockerfile.{index}"
        write(dockerfile, f"FROM {BUSYBOX}\nRUN echo {nonce()} > /marker\n")
        tag = f"{session.repository('fanraw')}:{label}-{index}"
        build = ["docker", "buildx", "build", "--progress=plain", "--load", "-t", tag]
        commands.append([*build, "-f", str(dockerfile), str(folder / "context")])
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run, commands))
    return time.perf_counter() - start


FAN_JOBS = (1, 2, 4)  # --jobs N compared, each on its own set of lines


@dataclass(slots=True)
class FanSamples:
    tool: dict[int, list[float]] = field(default_factory=lambda: {n: [] for n in FAN_JOBS})
    raw: dict[int, list[float]] = field(default_factory=lambda: {n: [] for n in FAN_JOBS})
    orders: list[str] = field(default_factory=list)  # the order of the runs, per round


def bench_fanout(session: Session) -> Section:
    sizes = session.sizes
    count = sizes.fan_lines
    jobs_list = ", ".join(str(n) for n in FAN_JOBS)
    section = Section(
        4,
        "Fan-out",
        f"{count} busybox pod lines at v1 get `imagectl backport` of "
        f"`_shared/oom-score-adj.Dockerfile.j2`; `build next --all --jobs N` for N = {jobs_list}, "
        "each N on its own identical set of lines with other content (further rounds: another "
        f"fix, the sets rotated); baseline: {count} raw `buildx build --load`, N at a time",
        "imagectl's speed-up from 1 to N jobs >= 0.9 x raw buildx's own speed-up from 1 to N "
        "builds at a time on this machine (the brief sets none)",
    )
    labels = [chr(ord("a") + i) for i in range(len(FAN_JOBS) + 1)]  # the last: the breakdown
    sets = {label: fan_repo(session, label, count) for label in labels}
    for root in sets.values():
        run([IMAGECTL, "-C", str(root), "build", "next", "--all", "-q", "--jobs", "2"])
    samples = FanSamples()
    for round_index in range(sizes.fan_rounds + 1):  # the last round is the breakdown
        _backport(sets, round_index)
        if round_index == sizes.fan_rounds:
            break
        _fan_round(session, sets, labels, samples, round_index)
    _fan_rows(section, count, sizes.fan_rounds, samples)
    parts = breakdown(session, ["build", "next", "--all", "-q", "--jobs", "2"], sets[labels[-1]])
    builds = sum(1 for call in parts.calls if call.kind == "docker buildx build")
    section.details += parts.markdown(
        f"Where `build next --all --jobs 2` of {count} lines ({builds} builds, a further set) "
        "spends its time",
        each_call=False,
    )
    tool, raw = samples.tool, samples.raw
    for row, jobs in zip(section.rows, FAN_JOBS[1:], strict=False):
        if row.met is False:
            section.why.append(
                f"**4 fan-out at --jobs {jobs} ({row.value}; target {row.target}).** Per line "
                f"imagectl took {median(tool[1]) / count:.3f} s at --jobs 1 and "
                f"{median(tool[jobs]) / count:.3f} s at --jobs {jobs}; raw buildx "
                f"{median(raw[1]) / count:.3f} s and {median(raw[jobs]) / count:.3f} s. "
                + parts.explain()
            )
    return section


def _backport(sets: dict[str, Path], round_index: int) -> None:
    """The round's fix back-ported to every line of every set: the shared OOM fix first, then
    a marker of its own per round."""
    if round_index == 0:
        fix = f"increments/_shared/{OOM_FIX.name}"
    else:
        fix = f"increments/_shared/bench-marker-{round_index}.Dockerfile.j2"
        text = f"# Bench marker\nRUN echo {{{{ line }}}} {nonce()} > /marker\n"
        for root in sets.values():
            write(root / fix, text)
    for root in sets.values():
        run([IMAGECTL, "-C", str(root), "backport", fix])
        git_commit(root, f"backport {fix}")


def _fan_round(
    session: Session,
    sets: dict[str, Path],
    labels: list[str],
    samples: FanSamples,
    round_index: int,
) -> None:
    """One round of timed runs. The order alternates: even rounds imagectl --jobs 1, 2, 4 then
    raw 1, 2, 4; odd rounds raw 4, 2, 1 then imagectl 4, 2, 1 (so drift in machine load hits
    both alike)."""
    count = session.sizes.fan_lines
    order = list(enumerate(FAN_JOBS))
    if round_index % 2:
        order.reverse()

    def measure_tool() -> None:
        for index, jobs in order:
            label = labels[(index + round_index) % len(FAN_JOBS)]
            samples.tool[jobs].append(
                imagectl(sets[label], "build", "next", "--all", "-q", "--jobs", str(jobs))
            )

    def measure_raw() -> None:
        for _, jobs in order:
            samples.raw[jobs].append(raw_fanout(session, count, jobs, f"r{round_index}j{jobs}"))

    for measure in (measure_raw, measure_tool) if round_index % 2 else (measure_tool, measure_raw):
        measure()
    samples.orders.append(
        ("raw then imagectl" if round_index % 2 else "imagectl then raw")
        + ", N = "
        + ", ".join(str(jobs) for _, jobs in order)
    )
    say(
        f"4 fan-out: round {round_index + 1}: imagectl "
        + ", ".join(f"--jobs {n} {samples.tool[n][-1]:.2f} s" for n in FAN_JOBS)
        + "; raw "
        + ", ".join(f"{n} at a time {samples.raw[n][-1]:.2f} s" for n in FAN_JOBS)
    )


def _fan_rows(section: Section, count: int, rounds: int, samples: FanSamples) -> None:
    tool, raw = samples.tool, samples.raw
    one, raw_one = median(tool[1]), median(raw[1])
    for jobs in FAN_JOBS[1:]:
        speedup = one / median(tool[jobs])
        raw_speedup = raw_one / median(raw[jobs])
        section.rows.append(
            Row(
                "4 fan-out",
                f"`--jobs 1` / `--jobs {jobs}`, {count} lines (median of {rounds})",
                f"**{speedup:.2f}** ({one:.2f} s / {median(tool[jobs]):.2f} s)",
                f">= 0.9 x {raw_speedup:.2f} = {0.9 * raw_speedup:.2f}",
                speedup >= 0.9 * raw_speedup,
            )
        )
    for jobs in FAN_JOBS[1:]:
        section.rows.append(
            Row(
                "4 fan-out",
                f"baseline: {count} raw `buildx build --load`, 1 / {jobs} at a time",
                f"{raw_one / median(raw[jobs]):.2f} ({raw_one:.2f} s / {median(raw[jobs]):.2f} s)",
                "(baseline)",
                None,
            )
        )
    for jobs in FAN_JOBS:
        section.details.append(
            f"--jobs {jobs}: imagectl (s) {fmt_times(tool[jobs])}, "
            f"{median(tool[jobs]) / count:.3f} "
            f"s per line; raw buildx {jobs} at a time (s) {fmt_times(raw[jobs])}, "
            f"{median(raw[jobs]) / count:.3f} s per build"
        )
    section.details += [
        "",
        "Order of the runs per round: " + "; ".join(samples.orders) + ".",
        "",
        f"The machine has {os.cpu_count()} cores: beyond that many builds at a time, neither "
        "imagectl nor raw buildx can gain much; the comparison that matters is imagectl's "
        "speed-up against raw buildx's at the same N.",
        "",
    ]
