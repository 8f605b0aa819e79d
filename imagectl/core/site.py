"""The history site's pages as HTML text (pure): an index of lines, a page per line with a chart
of size and layers, a page per version, each line's packages with the versions that had them, a
comparison of each version with the newest, and a stable link per digest.

Plain HTML and one inline style sheet: no script and nothing fetched from anywhere, so every page
reads the same in a text browser, a screen reader or a browser with JavaScript off. Every value
from a lock, a line file or a package record is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape

from imagectl.core.model import LockedVersion
from imagectl.core.packages import PackageDiff, display

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem;color:#111}
a{color:#0645ad}table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border-bottom:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}code,pre{font-family:ui-monospace,monospace;font-size:.9em}
pre{background:#f6f6f6;padding:.75rem;overflow-x:auto}.note{color:#555}
.withdrawn{color:#a00}.added{color:#060}.removed{color:#a00}nav a{margin-right:1rem}
""".strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionView:
    """What a version's pages show, gathered from its lock entry and package record."""

    line: str
    version: LockedVersion
    counts: Mapping[str, int]  # packages by kind ({} when not recorded)
    changes: PackageDiff | None  # against its parent; None when not recorded
    increment_text: str  # the rendered increment, or why it cannot be shown
    increment_note: str = ""  # e.g. the increment changed since it was built
    labels: Mapping[str, str] = field(default_factory=dict)
    parent_version: int = 0  # 0: the base


@dataclass(frozen=True, slots=True, kw_only=True)
class LineView:
    name: str
    repository: str
    base: str
    base_digest: str
    versions: tuple[VersionView, ...]  # built and skipped, oldest first
    resolves_to: int  # where a pod restored from the oldest version starts today

    @property
    def newest(self) -> VersionView | None:
        built = [v for v in self.versions if not v.version.skipped]
        return built[-1] if built else None


def page(title: str, body: str, *, depth: int) -> str:
    up = "../" * depth
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="stylesheet" href="{up}style.css"><link rel="icon" href="data:,">'
        "</head>\n<body>\n"
        f'<nav><a href="{up}index.html">All lines</a></nav>\n'
        f"<main>\n{body}\n</main>\n</body></html>\n"
    )


def index_page(lines: Sequence[LineView]) -> str:
    rows = []
    for line in lines:
        newest = line.newest
        name = escape(line.name)
        if newest is None:
            rows.append(f'<tr><th scope="row">{name}</th><td colspan="4">not built yet</td></tr>')
            continue
        v = newest.version
        built = [x for x in line.versions if not x.version.skipped]
        rows.append(
            f'<tr><th scope="row"><a href="lines/{name}/index.html">{name}</a></th>'
            f'<td><a href="{version_href(line.name, v.version, depth=0)}">v{v.version}</a></td>'
            f"<td><code>{escape(v.digest or v.image_id)}</code></td><td>{escape(v.built_at)}</td>"
            f"<td>{len(built)} versions; a pod restored from v{built[0].version.version} starts "
            f"on v{line.resolves_to}</td></tr>"
        )
    table = _table(("Line", "Newest", "Digest (image id until published)", "Built", "Chain"), rows)
    return page("imagectl: image lines", f"<h1>Image lines</h1>\n{table}", depth=0)


def line_page(line: LineView) -> str:
    name = escape(line.name)
    rows = [_version_row(line.name, view) for view in line.versions]
    header = ("Version", "Built", "Increment", "Layers", "Size", "Packages", "Tests", "Digest")
    body = (
        f"<h1>{name}</h1>\n<p><code>{escape(line.repository)}</code>, built on "
        f"<code>{escape(line.base)}</code> (<code>{escape(line.base_digest or '?')}</code>). "
        f'<a href="packages.html">Every package and the versions that had it</a>.</p>\n'
        f"{size_chart(line.versions)}\n{_table(header, rows)}"
    )
    return page(f"{line.name}: versions", body, depth=2)


def _version_row(line: str, view: VersionView) -> str:
    v = view.version
    if v.skipped:
        return (
            f'<tr><th scope="row">v{v.version}</th><td>{escape(v.built_at)}</td>'
            f'<td colspan="6">skipped: {escape(v.reason)}</td></tr>'
        )
    marks = " (checkpoint)" * v.checkpoint
    marks += f' <span class="withdrawn">withdrawn: {escape(v.withdrawn_reason)}</span>' * (
        v.withdrawn
    )
    changes = view.changes.summary if view.changes is not None else "not recorded"
    passed = sum(test.result == "passed" for test in v.tests)
    return (
        f'<tr><th scope="row"><a href="v{v.version}.html">v{v.version}</a>{marks}</th>'
        f"<td>{escape(v.built_at)}</td><td>{escape(v.summary)}</td><td>{v.layers}</td>"
        f"<td>{_size(v.size)}</td><td>{escape(changes)}</td>"
        f"<td>{passed}/{len(v.tests)} passed</td>"
        f"<td><code>{escape(v.digest or '-')}</code></td></tr>"
    )


def version_page(view: VersionView, *, is_newest: bool, previous: int, following: int) -> str:
    """Nothing on it depends on which version is the newest, so adding one changes only the
    page of the version before it (its link to the next)."""
    v = view.version
    title = f"{view.line} v{v.version}"
    links = [f'<a href="index.html">{escape(view.line)}</a>']
    links += [f'<a href="v{previous}.html">v{previous}</a>'] if previous else []
    links += [f'<a href="v{following}.html">v{following}</a>'] if following else []
    if not is_newest:
        links.append(f'<a href="compare-v{v.version}.html">compared with the newest version</a>')
    facts = {
        "Tag": v.tag,
        "Registry digest": v.digest or "not published",
        "Image id": v.image_id,
        "Built": f"{v.built_at} by {v.builder} (engine {v.engine or '?'}), commit {v.commit}",
        "Built on": v.parent + (f" (v{view.parent_version})" if view.parent_version else ""),
        "Layers, size": f"{v.layers} layers, {_size(v.size)}",
    }
    if v.withdrawn:
        facts["Withdrawn"] = f"{v.withdrawn_reason} ({v.withdrawn_by}, {v.withdrawn_at})"
    body = [
        f"<h1>{escape(title)}</h1>",
        f"<p>{' · '.join(links)}</p>",
        _definitions(facts),
        f"<h2>Increment</h2>\n<p>{escape(v.increment or 'none (a checkpoint)')}: "
        f"{escape(v.summary)}</p>",
    ]
    if view.increment_note:
        body.append(f'<p class="note">{escape(view.increment_note)}</p>')
    body.append(f"<pre>{escape(view.increment_text)}</pre>")
    tests = [
        f"<tr><td><code>{escape(t.name)}</code></td><td>{escape(t.result)}</td></tr>"
        for t in v.tests
    ]
    body.append(
        "<h2>Tests</h2>\n" + (_table(("Test", "Result"), tests) if tests else "<p>none</p>")
    )
    body.append("<h2>Labels</h2>\n" + _definitions(view.labels))
    counts = ", ".join(f"{count} {kind}" for kind, count in view.counts.items()) or "not recorded"
    body.append(
        f"<h2>Packages</h2>\n<p>{escape(counts)} "
        f'(<a href="packages.html">every package of the line, by version</a>)</p>'
    )
    parent = f"v{view.parent_version}" if view.parent_version else "the base"
    body.append(f"<h3>Changed against {parent}</h3>\n" + _diff(view.changes))
    return page(title, "\n".join(body), depth=2)


def compare_page(line: str, old: int, new: int, diff: PackageDiff) -> str:
    title = f"{line}: v{old} compared with v{new}"
    body = (
        f"<h1>{escape(title)}</h1>\n<p>"
        f'<a href="v{old}.html">v{old}</a> · <a href="v{new}.html">v{new}</a></p>\n'
        f"<p>What a pod restored from a backup of v{old} finds changed on v{new}.</p>\n"
        + _diff(diff)
    )
    return page(title, body, depth=2)


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRun:
    entry: str
    versions: str  # the built versions that had this very entry, as runs: "v1-v19, v21"


def packages_page(line: str, runs: Mapping[str, Sequence[PackageRun]]) -> str:
    """`runs`: per package (as a person reads it), each of its entries with its versions."""
    rows = [
        f'<tr><th scope="row">{escape(label)}</th><td>{escape(display(run.entry))}</td>'
        f"<td>{escape(run.versions)}</td></tr>"
        for label, package_runs in sorted(runs.items())
        for run in package_runs
    ]
    body = f"<h1>{escape(line)}: packages</h1>\n" + _table(("Package", "As", "Versions"), rows)
    return page(f"{line}: packages", body, depth=2)


def digest_page(target: str, label: str) -> str:
    """A stable address by digest: it sends the reader on to the version's page."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(label)}'
        f'</title><meta http-equiv="refresh" content="0; url={escape(target)}"></head><body>'
        f'<p><a href="{escape(target)}">{escape(label)}</a></p></body></html>\n'
    )


def version_href(line: str, version: int, *, depth: int) -> str:
    return f"{'../' * depth}lines/{escape(line)}/v{version}.html"


def size_chart(versions: Sequence[VersionView]) -> str:
    """Size (MB) and layer count over the built versions as one inline SVG, with a text
    equivalent for those who do not see it."""
    built = [v.version for v in versions if not v.version.skipped]
    if len(built) < 2:
        return ""
    width, height, pad = 720, 160, 30
    biggest = max(v.size for v in built) or 1
    deepest = max(v.layers for v in built) or 1

    def points(values: Iterable[float], top: float) -> str:
        step = (width - 2 * pad) / (len(built) - 1)
        return " ".join(
            f"{pad + i * step:.1f},{height - pad - (value / top) * (height - 2 * pad):.1f}"
            for i, value in enumerate(values)
        )

    first, last = built[0], built[-1]
    summary = (
        f"From v{first.version} to v{last.version}: size {_size(first.size)} to "
        f"{_size(last.size)}, layers {first.layers} to {last.layers}."
    )
    return (
        f'<figure><svg role="img" aria-label="{escape(summary)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(summary)}</title>'
        f'<polyline fill="none" stroke="#0645ad" stroke-width="2" '
        f'points="{points((v.size for v in built), biggest)}"/>'
        f'<polyline fill="none" stroke="#a60" stroke-width="2" stroke-dasharray="4 3" '
        f'points="{points((v.layers for v in built), deepest)}"/>'
        f'<text x="{pad}" y="16" font-size="12">size (solid, up to {_size(biggest)}) and '
        f"layers (dashed, up to {deepest})</text></svg>"
        f"<figcaption>{escape(summary)}</figcaption></figure>"
    )


def _diff(diff: PackageDiff | None) -> str:
    if diff is None:
        return "<p>not recorded (built before imagectl recorded packages)</p>"
    if diff.empty:
        return "<p>no package changed</p>"
    rows = [_entry_row("added", entry) for entry in diff.added]
    rows += [_entry_row("removed", entry) for entry in diff.removed]
    rows += [_change_row(change.name, change.old, change.new) for change in diff.changed]
    return _table(("", "Package", "Version"), rows)


@lru_cache(maxsize=1 << 16)
def _change_row(name: str, old: str, new: str) -> str:
    return f"<tr><td>changed</td><td>{escape(name)}</td><td>{escape(old)} → {escape(new)}</td></tr>"


@lru_cache(maxsize=1 << 16)  # a comparison page of an old version lists hundreds of these
def _entry_row(what: str, entry: str) -> str:
    return f'<tr><td class="{what}">{what}</td><td>{escape(display(entry))}</td><td></td></tr>'


def _table(header: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _definitions(facts: Mapping[str, str]) -> str:
    if not facts:
        return "<p>none</p>"
    return (
        "<dl>"
        + "".join(
            f"<dt>{escape(k)}</dt><dd><code>{escape(v)}</code></dd>" for k, v in facts.items()
        )
        + "</dl>"
    )


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
