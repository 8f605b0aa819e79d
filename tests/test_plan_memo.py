"""The plan memo: a line whose files are all as at an earlier plan is answered without reading
them; any change to a file the plan read (or could read) makes it read and check them again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.synthetic import make_synthetic
from imagectl.app import planmemo
from imagectl.app.plans import plan_lines
from imagectl.app.project import open_project
from imagectl.core import linestate
from imagectl.core.errors import DriftError, ImagectlError
from imagectl.core.model import LinePlan
from tests.fakes import FakeBuilder, FakeGit, FakeImages, FakeRegistry
from tests.helpers import write

PREFIX = "localhost:5000/memo"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two lines of three built versions, a shared snippet and a snippet in line001's folder.
    Files are trusted at once (no racy window) unless a test says otherwise."""
    root = tmp_path / "repo"
    write(root / "increments" / "_shared" / "greet.j2", "RUN echo hello\n")
    write(root / "increments" / "line001" / "extra.j2", "RUN echo extra\n")
    make_synthetic(root, PREFIX, lines=2, versions=3)
    monkeypatch.setattr(planmemo, "RACY_SECONDS", 0.0)
    return root


def plans(root: Path) -> tuple[LinePlan, ...]:
    images = FakeImages()
    project = open_project(
        root, builder=FakeBuilder(images=images), images=images,
        registry=FakeRegistry(images=images), git=FakeGit(),
    )  # fmt: skip
    return plan_lines(project, [], all_versions=True)


class Reads:
    """Counts the lines whose state a plan loaded from their files."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lines: list[str] = []
        real = linestate.load_state

        def counted(layout: object, line: object) -> linestate.LineState:
            self.lines.append(line.name)  # type: ignore[attr-defined]
            return real(layout, line)  # type: ignore[arg-type]

        monkeypatch.setattr(linestate, "load_state", counted)


def test_an_unchanged_repository_is_planned_from_the_memo(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = plans(repo)
    reads = Reads(monkeypatch)
    assert plans(repo) == first
    assert reads.lines == []  # without the memo, both lines are read again
    assert sorted(p.name for p in (repo / ".imagectl" / "plans").iterdir()) == [
        "line000.json",
        "line001.json",
    ]


def same_size_edit(rel: str) -> Callable[[Path], None]:
    """Replace one character: the size stays, only the file's times (and bytes) change."""

    def edit(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        path.write_text(text.replace("echo", "echO", 1))

    return edit


def rewrite_lock_unchanged(root: Path) -> None:
    path = root / "lock" / "line000.lock.toml"
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)


def add_pending(root: Path) -> None:
    write(root / "increments" / "line000" / "0004-new.Dockerfile.j2", "# new\nRUN true\n")


def change_var(root: Path) -> None:
    path = root / "images" / "line000.toml"
    path.write_text(path.read_text().replace('flavour = "0"', 'flavour = "zero"'))


def include_in_pending(root: Path) -> None:
    write(
        root / "increments" / "line000" / "0004-new.Dockerfile.j2",
        '# new\n{% include "line001/extra.j2" %}\n',
    )


# (the change, what the next plan of line000 must show: drift, or a new pending step)
CHANGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "built-increment-same-size": (same_size_edit("increments/line000/0002-step.Dockerfile.j2"),
                                  "drift"),
    "lock-rewritten-same-bytes": (rewrite_lock_unchanged, "same"),
    "new-pending-increment": (add_pending, "pending"),
    "line-var-changed": (change_var, "same"),  # no template uses it: read again, no drift
}  # fmt: skip


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_to_a_file_the_plan_read_reads_the_line_again(
    repo: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    plans(repo)
    edit, expected = CHANGES[change]
    edit(repo)
    reads = Reads(monkeypatch)
    if expected == "drift":
        with pytest.raises(DriftError):
            plans(repo)
        assert reads.lines == ["line000"]
        return
    line000, _ = plans(repo)
    assert reads.lines == ["line000"]  # line001's files did not change: its memo holds
    assert len(line000.steps) == (1 if expected == "pending" else 0)


def test_a_snippet_a_pending_increment_includes_is_watched(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snippet lives in another line's folder: only the memo's list of what the render
    loaded names it."""
    include_in_pending(repo)
    plans(repo)
    snippet = repo / "increments" / "line001" / "extra.j2"
    memo = json.loads((repo / ".imagectl" / "plans" / "line000.json").read_text())
    assert "line001/extra.j2" in memo["includes"]
    snippet.write_text("RUN echo {{ no_such_var.attr }}\n")  # now fails to render
    reads = Reads(monkeypatch)
    with pytest.raises(ImagectlError):
        plans(repo)
    assert "line000" in reads.lines


def test_a_file_changed_within_the_racy_window_is_not_memoised(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planmemo, "RACY_SECONDS", 3600.0)  # every file is "just written"
    plans(repo)
    assert not (repo / ".imagectl" / "plans").exists()


def test_a_symbolic_link_among_the_inputs_is_never_memoised(repo: Path) -> None:
    target = repo / "increments" / "line000" / "0003-step.Dockerfile.j2"
    moved = repo / "increments" / "_shared" / "step3.j2"
    target.rename(moved)
    os.symlink(moved, target)
    plans(repo)
    memos = repo / ".imagectl" / "plans"
    assert (memos / "line001.json").is_file()
    assert not (memos / "line000.json").exists()


@pytest.mark.parametrize("damage", ["garbage", "other-plan"])
def test_a_damaged_memo_is_never_used(
    repo: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    (first, _) = plans(repo)
    path = repo / ".imagectl" / "plans" / "line000.json"
    if damage == "garbage":
        path.write_bytes(b"\x00\xff{not json")
    else:  # a plan that is not the one its check was made for
        memo = json.loads(path.read_text())
        memo["plan"]["built"] = 99
        path.write_text(json.dumps(memo))
    reads = Reads(monkeypatch)
    (again, _) = plans(repo)
    assert again == first
    assert reads.lines == ["line000"]
