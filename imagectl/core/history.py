"""Rows for `imagectl history`: one per built version, for people and for machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from imagectl.core.model import Lock, LockedVersion
from imagectl.core.withdrawals import parents

if TYPE_CHECKING:
    from imagectl.core.packages import PackageDiff

JSON_KEYS = (
    "version",
    "tag",
    "image_id",
    "digest",
    "increment",
    "summary",
    "parent",
    "parent_digest",
    "built_at",
    "commit",
    "layers",
    "size",
    "builder",
    "engine",
    "skipped",
    "reason",
    "foreign_digest",
    "withdrawn",
    "withdrawn_reason",
    "withdrawn_by",
    "withdrawn_at",
    "increment_hash",
    "dockerfile_hash",
    "instructions_hash",
    "context_hash",
)


def history_records(lock: Lock, packages: Mapping[int, PackageDiff]) -> list[dict[str, object]]:
    """The lock's versions as plain dicts, oldest first (the `--json` output). `packages` are
    counts ({"added": 1, "removed": 0, "changed": 2, "by_kind": {"deb": {...}, "pip": {...}}})
    and `package_changes` the packages themselves, each with its kind (as `diff --json`); both
    null where no manifest was recorded."""
    records = []
    for version in lock.versions:
        diff = packages.get(version.version)
        records.append(
            {
                **{key: getattr(version, key) for key in JSON_KEYS},
                "images": list(version.images),
                "checkpoint": version.checkpoint,
                "tests": [
                    {"name": test.name, "hash": test.hash, "result": test.result}
                    for test in version.tests
                ],
                "packages": {**diff.counts(), "by_kind": diff.kind_counts()} if diff else None,
                "package_changes": diff.to_json() if diff else None,
            }
        )
    return records


def history_table(lock: Lock, packages: Mapping[int, PackageDiff]) -> str:
    """A fixed-width table, oldest first; PACKAGES is the package delta to the parent, with
    each kind's share (deb, pip, conda) when more than debs changed."""
    header = ("VERSION", "TAG", "IMAGE", "BUILT", "INCREMENT", "SUMMARY", "COMMIT", "LAYERS",
              "SIZE", "PACKAGES", "PUBLISHED")  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    rows += [
        _row(version, diff.summary if (diff := packages.get(version.version)) else "?")
        for version in lock.versions
    ]
    return "\n".join([format_table(rows), *history_notes(lock)])


def history_notes(lock: Lock) -> list[str]:
    """What the table's columns do not show: withdrawn versions and forks of the chain."""
    notes = [
        f"v{v.version} withdrawn by {v.withdrawn_by} at {v.withdrawn_at}: {v.withdrawn_reason}"
        for v in lock.versions
        if v.withdrawn
    ]
    built_on, previous = parents(lock), None
    for version in lock.built_versions:
        parent = built_on[version.version]
        if previous is not None and parent not in (previous, None):
            notes.append(
                f"v{version.version} is built on v{parent}, not on v{previous}: the chain forks "
                "there (built on the newest version not withdrawn)"
            )
        previous = version.version
    return notes


def _row(version: LockedVersion, packages: str) -> tuple[str, ...]:
    return (
        f"v{version.version}",
        version.tag,
        version.image_id.removeprefix("sha256:")[:12],
        version.built_at,
        "(skipped)" if version.skipped else version.increment.rsplit("/", 1)[-1] or "(checkpoint)",
        _clip(version.summary, 40),
        version.commit[:10] if len(version.commit) == 40 else (version.commit or "-"),
        str(version.layers),
        human_size(version.size),
        packages,
        version.digest.removeprefix("sha256:")[:12] if version.digest else "-",
    )


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{size}B"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def versions_text(versions: Sequence[int]) -> str:
    """Versions as runs: "v1-v200", "v3, v5-v7" (a line of 200 unpublished versions is one
    short line, not 200 entries)."""
    runs: list[list[int]] = []
    for version in versions:
        if runs and version == runs[-1][-1] + 1:
            runs[-1].append(version)
        else:
            runs.append([version])
    return ", ".join(f"v{r[0]}" if len(r) == 1 else f"v{r[0]}-v{r[-1]}" for r in runs)
