"""The results: rows and sections, the machine's description, and RESULTS.md."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, run


@dataclass(slots=True)
class Row:
    bench: str  # "1 overhead"
    metric: str  # what the number is
    value: str  # the ratio (and times) as printed
    target: str
    met: bool | None  # None: informational


@dataclass(slots=True)
class Section:
    """One benchmark's rows, its one-line summary and the details for RESULTS.md."""

    number: int
    title: str
    what: str
    target: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)  # computed from the measured figures
    seconds: float = 0.0

    @property
    def met(self) -> bool | None:
        verdicts = [row.met for row in self.rows if row.met is not None]
        return all(verdicts) if verdicts else None


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "NO")


def table(sections: Sequence[Section]) -> str:
    lines = ["| # | Metric | Result | Target | Met? |", "|---|---|---|---|---|"]
    for section in sections:
        for row in section.rows:
            lines.append(
                f"| {row.bench} | {row.metric} | {row.value} | {row.target} | {verdict(row.met)} |"
            )
    return "\n".join(lines)


# -- running things ----------------------------------------------------------------------------


# -- the machine and the report ----------------------------------------------------------------
# -- the machine and the report ----------------------------------------------------------------


def machine() -> list[tuple[str, str]]:
    def first_line(command: list[str]) -> str:
        done = run(command, check=False)
        lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
        return lines[0] if lines else "?"

    status = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "imagectl"], check=False)
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    dirty = bool(status.stdout.strip())
    return [
        ("date", datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")),
        ("nproc", str(os.cpu_count())),
        ("memory", memory),
        ("kernel", platform.release()),
        ("docker server", first_line(["docker", "version", "--format", "{{.Server.Version}}"])),
        ("docker client", first_line(["docker", "version", "--format", "{{.Client.Version}}"])),
        ("buildx", first_line(["docker", "buildx", "version"])),
        ("python", platform.python_version()),
        ("imagectl commit", first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])),
        ("imagectl/ uncommitted changes", "yes" if dirty else "no"),
        ("imagectl/*.py content hash (start)", imagectl_content()),
    ]


def imagectl_content() -> str:
    """A hash of imagectl/*.py as they are on disk now (another engineer may be editing)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "imagectl").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    return "?"


def results_markdown(
    sections: Sequence[Section],
    facts: list[tuple[str, str]],
    *,
    command: str,
    elapsed: float,
    loads: tuple[str, str],
) -> str:
    out = [
        "# imagectl benchmark results",
        "",
        f"`{command}`: {elapsed / 60:.1f} min. Ratios are measured in the same run (absolute "
        "times on a shared machine are noise). Regenerate with `bench/run` "
        "(`bench/run --quick` for a smoke run).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in facts),
        f"| load average (start / end) | {loads[0]} / {loads[1]} |",
        "",
        "## Ratios",
        "",
        table(sections),
        "",
        "## What each benchmark measures",
        "",
    ]
    for section in sections:
        out.append(
            f"{section.number}. **{section.title}**: {section.what}. Target: {section.target}. "
            f"Met: **{verdict(section.met)}**. ({section.seconds:.0f} s)"
        )
    out += _missed(sections)
    out.append("## Details")
    for section in sections:
        out += ["", f"### {section.number}. {section.title}", "", *section.details]
    return "\n".join(out).rstrip() + "\n"


def _missed(sections: Sequence[Section]) -> list[str]:
    """The "Targets missed, and why" part."""
    out = ["", "## Targets missed, and why", ""]
    missed = [s for s in sections if s.met is False]
    if not missed:
        out.append("Every target is met.")
    for section in missed:
        if section.why:
            out += [f"- {text}" for text in section.why]
        else:
            out.append(
                f"- **{section.number} {section.title.lower()}**: no breakdown was measured for "
                "this benchmark; see its details."
            )
    out += [
        "",
        "(Every sentence above is computed from this run's figures: the medians in the table "
        "and the breakdowns and profiles under Details.)",
        "",
    ]
    return out


def failed_section(number: int, name: str, exc: Exception) -> Section:
    first = str(exc).splitlines()[0][:160]
    section = Section(number, f"{name} (FAILED)", "the benchmark could not run", "-")
    section.rows.append(Row(f"{number} {name}", "FAILED", f"`{first}`", "-", False))
    section.details += ["```", str(exc).strip()[-3000:], "```", ""]
    return section
