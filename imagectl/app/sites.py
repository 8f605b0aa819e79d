"""`imagectl site`: the history site, from the locks, the package records and the increments
alone (no engine, no network), written whole into a temp folder beside the output and renamed.

Incremental: each page has a key, a hash of everything it shows; a page whose key is the one
the previous site recorded (`.imagectl-site.json`) is hard-linked from it, not rendered again.
When only new versions were added, only their pages, their line's pages and the index change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.results.lookup import SiteMade
from imagectl.core import sidecar
from imagectl.core.errors import ImagectlError, PlanError
from imagectl.core.labels import recorded_labels
from imagectl.core.model import ImageLine, Increment, Lock, LockedVersion
from imagectl.core.packages import KINDS, PackageDiff, PackageRecord, diff_manifests, parse_entry
from imagectl.core.rendercache import line_inputs
from imagectl.core.resolver import newest_on
from imagectl.core.site import (
    STYLE,
    LineView,
    PackageRun,
    VersionView,
    compare_page,
    digest_page,
    index_page,
    line_page,
    packages_page,
    version_page,
)
from imagectl.core.withdrawals import parents

STATE = ".imagectl-site.json"
STATE_FORMAT = 1
Render = Callable[[], str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    key: str  # a hash of everything the page shows
    render: Render


def build_site(project: Project, out: Path) -> SiteMade:
    _check_out(out)
    pages: dict[str, Page] = {}
    views, keys = [], []
    for line in project.lines:
        view, key, line_pages = _line_pages(project, line)
        views.append(view)
        keys.append(key)
        pages |= line_pages
    pages["index.html"] = _page("\0".join(keys), lambda: index_page(views))
    pages["style.css"] = _page(STYLE, lambda: STYLE + "\n")
    return _write(out, pages)


def _line_pages(project: Project, line: ImageLine) -> tuple[LineView, str, dict[str, Page]]:
    """The line's view, a key that changes whenever anything of the line does, and its pages."""
    lock_path = project.layout.lock_path(line.name)
    record_path = sidecar.packages_path(lock_path)
    lock = line_lock(project, line)
    record = sidecar.read_packages(record_path)
    inputs = line_inputs(line)
    line_key = "\0".join((inputs, _file_hash(lock_path), _file_hash(record_path)))
    increments = _increments_of(project, line, lock)
    history = _History.of(lock, record)
    built = lock.built_versions
    resolves_to = newest_on(lock, built[0], query="").newest.version if built else 0
    built_on = parents(lock)
    views = tuple(
        VersionView(
            line=line.name,
            version=v,
            counts=history.counts.get(v.version, {}),
            changes=history.changes.get(v.version),
            increment_text="",
            labels=recorded_labels(line.name, v) if not v.skipped else {},
            parent_version=built_on.get(v.version) or 0,
        )
        for v in lock.versions
    )
    view = LineView(
        name=line.name, repository=line.repository, base=line.base,
        base_digest=lock.base_digest, versions=views, resolves_to=resolves_to,
    )  # fmt: skip
    folder = f"lines/{line.name}"
    pages = {
        f"{folder}/index.html": _page(line_key, lambda: line_page(view)),
        f"{folder}/packages.html": _page(line_key, lambda: packages_page(line.name, history.runs)),
    }
    numbers = [v.version for v in built]
    newest = numbers[-1] if numbers else 0
    compared = _Compared(record, numbers) if numbers and history.recorded == newest else None
    for index, item in enumerate(v for v in views if not v.version.skipped):
        number = item.version.version
        previous = numbers[index - 1] if index else 0
        following = numbers[index + 1] if index + 1 < len(numbers) else 0
        increment = increments.get(number)
        around = (number == newest, previous, following)
        pages[f"{folder}/v{number}.html"] = _page(
            repr((item, around, inputs, increment)),
            _version_render(project, line, item, increment, around),
        )
        if compared is not None and number != newest:
            pages[f"{folder}/compare-v{number}.html"] = _page(
                f"{line_key}\0{number}", partial(compared.page, line.name, number)
            )
        target = f"../lines/{line.name}/v{number}.html"
        for digest in {item.version.digest, item.version.image_id} - {""}:
            label = f"{line.name} v{number}"
            pages[f"digests/{digest.replace(':', '-')}.html"] = _page(
                target, partial(digest_page, target, label)
            )
    return view, line_key, pages


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


def _version_render(
    project: Project,
    line: ImageLine,
    item: VersionView,
    increment: Increment | None,
    around: tuple[bool, int, int],
) -> Render:
    def render() -> str:
        text, note = _increment_text(project, line, item.version, increment)
        shown = VersionView(
            line=item.line, version=item.version, counts=item.counts, changes=item.changes,
            increment_text=text, increment_note=note, labels=item.labels,
            parent_version=item.parent_version,
        )  # fmt: skip
        is_newest, previous, following = around
        return version_page(shown, is_newest=is_newest, previous=previous, following=following)

    return render


def _increment_text(
    project: Project, line: ImageLine, version: LockedVersion, increment: Increment | None
) -> tuple[str, str]:
    """The increment as rendered for this version, or why it cannot be shown."""
    if version.checkpoint or not version.increment:
        return "(a one-layer copy of the version before it, made by imagectl checkpoint)", ""
    if increment is None:
        return "", f"{version.increment} is not in the repository any more."
    from imagectl.core.rendering import template_variables  # noqa: PLC0415 (jinja2 only
    from imagectl.core.templates import render_tracked  # noqa: PLC0415 when rendering)

    variables = template_variables(line, version=version.version, parent=version.parent)
    root = _resolved(project.layout.root)
    try:
        text, _ = render_tracked(
            _resolved(project.layout.increments_dir), root / increment.template, variables
        )
    except ImagectlError as exc:
        return "", f"the increment cannot be rendered as it is now: {exc}"
    note = ""
    if increment.source_hash != version.increment_hash:
        note = "the increment changed since this version was built: shown as it renders now"
    return text, note


@lru_cache(maxsize=4)
def _resolved(path: Path) -> Path:
    return path.resolve()


def _increments_of(project: Project, line: ImageLine, lock: Lock) -> dict[int, Increment]:
    """Each built version's increment, by version: the k-th increment is the k-th version
    built from one."""
    from imagectl.core.increments import discover_increments  # noqa: PLC0415

    found = discover_increments(project.layout, line.name)
    return {
        version.version: increment
        for version, increment in zip(lock.increment_versions, found, strict=False)
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class _History:
    """What the package record says per version, from one pass over its deltas: the cost is
    the record's size, not versions x packages."""

    counts: dict[int, dict[str, int]]
    changes: dict[int, PackageDiff]
    runs: dict[str, list[PackageRun]]  # per package: its entries and the versions with them
    recorded: int  # the newest version with a record (all before it have one)

    @classmethod
    def of(cls, lock: Lock, record: PackageRecord) -> _History:
        built = [v.version for v in lock.built_versions]
        newest = built[-1] if built else 0
        by_kind = dict.fromkeys(KINDS, 0)
        opened: dict[str, int] = {}  # entry -> the first version that has it
        closed: list[tuple[str, int, int]] = []  # entry, first, last version with it

        def add(entry: str, number: int) -> None:
            if entry not in opened:
                opened[entry] = number
                by_kind[parse_entry(entry).kind] += 1

        def remove(entry: str, number: int) -> None:
            first = opened.pop(entry, None)
            if first is not None:
                closed.append((entry, first, number - 1))
                by_kind[parse_entry(entry).kind] -= 1

        for entry in record.base:
            add(entry, 1)
        counts: dict[int, dict[str, int]] = {}
        changes: dict[int, PackageDiff] = {}
        recorded = 0
        for number in range(1, newest + 1):
            delta = record.versions.get(number)
            if delta is None:
                break
            for entry in delta.baseline:
                add(entry, number)
            for entry in delta.removed:
                remove(entry, number)
            for entry in delta.added:
                add(entry, number)
            recorded = number
            changes[number] = delta.diff()
            counts[number] = {kind: n for kind, n in by_kind.items() if n}
        closed += [(entry, first, recorded) for entry, first in opened.items()]
        runs: dict[str, list[PackageRun]] = {}
        skipped = sorted(v.version for v in lock.versions if v.skipped)
        for entry, first, last in sorted(closed, key=lambda run: run[1]):
            if first <= last:
                runs.setdefault(parse_entry(entry).label, []).append(
                    PackageRun(entry=entry, versions=_runs_text(first, last, skipped))
                )
        return cls(counts=counts, changes=changes, runs=runs, recorded=recorded)


def _runs_text(first: int, last: int, skipped: list[int]) -> str:
    """The built versions from `first` to `last` as runs ("v1-v19, v21-v40"): the range split
    at the skipped versions in it, which have no image."""
    runs, start = [], first
    for gap in skipped[bisect_left(skipped, first) : bisect_right(skipped, last)]:
        if start < gap:
            runs.append((start, gap - 1))
        start = gap + 1
    if start <= last:
        runs.append((start, last))
    return ", ".join(f"v{a}" if a == b else f"v{a}-v{b}" for a, b in runs)


class _Compared:
    """Each built version's packages compared with the newest's, made when its page is: one
    walk back from the newest version undoes a delta a step (the record's size), keeping what
    differs at each version; the pairing into changes is left to each page."""

    def __init__(self, record: PackageRecord, built: list[int]) -> None:
        self._newest = built[-1]
        self._record = record
        self._built = set(built)
        self._differs: dict[int, tuple[frozenset[str], frozenset[str]]] | None = None

    def page(self, line: str, number: int) -> str:
        if self._differs is None:
            self._differs = self._walk()
        gone, new = self._differs[number]
        return compare_page(line, number, self._newest, diff_manifests(gone, new))

    def _walk(self) -> dict[int, tuple[frozenset[str], frozenset[str]]]:
        gone: set[str] = set()  # on the version, not on the newest
        new: set[str] = set()  # on the newest, not on the version
        found: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
        for number in range(self._newest, 0, -1):
            if number in self._built:
                found[number] = (frozenset(gone), frozenset(new))
            delta = self._record.versions[number]
            for entry in delta.added:  # not on the version before
                if entry in gone:
                    gone.discard(entry)
                else:
                    new.add(entry)
            for entry in delta.removed:  # on the version before
                if entry in new:
                    new.discard(entry)
                else:
                    gone.add(entry)
        return found


def _page(key: str, render: Render) -> Page:
    return Page(key=hashlib.sha256(key.encode()).hexdigest(), render=render)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PlanError(
            f"--out {out} is a file.", hint="Give a folder: a new one, or a site made before."
        )
    if not out.parent.is_dir():
        raise PlanError(
            f"the folder {out.parent} that would hold {out.name} does not exist.",
            hint="Create it first, or give another --out.",
        )
    if out.is_dir() and any(out.iterdir()) and not (out / STATE).is_file():
        raise PlanError(
            f"--out {out} holds files that are not a site imagectl made; imagectl replaces "
            "its output folder whole and will not delete them.",
            hint="Give a new or empty folder, or the folder of a site made before.",
        )


def _write(out: Path, pages: dict[str, Page]) -> SiteMade:
    """Every page into a temp folder beside `out` (an unchanged one linked from the old site),
    then the temp folder renamed to `out`: a reader sees the old site or the new one."""
    before = _previous_keys(out)
    temporary = out.with_name(f".{out.name}.new-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        wanted: list[tuple[Path, Page]] = []
        for folder in {str(Path(path).parent) for path in pages}:
            (temporary / folder).mkdir(parents=True, exist_ok=True)
        for path, item in pages.items():
            target = temporary / path
            if not (before.get(path) == item.key and _link(out / path, target)):
                wanted.append((target, item))
        _render_all(wanted)
        state = {"format": STATE_FORMAT, "pages": {p: i.key for p, i in pages.items()}}
        (temporary / STATE).write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
        _swap(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return SiteMade(out=out, pages=len(pages), rendered=len(wanted))


PER_WORKER = 2000  # pages below which a second process costs more than it saves


def _render_all(wanted: list[tuple[Path, Page]]) -> None:
    """Render and write the pages, in one forked worker per core when there are many (a first
    site of a big repository renders tens of thousands). A worker's failure fails the whole."""
    workers = min(os.cpu_count() or 1, len(wanted) // PER_WORKER) if hasattr(os, "fork") else 1
    if workers <= 1:
        for target, item in wanted:
            target.write_text(item.render(), encoding="utf-8")
        return
    children: dict[int, int] = {}  # pid -> its share
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker: its share, then out without the parent's cleanup
                code = 0
                try:
                    _render_share(wanted, index, workers)
                except BaseException:
                    code = 1
                os._exit(code)
            children[pid] = index
        failed = []
        while children:
            pid, status = os.wait()
            if os.waitstatus_to_exitcode(status) != 0:
                failed.append(children[pid])
            del children[pid]
    finally:
        for pid in children:  # interrupted: no worker writes on after the parent has gone
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    for index in failed:  # again here: a real error is then the parent's own, as it was
        _render_share(wanted, index, workers)


def _render_share(wanted: list[tuple[Path, Page]], index: int, workers: int) -> None:
    for target, item in wanted[index::workers]:
        target.write_text(item.render(), encoding="utf-8")


def _previous_keys(out: Path) -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        state = json.loads((out / STATE).read_text(encoding="utf-8"))
        if state.get("format") == STATE_FORMAT:
            return {str(k): str(v) for k, v in state["pages"].items()}
    return {}


def _link(old: Path, new: Path) -> bool:
    try:
        os.link(old, new)
    except OSError:
        return False
    return True


def _swap(temporary: Path, out: Path) -> None:
    if not out.exists():
        temporary.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    temporary.rename(out)
    shutil.rmtree(old, ignore_errors=True)
