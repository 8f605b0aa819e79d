"""8. Flat cost on a dpkg line: `build next` on Debian lines whose every increment adds a dpkg
package, at several lengths, beside a raw build of the same step; the package sidecar's size."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.breakdown import Breakdown, breakdown
from bench.common import (
    DEBIAN,
    IMAGECTL,
    CommandFailedError,
    Session,
    Sizes,
    fmt_times,
    git_commit,
    git_init,
    imagectl,
    median,
    nonce,
    run,
    say,
    timed,
    write,
)
from bench.report import Row, Section
from bench.synthetic import LockCounts, lock_counts, replay_sidecar


class DpkgLine:
    """A line on the Debian base whose every increment installs one (fake) dpkg package: the
    sidecar grows by one package per version, as on a real apt line, in seconds per build."""

    def __init__(self, session: Session, name: str) -> None:
        self.name = name
        self.repository = session.repository(name)
        self.root = session.work / name
        write(
            self.root / "images" / f"{name}.toml",
            f'repository = "{self.repository}"\nbase = "{DEBIAN}"\n[vars]\n',
        )
        (self.root / "lock").mkdir(parents=True, exist_ok=True)
        write(self.root / ".gitignore", ".imagectl/\n")
        git_init(self.root)
        self.nonce = nonce()  # in every package's version: the chain is new to the cache
        self.written = 0

    @property
    def sidecar(self) -> Path:
        return self.root / "lock" / f"{self.name}.packages.toml"

    def counts(self) -> LockCounts:
        return lock_counts(
            self.root / "lock" / f"{self.name}.lock.toml", line=self.name,
            repository=self.repository, base=DEBIAN,
        )  # fmt: skip

    def versions(self) -> int:
        return self.counts().versions

    def write_increments(self, count: int) -> None:
        for i in range(self.written + 1, count + 1):
            stanza = (
                f"Package: bench-{i:04d}\\nStatus: install ok installed\\nArchitecture: all"
                f"\\nVersion: 1.0-{self.nonce}\\n\\n"
            )
            write(
                self.root / "increments" / self.name / f"{i:04d}-pkg.Dockerfile.j2",
                f"# package {i}\nRUN printf '{stanza}' >> /var/lib/dpkg/status\n",
            )
        self.written = max(self.written, count)
        git_commit(self.root, f"up to {count}")

    def grow_to(self, versions: int) -> None:
        """Build (not timed) until the line has `versions` versions, checkpointing at Docker's
        layer limit as a long line must."""
        while (counts := self.counts()).versions < versions:
            built = counts.versions - counts.checkpoints  # the versions from increments
            self.write_increments(built + versions - counts.versions)  # no more than needed
            build = [IMAGECTL, "-C", str(self.root), "build", "next", "--all", "-q"]
            done = run(build, check=False)
            if done.returncode != 0:
                if "checkpoint" not in done.stderr:
                    raise CommandFailedError(done.stderr[-3000:])
                run([IMAGECTL, "-C", str(self.root), "checkpoint", self.name])

    def build_next(self) -> float:
        self.write_increments(self.written + 1)
        return imagectl(self.root, "build", "next", "-q")

    def raw(self, label: str) -> float:
        """A raw `buildx build --load` of the same kind of step on the line's head."""
        context = self.root.parent / f"{self.name}-raw"
        write(
            context / f"Dockerfile.{label}",
            f"FROM {self.repository}:v{self.versions()}\n"
            f"RUN printf 'Package: raw-{label}\\n\\n' >> /var/lib/dpkg/status\n",
        )
        command = ["docker", "buildx", "build", "--progress=plain", "--load"]
        command += [
            "-t",
            f"{self.repository}-raw:{label}",
            "-f",
            str(context / f"Dockerfile.{label}"),
        ]
        return timed([*command, str(context)])

    def checkpoints(self) -> int:
        return self.counts().checkpoints


@dataclass(slots=True)
class DpkgSamples:
    times: dict[int, list[float]] = field(default_factory=dict)  # imagectl build next
    raw: dict[int, list[float]] = field(default_factory=dict)  # raw buildx FROM the head
    sidecar: dict[int, int] = field(default_factory=dict)  # bytes when the timed builds start

    def ratio(self, which: dict[int, list[float]], n: int, first: int) -> float:
        return median(which[n]) / median(which[first])

    def own(self, n: int) -> float:
        return median(self.times[n]) - median(self.raw[n])


def bench_dpkg(session: Session) -> Section:
    sizes = session.sizes
    points, first, last = sizes.dpkg_points, sizes.dpkg_points[0], sizes.dpkg_points[-1]
    section = Section(
        8,
        "Flat cost on a dpkg line",
        f"one `build next` on a Debian line (`{DEBIAN}`) whose every increment adds a package "
        f"to dpkg's status, at n = {', '.join(map(str, points))} versions (one line each, "
        "builds taken in turns), beside a raw "
        "`buildx build` of the same step on the head; then the package sidecar's size at "
        f"{sizes.dpkg_sidecar} versions (checkpoints at the layer limit)",
        f"build next at n={last} <= 1.5 x at n={first}",
    )
    # One line per length, the timed builds taken in turns (n=1, 50, 100, n=1, ...): a machine
    # that slows down or speeds up during the run weighs on every length alike.
    lines = {n: DpkgLine(session, f"dpkg{n}") for n in points}
    samples = DpkgSamples()
    for n, line in lines.items():
        say(f"8 dpkg: growing a line to {n} versions (not timed)")
        line.grow_to(n)
        samples.times[n], samples.raw[n] = [], []
        samples.sidecar[n] = line.sidecar.stat().st_size
    for rep in range(sizes.dpkg_reps):
        for n, line in lines.items():
            samples.raw[n].append(line.raw(f"r{rep}"))
            samples.times[n].append(line.build_next())
        say(f"8 dpkg: round {rep + 1}: " + ", ".join(
            f"n={n} {samples.times[n][-1]:.3f} s (raw {samples.raw[n][-1]:.3f} s)" for n in points
        ))  # fmt: skip
    line = lines[last]
    line.write_increments(line.written + 1)
    at = line.versions()
    parts = breakdown(session, ["build", "next", "-q"], line.root)
    say(f"8 dpkg: growing the n={last} line to {sizes.dpkg_sidecar} versions (not timed)")
    line.grow_to(sizes.dpkg_sidecar)
    _dpkg_report(section, sizes, samples, line)
    explained = _dpkg_explained(sizes, samples, parts, at)
    section.details += explained
    if section.rows[0].met is False:
        section.why.append(
            f"**8 dpkg ({section.rows[0].value}).** {explained[0]} {parts.explain()}"
        )
    section.details += parts.markdown(
        f"Where one `build next` at n={at} spends its time", each_call=False
    )
    return section


def _dpkg_report(section: Section, sizes: Sizes, samples: DpkgSamples, line: DpkgLine) -> None:
    points, first, last = sizes.dpkg_points, sizes.dpkg_points[0], sizes.dpkg_points[-1]
    ratio = {n: samples.ratio(samples.times, n, first) for n in points}
    raw = {n: samples.ratio(samples.raw, n, first) for n in points}
    later = ", ".join(map(str, points[1:]))
    versions, size = line.versions(), line.sidecar.stat().st_size
    replay, base_packages = replay_sidecar(line.sidecar)
    section.rows += [
        Row(
            "8 dpkg",
            f"build next(n)/build next({first}) on a dpkg line, n = {later}",
            ", ".join(f"{ratio[n]:.2f}" for n in points[1:])
            + f" (n={last}: **{ratio[last]:.2f}**)",
            f"n={last}: <= 1.5",
            ratio[last] <= 1.5,
        ),
        Row(
            "8 dpkg",
            f"context: raw buildx FROM the head, raw(n)/raw({first}), n = {later}",
            ", ".join(f"{raw[n]:.2f}" for n in points[1:]),
            "(Docker's own growth)",
            None,
        ),
        Row(
            "8 dpkg",
            f"package sidecar at {versions} versions ({line.checkpoints()} checkpoints; base "
            f"{base_packages} packages)",
            f"**{size / 1000:.1f} kB** ({(size - samples.sidecar[first]) / (versions - first):.0f}"
            " B per version)",
            "(reported)",
            None,
        ),
        Row(
            "8 dpkg",
            f"parse + replay of the sidecar at {versions} versions (no build does it now)",
            f"{replay * 1000:.0f} ms",
            "(reported)",
            None,
        ),
    ]
    section.details += _dpkg_table(sizes, samples)
    section.details += [
        "",
        f"At {versions} versions the sidecar is {size} bytes; reading and replaying it whole, "
        f"as each build did before the cached head, takes {replay * 1000:.0f} ms here.",
        "",
    ]


def _dpkg_table(sizes: Sizes, samples: DpkgSamples) -> list[str]:
    points, first = sizes.dpkg_points, sizes.dpkg_points[0]
    out = [
        "One line per n, the timed builds taken in turns across them; n = versions when the "
        "timed builds start (the first builds v(n+1)); raw = a `buildx build --load` of the same "
        "kind of step FROM that line's head, just before each; sidecar = its size when the timed "
        "builds start.",
        "",
        "| n | build next (s) | median | ratio | raw (s) | median | ratio "
        "| imagectl beyond raw (s) | sidecar (bytes) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in points:
        ratio = samples.ratio(samples.times, n, first)
        raw = samples.ratio(samples.raw, n, first)
        out.append(
            f"| {n} | {fmt_times(samples.times[n])} | {median(samples.times[n]):.3f} | "
            f"{ratio:.2f} | {fmt_times(samples.raw[n])} | {median(samples.raw[n]):.3f} | "
            f"{raw:.2f} | {samples.own(n):.3f} | {samples.sidecar.get(n, 0)} |"
        )
    return out


def _dpkg_explained(sizes: Sizes, samples: DpkgSamples, parts: Breakdown, at: int) -> list[str]:
    """What the measured figures say, in words."""
    first, last = sizes.dpkg_points[0], sizes.dpkg_points[-1]
    build = parts.in_flight("docker buildx build")[0]
    export = parts.in_flight("docker export")[0]
    ours, raw = samples.times, samples.raw
    return [
        f"From n={first} to n={last} one `build next` went from {median(ours[first]):.2f} s to "
        f"{median(ours[last]):.2f} s (x{samples.ratio(ours, last, first):.2f}); the raw build of "
        f"the same step on the head went from {median(raw[first]):.2f} s to "
        f"{median(raw[last]):.2f} s (x{samples.ratio(raw, last, first):.2f}): "
        f"Docker's own cost at a depth of n+1 layers. imagectl's time beyond the raw build went "
        f"from {samples.own(first):.2f} s to {samples.own(last):.2f} s. In one build at n={at} "
        f"(below), the build itself took {build:.2f} s and the package manifest's one pass over "
        f"the image's files (`docker export` of a created container, read for dpkg's status, pip "
        f"and conda) {export:.2f} s of the {parts.wall:.2f} s wall; that pass reads the whole "
        "image, so it follows the image's size, not the number of versions. The "
        "sidecar is appended to and the parent's manifest comes from the cached head, so the "
        "sidecar's length costs a build only a hash of its text.",
        "",
    ]
