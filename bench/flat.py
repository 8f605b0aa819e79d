"""2. Incremental cost stays flat: one `build next` on a busybox line at several lengths, vs
building the line's reference Dockerfile from scratch at the same lengths."""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.breakdown import Breakdown, breakdown, profile_summary
from bench.common import (
    BUSYBOX,
    IMAGECTL,
    Session,
    Sizes,
    fmt_times,
    git_commit,
    imagectl,
    median,
    new_repo,
    nonce,
    run,
    say,
    timed,
    write,
)
from bench.report import Row, Section


@dataclass(slots=True)
class FlatSamples:
    """Seconds per line length n (each a list of repetitions)."""

    incremental: dict[int, list[float]] = field(default_factory=dict)  # imagectl build next
    raw_head: dict[int, list[float]] = field(default_factory=dict)  # raw buildx FROM the head
    control: dict[int, list[float]] = field(default_factory=dict)  # raw buildx FROM busybox
    scratch: dict[int, list[float]] = field(default_factory=dict)  # the reference, --no-cache

    def ratio(self, which: dict[int, list[float]], n: int, first: int) -> float:
        return median(which[n]) / median(which[first])

    def overhead(self, n: int) -> float:
        """imagectl's time beyond a raw build on the same parent."""
        return median(self.incremental[n]) - median(self.raw_head[n])


class FlatLine:
    """The busybox line of benchmark 2 and the raw builds measured beside it."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.repository = session.repository("flat")
        self.root = new_repo(session.work / "flat", {"flat": self.repository})
        self.steps = self.root / "increments" / "flat"
        self.raw_dir = session.work / "flat-raw"
        (self.raw_dir / "context").mkdir(parents=True)
        self.nonce = nonce()
        self.written = 0  # increments on disk
        self.built = 0  # versions in the lock

    def write_up_to(self, n: int) -> None:
        for i in range(self.written + 1, n + 1):
            # The nonce in v1 makes the whole chain new to BuildKit's cache on every run.
            extra = f"echo {self.nonce} > /nonce && " if i == 1 else ""
            write(
                self.steps / f"{i:04d}-count.Dockerfile.j2",
                f"# count {i}\nRUN {extra}echo {i} >> /count\n",
            )
        self.written = max(self.written, n)
        git_commit(self.root, f"up to {n}")

    def build_all(self) -> None:
        run([IMAGECTL, "-C", str(self.root), "build", "next", "--all", "-q"])
        self.built = self.written

    def build_next(self) -> float:
        self.write_up_to(self.built + 1)
        seconds = imagectl(self.root, "build", "next", "-q")
        self.built += 1
        return seconds

    def raw(self, parent: str, label: str) -> float:
        """A raw `buildx build --load` of one new RUN on `parent`."""
        dockerfile = self.raw_dir / f"Dockerfile.{label}"
        write(dockerfile, f"FROM {parent}\nRUN echo {nonce()} >> /count\n")
        command = ["docker", "buildx", "build", "--progress=plain", "--load"]
        command += ["-t", f"{self.repository}-raw:{label}", "-f", str(dockerfile)]
        return timed([*command, str(self.raw_dir / "context")])

    def scratch(self, reference: Path, label: str) -> float:
        command = ["docker", "buildx", "build", "--no-cache", "--load", "--progress=plain"]
        command += ["-t", f"{self.repository}-scratch:{label}", "-f", str(reference)]
        return timed([*command, str(self.root)])


def bench_flat(session: Session) -> Section:
    sizes = session.sizes
    points = sizes.flat_points
    section = Section(
        2,
        "Incremental cost stays flat",
        f"one `build next` on a busybox line at n = {', '.join(map(str, points))} versions "
        "(`RUN echo <i> >> /count`), vs building the line's reference Dockerfile from scratch "
        "(`buildx build --no-cache --load`) at the same n",
        f"incremental(n={points[-1]}) <= 1.5 x incremental(n={points[0]}); scratch grows with n",
    )
    line = FlatLine(session)
    samples = FlatSamples()
    for n in points:
        _measure_at(session, line, samples, n)
    _flat_report(section, sizes, samples)
    line.write_up_to(line.built + 1)
    parts = breakdown(session, ["build", "next", "-q"], line.root)
    section.details += parts.markdown(
        f"Where one `build next` at n={line.built - 1} spends its time", each_call=False
    )
    if section.rows[0].met is False:
        _flat_why(session, section, line, samples, parts)
    return section


def _measure_at(session: Session, line: FlatLine, samples: FlatSamples, n: int) -> None:
    """The line grown to n versions (not timed), then the timed builds at n."""
    sizes = session.sizes
    if line.built < n:
        line.write_up_to(n)
        say(f"2 flat: building the line up to v{n} (not timed)")
        line.build_all()
    for kind in (samples.incremental, samples.raw_head, samples.control, samples.scratch):
        kind[n] = []
    snapshot = session.work / f"flat-reference-{n}.Dockerfile"
    for rep in range(sizes.flat_reps):
        samples.raw_head[n].append(line.raw(f"{line.repository}:v{line.built}", f"h{n}-{rep}"))
        samples.incremental[n].append(line.build_next())
        if rep == 0:  # the reference of exactly n+1 increments, as imagectl wrote it
            shutil.copyfile(line.root / "lock" / "flat.reference.Dockerfile", snapshot)
        samples.control[n].append(line.raw(BUSYBOX, f"c{n}-{rep}"))
    samples.scratch[n] = [line.scratch(snapshot, f"n{n}-{r}") for r in range(sizes.scratch_reps)]
    say(
        f"2 flat: n={n}: build next {fmt_times(samples.incremental[n])} s; raw FROM the head "
        f"{fmt_times(samples.raw_head[n])} s; from scratch {fmt_times(samples.scratch[n])} s"
    )


def _flat_why(
    session: Session, section: Section, line: FlatLine, samples: FlatSamples, parts: Breakdown
) -> None:
    points = session.sizes.flat_points
    over = samples.overhead(points[-1]) - samples.overhead(points[0])
    raw_growth = median(samples.raw_head[points[-1]]) - median(samples.raw_head[points[0]])
    section.why.append(
        f"**2 flat (target n={points[-1]} <= 1.5 x n={points[0]}).** From n={points[0]} to "
        f"n={points[-1]} `build next` grew by "
        f"{samples.overhead(points[-1]) + raw_growth - samples.overhead(points[0]):.3f}"
        f" s: the raw build FROM the head by {raw_growth:.3f} s (Docker's own cost of depth) "
        f"and imagectl's time beyond it by {over:.3f} s. " + parts.explain()
    )
    line.write_up_to(line.built + 1)
    section.details += profile_summary(
        ["build", "next", "-q"],
        line.root,
        dict(os.environ),
        session.work / "profile-flat.prof",
        label=f"at n={line.built}",
    )[0]


def _flat_report(section: Section, sizes: Sizes, samples: FlatSamples) -> None:
    points = sizes.flat_points
    first, last = points[0], points[-1]
    later = ", ".join(map(str, points[1:]))

    def ratios(which: dict[int, list[float]]) -> dict[int, float]:
        return {n: samples.ratio(which, n, first) for n in points}

    inc, raw, scr = ratios(samples.incremental), ratios(samples.raw_head), ratios(samples.scratch)
    over = {n: samples.overhead(n) / samples.overhead(first) for n in points}
    grows = all(scr[a] < scr[b] for a, b in itertools.pairwise(points))
    section.rows += [
        Row(
            "2 flat",
            f"incremental(n)/incremental({first}), n = {later}",
            ", ".join(f"{inc[n]:.2f}" for n in points[1:]) + f" (n={last}: **{inc[last]:.2f}**)",
            f"n={last}: <= 1.5",
            inc[last] <= 1.5,
        ),
        Row(
            "2 flat",
            f"scratch(n)/scratch({first}), n = {later}",
            ", ".join(f"{scr[n]:.2f}" for n in points[1:]),
            "grows with n",
            grows,
        ),
        Row(
            "2 flat",
            f"context: raw buildx FROM the head, raw(n)/raw({first}), n = {later}",
            ", ".join(f"{raw[n]:.2f}" for n in points[1:]),
            "(Docker's own growth)",
            None,
        ),
        Row(
            "2 flat",
            f"context: imagectl's overhead beyond that raw build, (n)/({first}), n = {later}",
            ", ".join(f"{over[n]:.2f}" for n in points[1:])
            + f" ({samples.overhead(first):.3f} s to {samples.overhead(last):.3f} s)",
            "(imagectl's own growth)",
            None,
        ),
    ]
    section.details += _flat_table(sizes, samples)


def _flat_table(sizes: Sizes, samples: FlatSamples) -> list[str]:
    points, first = sizes.flat_points, sizes.flat_points[0]
    out = [
        f"n = versions the line has when the timed `build next` starts (it builds v(n+1)); "
        f"median of {sizes.flat_reps} builds at n, n+1, ...; scratch = the reference of the "
        f"line at n+1 versions (median of {sizes.scratch_reps}). Before each timed build, a raw "
        "`buildx build --load` of one RUN on the same parent (the line's head) shows what "
        "Docker itself costs at that depth; after it, a control raw build on busybox shows how "
        "the machine's speed moved between the points.",
        "",
        "| n | build next (s) | median | ratio | raw FROM head, median | ratio | overhead "
        "(s) | control median | ratio | scratch (s) | median | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in points:
        inc, raw, ctl, scr = (
            samples.ratio(which, n, first)
            for which in (samples.incremental, samples.raw_head, samples.control, samples.scratch)
        )
        out.append(
            f"| {n} | {fmt_times(samples.incremental[n])} | {median(samples.incremental[n]):.3f}"
            f" | {inc:.2f} | {median(samples.raw_head[n]):.3f} | {raw:.2f} | "
            f"{samples.overhead(n):.3f} | {median(samples.control[n]):.3f} | {ctl:.2f} | "
            f"{fmt_times(samples.scratch[n])} | {median(samples.scratch[n]):.3f} | {scr:.2f} |"
        )
    out.append("")
    return out
