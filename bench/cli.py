"""3. CLI latency without the engine: `--help`, `history`, `plan`, `resolve` and `query package`
on a synthetic repository of built versions, DOCKER_HOST pointing nowhere, against `git log -1`."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from bench.breakdown import breakdown, profile_summary
from bench.common import IMAGECTL, CommandFailedError, Session, fmt_times, median, run, say, timed
from bench.report import Row, Section
from bench.synthetic import make_synthetic

NOWHERE = "unix:///nonexistent.sock"  # DOCKER_HOST for the engine-free CLI benchmark
# Absolute seconds, Python start-up included: (warm, cold); cold = no .imagectl/ (CI)
CLI_TARGETS = {
    "plan": (0.30, 1.0),
    "history": (0.15, 0.15),
    "resolve": (0.15, 0.15),
    "--help": (0.15, 0.15),
    "query": (0.5, 0.5),
}
FLOOR = "`git log -1` (floor)"
# Every line has libssl3 in its base, upgraded every 20th version: hits in half the versions.
QUERY = "`imagectl query package libssl3 --version '<3.0.13-0ubuntu3.100'`"
Times = dict[str, list[float]]  # seconds per command name


def bench_cli(session: Session) -> Section:
    sizes = session.sizes
    lines, versions = sizes.cli_lines, sizes.cli_versions
    section = Section(
        3,
        "CLI latency without the engine",
        f"`--help`, `history`, `plan` (all lines), `resolve` and `query package` on a synthetic "
        f"repository of {lines} lines x {versions} built versions (valid locks, no drift; each "
        "line's package record holds 700 packages and a change per version), DOCKER_HOST "
        f"pointing nowhere; `git log -1` in the same repository as the floor",
        "absolute, Python start-up included: `plan` <= "
        f"{CLI_TARGETS['plan'][0]} s warm and <= {CLI_TARGETS['plan'][1]} s cold; `history`, "
        f"`resolve` (and `--help`) <= {CLI_TARGETS['history'][0]} s; `query package` <= "
        f"{CLI_TARGETS['query'][0]} s",
    )
    root = session.work / "synthetic"
    env = {**os.environ, "DOCKER_HOST": NOWHERE}
    middle = f"line{lines // 2:03d}"
    query = _synthetic_repo(section, session, root, env, middle)
    keys = {
        "`imagectl --help`": "--help",
        f"`imagectl history {middle}`": "history",
        "`imagectl plan`": "plan",
        "`imagectl resolve <tag>`": "resolve",
        QUERY: "query",
    }
    commands: list[tuple[str, list[str]]] = [
        (FLOOR, ["git", "-C", str(root), "log", "-1"]),
        ("`imagectl --help`", [IMAGECTL, "--help"]),
        (f"`imagectl history {middle}`", [IMAGECTL, "-C", str(root), "history", middle]),
        ("`imagectl plan`", [IMAGECTL, "-C", str(root), "plan"]),
        ("`imagectl resolve <tag>`", [IMAGECTL, "-C", str(root), "resolve", query]),
        (QUERY, [IMAGECTL, "-C", str(root), "query", "package", "libssl3", "--version",
                 "<3.0.13-0ubuntu3.100"]),
    ]  # fmt: skip
    floor_times, warm, cold = _time_commands(session, root, env, commands)
    _cli_rows(
        section,
        session,
        floor_times=floor_times,
        times=(warm, cold),
        commands=commands[1:],
        keys=keys,
    )
    _cli_why(
        section, session, root=root, env=env, commands=commands[1:], keys=keys, times=(warm, cold)
    )
    _site_rows(section, session, root, env)
    return section


SITE_TARGET = 10.0  # seconds for the whole site of the synthetic repository


def _site_rows(section: Section, session: Session, root: Path, env: dict[str, str]) -> None:
    """`imagectl site` of the whole synthetic repository: first (nothing to reuse), then again
    with nothing changed (every page linked from the site before)."""
    out = session.work / "site"
    lines, versions = session.sizes.cli_lines, session.sizes.cli_versions
    first, again = [], []
    for _ in range(2):
        shutil.rmtree(out, ignore_errors=True)
        first.append(timed([IMAGECTL, "-C", str(root), "site", "--out", str(out)], env=env))
        again.append(timed([IMAGECTL, "-C", str(root), "site", "--out", str(out)], env=env))
    pages = sum(1 for _ in out.rglob("*.html"))
    for label, times in (("first", first), ("nothing changed", again)):
        value = median(times)
        section.rows.append(
            Row(
                "3 cli",
                f"`imagectl site` {label} ({lines}x{versions}, {pages} pages; {fmt_times(times)})",
                f"**{value:.2f} s**",
                f"<= {SITE_TARGET:.0f} s",
                value <= SITE_TARGET,
            )
        )
        say(f"3 cli: site {label}: {value:.2f} s")


def _synthetic_repo(
    section: Section, session: Session, root: Path, env: dict[str, str], middle: str
) -> str:
    """The synthetic repository, proven to be what it should be before timing anything; the
    tag `resolve` is asked about."""
    sizes = session.sizes
    lines, versions = sizes.cli_lines, sizes.cli_versions
    say(f"3 cli: generating {lines} lines x {versions} versions through imagectl's own code")
    start = time.perf_counter()
    make_synthetic(root, session.repository("synthetic"), lines, versions)
    section.details.append(f"generated in {time.perf_counter() - start:.1f} s (not timed)")
    query = f"{session.repository('synthetic')}/{middle}:v{versions // 2}"
    newest = f"{session.repository('synthetic')}/{middle}:v{versions}"
    # (nothing to build; every version is pending publication, as nothing was pushed)
    planned = json.loads(run([IMAGECTL, "-C", str(root), "plan", "--json"], env=env).stdout)
    if len(planned) != lines or any(entry["to_build"] for entry in planned):
        raise CommandFailedError(f"synthetic repository is not built:\n{str(planned)[:2000]}")
    resolved = run([IMAGECTL, "-C", str(root), "resolve", query], env=env).stdout.strip()
    if resolved != newest:
        raise CommandFailedError(f"resolve {query} gave {resolved!r}, expected {newest!r}")
    return query


def _time_commands(
    session: Session, root: Path, env: dict[str, str], commands: list[tuple[str, list[str]]]
) -> tuple[list[float], Times, Times]:
    """The floor's times, and each command's warm and cold times."""
    state = root / ".imagectl"  # imagectl's local caches (render cache, parsed locks)
    floor_times: list[float] = []
    cold: Times = {name: [] for name, _ in commands[1:]}
    warm: Times = {name: [] for name, _ in commands[1:]}
    # Cold: no .imagectl/ (a fresh clone, CI). Warm: the caches of the run before (a checkout
    # in use). Interleaved within each phase, so drift in machine load hits all alike.
    for _ in range(session.sizes.cli_reps):
        for name, command in commands:
            if name == FLOOR:
                floor_times.append(timed(command, env=env))
                continue
            shutil.rmtree(state, ignore_errors=True)
            cold[name].append(timed(command, env=env))
    for _, command in commands[1:]:
        run(command, env=env)  # fill the caches
    for _ in range(session.sizes.cli_reps):
        for name, command in commands:
            if name == FLOOR:
                floor_times.append(timed(command, env=env))
            else:
                warm[name].append(timed(command, env=env))
    return floor_times, warm, cold


def _cli_rows(
    section: Section,
    session: Session,
    *,
    floor_times: list[float],
    times: tuple[Times, Times],
    commands: Sequence[tuple[str, list[str]]],
    keys: dict[str, str],
) -> None:
    (warm, cold), floor = times, median(floor_times)
    lines, versions = session.sizes.cli_lines, session.sizes.cli_versions
    section.details += [
        "",
        f"`git log -1` (floor, {len(floor_times)} runs): {fmt_times(floor_times)}; median "
        f"{floor * 1000:.1f} ms. Cold: `.imagectl/` (imagectl's local caches) removed before "
        "each run, as in a fresh clone; warm: the caches the previous run left.",
        "",
        "| command | cold times (s) | cold median | / floor | warm times (s) | warm median "
        "| / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _ in commands:
        c, w = median(cold[name]), median(warm[name])
        section.details.append(
            f"| {name} | {fmt_times(cold[name])} | {c:.3f} | {c / floor:.1f} | "
            f"{fmt_times(warm[name])} | {w:.3f} | {w / floor:.1f} |"
        )
        target = CLI_TARGETS[keys[name]]
        for label, value, limit in (("warm", w, target[0]), ("cold", c, target[1])):
            if name == "`imagectl --help`" and label == "cold":
                continue  # --help reads no repository: cold and warm are the same thing
            section.rows.append(
                Row(
                    "3 cli",
                    f"{name} {label} ({lines}x{versions}; / `git log -1`)",
                    f"**{value:.3f} s** ({value / floor:.0f}x)",
                    f"<= {limit} s",
                    value <= limit,
                )
            )
        say(f"3 cli: {name}: cold {c:.3f} s, warm {w:.3f} s")
    section.details.append("")


def _cli_why(
    section: Section,
    session: Session,
    *,
    root: Path,
    env: dict[str, str],
    commands: Sequence[tuple[str, list[str]]],
    keys: dict[str, str],
    times: tuple[Times, Times],
) -> None:
    """For each missed CLI target: a breakdown, a profile and the sentence they give."""
    warm, cold = times
    for name, command in commands:
        target = CLI_TARGETS[keys[name]]
        for label, value, limit in (
            ("warm", median(warm[name]), target[0]),
            ("cold", median(cold[name]), target[1]),
        ):
            if value <= limit or (name == "`imagectl --help`" and label == "cold"):
                continue
            missed = (name, label, value, limit)
            _explain_missed(section, session, root=root, env=env, command=command, missed=missed)


def _explain_missed(
    section: Section,
    session: Session,
    *,
    root: Path,
    env: dict[str, str],
    command: list[str],
    missed: tuple[str, str, float, float],
) -> None:
    name, label, value, limit = missed
    state = root / ".imagectl"
    args = command[3:] if command[1] == "-C" else command[1:]
    # Warm: fill the caches first (a cold measurement before may have left them partial);
    # cold: none.
    shutil.rmtree(state, ignore_errors=True)
    if label == "warm":
        run(command, env=env)
    parts = breakdown(session, args, root, base_env=env)
    shutil.rmtree(state, ignore_errors=True)
    if label == "warm":
        run(command, env=env)
    lines_out, top = profile_summary(
        args, root, env, session.work / f"profile-{args[0]}-{label}.prof", label=label
    )
    section.details += parts.markdown(
        f"Where `imagectl {' '.join(args)}` ({label}) spends its time", each_call=False
    )
    section.details += lines_out
    startup = parts.interpreter + parts.imports
    own = parts.wall - startup
    shares = ", ".join(f"{group} {100 * share:.0f} %" for group, share in top)
    section.why.append(
        f"**3 {name} {label} (target <= {limit} s): {value:.3f} s.** In one run of "
        f"{parts.wall:.3f} s (breakdown below), Python start-up and imports took "
        f"{startup:.3f} s ({parts.interpreter:.3f} s interpreter, {parts.imports:.3f} s "
        f"imports) and imagectl's own work {own:.3f} s, with {parts.count('docker')} "
        f"docker and {parts.count('git')} git calls; that work alone is "
        f"{100 * own / limit:.0f} % of the target. By cProfile, the function time "
        f"went to: {shares}."
    )
