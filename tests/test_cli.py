"""The CLI as a user meets it, without the engine: help, usage errors, plan, messages."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import pytest

from imagectl import start
from imagectl.cli import with_warnings
from imagectl.commands import plan as plan_command
from imagectl.core.notices import collecting, warn

from .conftest import imagectl
from .helpers import make_line, write


def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    make_line(
        root,
        "line",
        repository="localhost:5000/t/line",
        base="localhost:5000/b:1",
        increments={"0001-a": "# First step\nRUN true\n", "0002-b": "RUN true\n"},
    )
    return root


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = imagectl(tmp_path, "--help")
    assert result.code == 0
    for command in ("build", "plan", "history"):
        assert command in result.stdout


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    assert imagectl(tmp_path).code == 2
    assert imagectl(tmp_path, "frobnicate").code == 2
    assert imagectl(tmp_path, "build", "next", "--wait", "soon").code == 2


def test_plan_shows_every_pending_version(tmp_path: Path) -> None:
    result = imagectl(repo(tmp_path), "plan")
    assert result.code == 0
    assert "line: v0 built, 2 pending" in result.stdout
    assert "v1  increments/line/0001-a.Dockerfile.j2  FROM localhost:5000/b:1  # First step" in (
        result.stdout
    )
    assert "v2  increments/line/0002-b.Dockerfile.j2  FROM localhost:5000/t/line:v1" in (
        result.stdout
    )


def test_errors_are_one_paragraph_without_traceback(tmp_path: Path) -> None:
    root = repo(tmp_path)
    write(root / "images" / "line.toml", "repository = [\n")
    result = imagectl(root, "plan")
    assert result.code == 1
    assert result.stderr.startswith("imagectl: config error: images/line.toml: is not valid TOML")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_line(tmp_path: Path) -> None:
    result = imagectl(repo(tmp_path), "history", "nope")
    assert result.code == 1
    assert "no image line named nope" in result.stderr


def test_history_of_a_line_never_built(tmp_path: Path) -> None:
    result = imagectl(repo(tmp_path), "history", "line")
    assert result.code == 0
    assert "no versions built yet" in result.stdout
    assert imagectl(repo(tmp_path / "j"), "history", "line", "--json").stdout.strip() == "[]"


def test_not_a_repository(tmp_path: Path) -> None:
    result = imagectl(tmp_path, "plan")
    assert result.code == 1
    assert "no image repository found" in result.stderr


def test_committed_reference_dockerfiles_of_the_examples_are_current() -> None:
    result = imagectl(Path(__file__).resolve().parent.parent, "squash", "--check")
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.count(": lock/") == 4


def test_warnings_reach_every_json_result_and_plan_lines_get_their_own() -> None:
    said: list[str] = []
    with collecting() as outer, collecting() as inner:
        warn(said.append, "a", "base moved")
        warn(said.append, "b", "layers")
    warn(said.append, "a", "after")  # nobody collects this one
    assert said == ["a: warning: base moved", "b: warning: layers", "a: warning: after"]
    assert [str(w) for w in outer] == [str(w) for w in inner] == ["a: base moved", "b: layers"]
    assert with_warnings({"x": 1, "warnings": ["own"]}, inner)["warnings"] == [
        "own",
        "a: base moved",
        "b: layers",
    ]
    assert with_warnings({"error": "e"}, ())["warnings"] == []
    plans = with_warnings([{"line": "a"}, {"line": "b"}, {"line": "c"}], inner)
    assert [p["warnings"] for p in plans] == [["a: base moved"], ["b: layers"], []]


def test_verify_takes_one_line_or_all(tmp_path: Path) -> None:
    root = repo(tmp_path)
    for args in ((), ("--all", "line")):
        done = imagectl(root, "verify", *args)
        assert done.code == 1
        assert "verify takes one LINE or --all" in done.stderr


def test_the_console_entry_runs_the_command_with_the_collector_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`imagectl.start` keeps the cyclic collector off only while the command loads: the
    command itself runs with it on, and the start-up's objects are frozen out of its scans."""
    seen: dict[str, bool] = {}
    real_plan = plan_command.plan

    def plan(*args: Any, **kwargs: Any) -> Any:
        seen["enabled"] = gc.isenabled()
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(plan_command, "plan", plan)
    monkeypatch.setattr(sys, "argv", ["imagectl", "-C", str(repo(tmp_path)), "plan"])
    try:
        assert start.main() == 0
        assert seen == {"enabled": True}
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()
    assert "line: v0 built, 2 pending" in capsys.readouterr().out
