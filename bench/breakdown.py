"""Where one imagectl run spends its time: docker and git calls (through logging shims),
Python start-up and imports (`-X importtime`), the rest; and cProfile summaries."""

from __future__ import annotations

import os
import pstats
import shutil
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import PYTHON, Session, median, nonce, run, timed, write
from imagectl.adapters.docker_config import buildx_plugin

SHIM = """#!/usr/bin/env bash
start=$EPOCHREALTIME
"{real}" "$@"
code=$?
printf '%s %s %s %s\\n' {tool} "$start" "$EPOCHREALTIME" "$*" >> "$BENCH_CALL_LOG"
exit $code
"""
# imagectl runs the buildx plugin binary itself (not `docker buildx`): a plugin of the same name
# in a DOCKER_CONFIG of the run's own logs its calls as the docker CLI's would be.
PLUGIN_SHIM = """#!/usr/bin/env bash
start=$EPOCHREALTIME
"{real}" "$@"
code=$?
printf '%s %s %s %s\\n' docker "$start" "$EPOCHREALTIME" "buildx $*" >> "$BENCH_CALL_LOG"
exit $code
"""
SHIMMED = ("docker", "git")
TWO_WORD = {"image", "manifest", "buildx", "container", "builder", "system"}


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool: str  # docker or git
    begin: float  # epoch seconds
    end: float
    argv: str

    @property
    def seconds(self) -> float:
        return self.end - self.begin

    @property
    def kind(self) -> str:
        words = [w for w in self.argv.split() if not w.startswith("-")]
        if self.tool == "git" and words[:1] == ["git"]:
            words = words[1:]  # GitPython's execute(["git", ...]) through the shim
        if not words:
            return self.tool
        if words[0] in TWO_WORD and len(words) > 1:
            return f"{self.tool} {words[0]} {words[1]}"
        return f"{self.tool} {words[0]}"


@dataclass(frozen=True, slots=True)
class Breakdown:
    wall: float
    interpreter: float  # a bare `python -c pass`, site included
    imports: float  # imports beyond the bare interpreter's (from -X importtime)
    top_imports: tuple[tuple[str, float], ...]
    calls: tuple[ToolCall, ...]

    @property
    def active(self) -> tuple[ToolCall, ...]:
        """The calls, without long-lived helpers (GitPython's `git cat-file --batch`, which
        lives through the whole run and sits idle between requests)."""
        return tuple(c for c in self.calls if "--batch" not in c.argv)

    @property
    def helpers(self) -> int:
        return len(self.calls) - len(self.active)

    def spent(self, tool: str) -> float:
        """Time while at least one call of `tool` ran (= their sum when sequential)."""
        return union_length([(c.begin, c.end) for c in self.active if c.tool == tool])

    def count(self, tool: str) -> int:
        return sum(1 for call in self.active if call.tool == tool)

    @property
    def rest(self) -> float:
        """Wall time with no docker or git call running, beyond start-up and imports."""
        busy = union_length([(c.begin, c.end) for c in self.active])
        return self.wall - self.interpreter - self.imports - busy

    def in_flight(self, kind: str) -> tuple[float, float]:
        """(summed seconds, seconds with at least one running) of the calls of one kind."""
        chosen = [(c.begin, c.end) for c in self.calls if c.kind == kind]
        return sum(end - begin for begin, end in chosen), union_length(chosen)

    def by_kind(self) -> list[tuple[str, int, float]]:
        kinds: dict[str, list[float]] = {}
        for call in self.calls:
            kinds.setdefault(call.kind, []).append(call.seconds)
        rows = [(kind, len(times), sum(times)) for kind, times in kinds.items()]
        return sorted(rows, key=lambda row: -row[2])

    def explain(self, *, skip: str = "docker buildx build") -> str:
        """Where the wall time of this run went, in words, from the measured parts."""
        others = [c for c in self.active if c.tool == "docker" and c.kind != skip]
        other_busy = union_length([(c.begin, c.end) for c in others])
        skipped, skipped_busy = self.in_flight(skip)
        kinds = [(k, n, s) for k, n, s in self.by_kind() if k.startswith("docker") and k != skip]
        kinds = [row for row in kinds if row[0] != "git cat-file"]
        top = ", ".join(f"{n} x `{k}` {s:.3f} s" for k, n, s in kinds[:4])
        text = f"Of one run's {self.wall:.3f} s wall (breakdown below): "
        if skipped:
            count = sum(1 for c in self.calls if c.kind == skip)
            text += f"{skipped_busy:.3f} s in {count} `{skip}`; "
        text += (
            f"{other_busy:.3f} s in {len(others)} other docker calls"
            + (f" ({top})" if top else "")
            + f"; {self.spent('git'):.3f} s in {self.count('git')} git calls; "
            f"{self.interpreter + self.imports:.3f} s Python start-up and imports "
            f"({self.interpreter:.3f} s interpreter, {self.imports:.3f} s imports"
        )
        if self.top_imports:
            name, seconds = self.top_imports[0]
            text += f", the largest `{name}` {seconds:.3f} s"
        text += f"); {self.rest:.3f} s the rest (imagectl's own Python work, spawning)."
        return text

    def fixed(self, *, skip: str = "docker buildx build") -> tuple[float, int, float, float]:
        """(seconds in docker calls other than `skip`, their count, start-up + imports, rest)."""
        others = [c for c in self.active if c.tool == "docker" and c.kind != skip]
        busy = union_length([(c.begin, c.end) for c in others])
        docker = union_length([(c.begin, c.end) for c in self.active if c.tool == "docker"])
        startup = self.interpreter + self.imports
        return busy, len(others), startup, self.wall - startup - docker

    def markdown(self, title: str, *, each_call: bool) -> list[str]:
        out = [
            f"**{title}** (one extra run, not timed above: `python -X importtime` and `docker`/"
            "`git` shims that log each call add a little overhead)",
            "",
            "| part | seconds | share |",
            "|---|---|---|",
        ]
        parts = [
            ("Python interpreter start-up (bare `python -c pass`)", self.interpreter),
            ("imports beyond that (`-X importtime`)", self.imports),
            (f"docker CLI calls ({self.count('docker')}), while any runs", self.spent("docker")),
            (f"git calls ({self.count('git')}), while any runs", self.spent("git")),
            ("the rest: no call running (imagectl's own Python work, spawning)", self.rest),
        ]
        for name, seconds in parts:
            out.append(f"| {name} | {seconds:.3f} | {100 * seconds / self.wall:.0f} % |")
        out.append(f"| **wall** | **{self.wall:.3f}** | 100 % |")
        out += ["", "| call | count | seconds |", "|---|---|---|"]
        out += [f"| `{kind}` | {n} | {s:.3f} |" for kind, n, s in self.by_kind()]
        if self.helpers:
            out += [
                "",
                f"({self.helpers} long-lived `--batch` helper process(es), GitPython's `git "
                "cat-file`, live through the run and sit idle between requests: listed above, "
                "left out of the parts.)",
            ]
        summed, busy = self.in_flight("docker buildx build")
        if busy and summed > 1.05 * busy:
            out += [
                "",
                f"Builds overlap: {summed:.3f} s of `docker buildx build` ran within {busy:.3f} s "
                f"(on average {summed / busy:.2f} in flight while any ran); no build was running "
                f"for {self.wall - busy:.3f} s of the {self.wall:.3f} s wall.",
            ]
        if each_call:
            out += ["", "In order:", ""]
            out += [f"- {c.seconds:.3f} s `{c.tool} {c.argv[:140]}`" for c in self.calls]
        if self.top_imports:
            out += ["", "Slowest top-level imports beyond the interpreter's own:", ""]
            out += [f"- {name}: {s:.3f} s" for name, s in self.top_imports]
        out.append("")
        return out


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for begin, end in sorted(intervals):
        if end > reach:
            total += end - max(begin, reach)
            reach = end
    return total


def _import_times(stderr: str) -> dict[str, float]:
    """Top-level imports (not nested) and their cumulative seconds, from -X importtime."""
    tops: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if name.startswith("  ") or not cumulative.strip().isdigit():
            continue  # nested (indented) or the header line
        tops[name.strip()] = tops.get(name.strip(), 0.0) + int(cumulative) / 1e6
    return tops


def _shim_config(session: Session, base: dict[str, str]) -> Path:
    """A docker config folder of the run's own: the real one's entries linked, and a logging
    shim of the buildx plugin imagectl would run."""
    config = session.work / "shim-config"
    if config.exists():
        return config
    real = Path(base.get("DOCKER_CONFIG") or Path.home() / ".docker")
    config.mkdir(parents=True)
    for entry in real.iterdir() if real.is_dir() else ():
        if entry.name != "cli-plugins":
            (config / entry.name).symlink_to(entry)
    plugin = buildx_plugin()
    if plugin is not None:
        write(config / "cli-plugins" / "docker-buildx", PLUGIN_SHIM.format(real=plugin), mode=0o755)
    return config


def breakdown(
    session: Session, args: Sequence[str], root: Path, *, base_env: dict[str, str] | None = None
) -> Breakdown:
    """Run `imagectl -C root ARGS` once with the docker and git shims and -X importtime."""
    shim_dir = session.work / "shim"
    for tool in SHIMMED:
        if not (shim_dir / tool).exists():
            real = shutil.which(tool) or tool
            write(shim_dir / tool, SHIM.format(real=real, tool=tool), mode=0o755)
    log = session.work / f"calls-{nonce()}.log"
    base = dict(os.environ) if base_env is None else base_env
    env = {
        **base,
        "PATH": f"{shim_dir}:{base.get('PATH', '')}",
        "BENCH_CALL_LOG": str(log),
        "DOCKER_CONFIG": str(_shim_config(session, base)),
    }
    bare = [timed([PYTHON, "-c", "pass"]) for _ in range(5)]
    bare_imports = _import_times(run([PYTHON, "-X", "importtime", "-c", "pass"]).stderr)
    start = time.perf_counter()
    done = run([PYTHON, "-X", "importtime", "-m", "imagectl", "-C", str(root), *args], env=env)
    wall = time.perf_counter() - start
    imports = {
        name: seconds
        for name, seconds in _import_times(done.stderr).items()
        if name not in bare_imports
    }
    calls = []
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            tool, begin, end, argv = line.split(" ", 3)
            calls.append(ToolCall(tool, float(begin), float(end), argv))
    top = tuple(sorted(imports.items(), key=lambda item: -item[1])[:8])
    return Breakdown(
        wall=wall,
        interpreter=median(bare),
        imports=sum(imports.values()),
        top_imports=top,
        calls=tuple(calls),
    )


def profile_summary(
    args: Sequence[str], root: Path, env: dict[str, str], out: Path, *, label: str
) -> tuple[list[str], list[tuple[str, float]]]:
    """cProfile of `python -m imagectl -C root ARGS`: tottime grouped by module, top functions;
    and the top module groups as (name, share of the function time)."""
    run(
        [PYTHON, "-m", "cProfile", "-o", str(out), "-m", "imagectl", "-C", str(root), *args],
        env=env,
    )
    stats = pstats.Stats(str(out))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    groups: dict[str, float] = {}
    own: list[tuple[float, float, int, str]] = []
    for (filename, lineno, function), (_, calls, tottime, cumtime, _) in raw.items():
        group = _module_group(filename, function)
        groups[group] = groups.get(group, 0.0) + tottime
        wrapper = function.startswith("<") or function in {"main", "_capture"}
        if "/imagectl/" in filename and not wrapper:
            own.append((cumtime, tottime, calls, f"{Path(filename).name}:{lineno} {function}"))
    out_lines = [
        f"Profile of `imagectl {' '.join(args)}`, {label} (cProfile, {total:.2f} s of function "
        "time; profiling slows Python code down, so compare shares, not seconds). "
        "Own time by module:",
        "",
    ]
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1])[:10]:
        out_lines.append(f"- {group}: {seconds:.3f} s ({100 * seconds / total:.0f} %)")
    out_lines += [
        "",
        "imagectl functions by cumulative time (module bodies and wrappers left out):",
        "",
    ]
    for cumtime, _tottime, calls, name in sorted(own, reverse=True)[:20]:
        out_lines.append(f"- `{name}`: {cumtime:.3f} s cumulative, {calls} calls")
    out_lines.append("")
    top = sorted(groups.items(), key=lambda item: -item[1])[:4]
    return out_lines, [(group, seconds / total) for group, seconds in top]


STDLIB = sysconfig.get_paths()["stdlib"]


def _module_group(filename: str, function: str) -> str:
    if filename == "~":
        name = function.split(" of ", maxsplit=1)[0].strip("<>{}")
        return "builtin " + name.removeprefix("built-in method ").removeprefix("method ")
    if "/imagectl/" in filename:
        return f"imagectl/{Path(filename).name}"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename.startswith(STDLIB):
        return f"stdlib {filename.removeprefix(STDLIB).lstrip('/')}"
    return f"stdlib {filename}"
