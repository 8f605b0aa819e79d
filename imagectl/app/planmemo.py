"""A memo of each line's plan, keyed by the file status of everything the plan read.

A plan reads a line's lock, every increment on disk, the shared snippets and whatever the
renders included: for 50 lines of 200 versions, 10,000 files and 10,000 locked versions, most
of a second. Most `plan` runs follow one where none of those files changed. As git does for its
index, a line's memo is keyed by each file's status (inode, size, mode, modification and change
times) instead of its bytes, which costs one `lstat` per file; any edit, copy, checkout or
`touch` changes the key. A file changed within RACY_SECONDS of being read could change again
inside the same clock tick without a new time, so such a plan is never memoised; nor is one that
read a symbolic link (its target's status is not the link's). The memo lives in .imagectl/
(not committed); a damaged or stale one is never used, and losing it only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagectl import __version__
from imagectl.core.config import RepositoryLayout
from imagectl.core.model import BuildStep, ImageLine, Increment, IncrementTest, LinePlan, TestKind

MEMO_FORMAT = 2  # 2: withdrawn versions
RACY_SECONDS = 2.0  # a file this new is not trusted to show its next change in its times


@dataclass(frozen=True, slots=True)
class Signature:
    key: str  # one hash over the status of every file read
    newest_ns: int  # the latest modification or change time among them


def signature(
    layout: RepositoryLayout, line: ImageLine, *, all_versions: bool, includes: Iterable[str]
) -> Signature | None:
    """The status of every file a plan of `line` reads; None when one is a symbolic link."""
    digest = hashlib.sha256(f"imagectl {__version__} plan memo {MEMO_FORMAT}\0".encode())
    digest.update(f"{line!r}\0{all_versions}\0".encode())
    newest = 0
    named = [("lock", os.fspath(layout.lock_path(line.name)))]
    named += [(f"include {name}", os.fspath(layout.increments_dir / name))
              for name in sorted(set(includes))]  # fmt: skip
    statuses = [(label, _lstat(path)) for label, path in named]
    statuses += _tree("line", os.fspath(layout.line_increments_dir(line.name)))
    statuses += _tree("shared", os.fspath(layout.shared_dir))
    for label, info in statuses:
        if info is None:
            digest.update(f"{label}\0missing\0".encode())
            continue
        if stat.S_ISLNK(info.st_mode):
            return None
        digest.update(
            f"{label}\0{info.st_mode}\0{info.st_ino}\0{info.st_dev}\0{info.st_size}\0"
            f"{info.st_mtime_ns}\0{info.st_ctime_ns}\0".encode()
        )
        newest = max(newest, info.st_mtime_ns, info.st_ctime_ns)
    return Signature(key=digest.hexdigest(), newest_ns=newest)


Status = tuple[str, os.stat_result | None]  # a label and its file's lstat (None: missing)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _tree(label: str, folder: str) -> list[Status]:
    """`folder` and everything under it, sorted: a new, renamed or deleted file changes the
    folder's own times and the list. Strings, not Paths: this runs for every file on a plan."""
    found: list[Status] = [(f"{label} .", _lstat(folder))]
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                found += _tree(f"{label} {entry.name}/", entry.path)
            else:
                found.append((f"{label} {entry.name}", entry.stat(follow_symlinks=False)))
    return found


def _memo_path(layout: RepositoryLayout, line: ImageLine) -> Path:
    return layout.state_dir / "plans" / f"{line.name}.json"


def recall(layout: RepositoryLayout, line: ImageLine, *, all_versions: bool) -> LinePlan | None:
    """The memoised plan of `line`, if every file it read is as it was then."""
    path = _memo_path(layout, line)
    with contextlib.suppress(OSError, ValueError, RecursionError, KeyError, TypeError):
        if not path.is_file():  # never open a FIFO or a folder left in its place
            return None
        memo = json.loads(path.read_text(encoding="utf-8"))
        body = json.dumps(memo["plan"], sort_keys=True)
        if memo["check"] != _check(memo["key"], memo["includes"], body):
            return None
        now = signature(layout, line, all_versions=all_versions, includes=memo["includes"])
        if now is None or now.key != memo["key"]:
            return None
        return plan_from_data(memo["plan"])
    return None


def remember(
    layout: RepositoryLayout,
    line: ImageLine,
    plan: LinePlan,
    *,
    all_versions: bool,
    started_ns: int,
    includes: Iterable[str],
) -> None:
    """Keep `plan`, computed from files read after `started_ns`, unless one of them changed
    since RACY_SECONDS before that: a file changed while it was being read, or too recently
    for its times to show the next change, is never trusted."""
    names = sorted(set(includes))
    keyed = signature(layout, line, all_versions=all_versions, includes=names)
    if keyed is None or keyed.newest_ns > started_ns - int(RACY_SECONDS * 1e9):
        return
    data = plan_to_data(plan)
    body = json.dumps(data, sort_keys=True)
    memo = {"key": keyed.key, "includes": names, "plan": data,
            "check": _check(keyed.key, names, body)}  # fmt: skip
    path = _memo_path(layout, line)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(memo))
        os.replace(tmp, path)


def _check(key: str, includes: list[str], body: str) -> str:
    return hashlib.sha256(json.dumps([key, includes, body]).encode()).hexdigest()


def plan_to_data(plan: LinePlan) -> dict[str, Any]:
    return {
        "line": plan.line,
        "built": plan.built,
        "available": plan.available,
        "pending": plan.pending,
        "steps": [_step_to_data(step) for step in plan.steps],
        "deleted_tests": list(plan.deleted_tests),
        "repository": plan.repository,
        "unpublished": list(plan.unpublished),
        "withdrawn": [list(entry) for entry in plan.withdrawn],
    }


def plan_from_data(data: dict[str, Any]) -> LinePlan:
    return LinePlan(
        line=str(data["line"]),
        built=int(data["built"]),
        available=int(data["available"]),
        pending=int(data["pending"]),
        steps=tuple(_step_from_data(step) for step in data["steps"]),
        deleted_tests=tuple(str(name) for name in data["deleted_tests"]),
        repository=str(data["repository"]),
        unpublished=tuple(int(v) for v in data["unpublished"]),
        withdrawn=tuple((int(v), str(reason)) for v, reason in data["withdrawn"]),
    )


def _step_to_data(step: BuildStep) -> dict[str, Any]:
    increment = step.increment
    return {
        "line": step.line,
        "version": step.version,
        "tag": step.tag,
        "parent": step.parent,
        "parent_is_base": step.parent_is_base,
        "increment": {
            "number": increment.number,
            "name": increment.name,
            "path": increment.path.as_posix(),
            "template": increment.template.as_posix(),
            "is_folder": increment.is_folder,
            "source_hash": increment.source_hash,
            "context_hash": increment.context_hash,
            "summary": increment.summary,
            "tests": [[t.path.as_posix(), t.kind, t.template] for t in increment.tests],
        },
    }


def _kind(value: object) -> TestKind:
    if value == "test":
        return "test"
    if value == "start-test":
        return "start-test"
    raise ValueError(value)


def _step_from_data(data: dict[str, Any]) -> BuildStep:
    inc = data["increment"]
    increment = Increment(
        number=int(inc["number"]),
        name=str(inc["name"]),
        path=Path(inc["path"]),
        template=Path(inc["template"]),
        is_folder=bool(inc["is_folder"]),
        source_hash=str(inc["source_hash"]),
        context_hash=str(inc["context_hash"]),
        summary=str(inc["summary"]),
        tests=tuple(
            IncrementTest(path=Path(path), kind=_kind(kind), template=bool(template))
            for path, kind, template in inc["tests"]
        ),
    )
    return BuildStep(
        line=str(data["line"]),
        version=int(data["version"]),
        tag=str(data["tag"]),
        increment=increment,
        parent=str(data["parent"]),
        parent_is_base=bool(data["parent_is_base"]),
    )
