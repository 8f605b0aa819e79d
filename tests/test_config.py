"""Line files and increment folders are validated up front, with the file named."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.config import RepositoryLayout, find_repository, load_lines, select_lines
from imagectl.errors import ConfigError, DriftError
from imagectl.increments import discover_increments, hash_increment, summarize
from imagectl.linestate import load_state, render_step
from imagectl.lockfile import write_lock
from imagectl.model import Lock

from .helpers import locked_version, make_line, write

GOOD = 'repository = "localhost:5000/pods/x"\nbase = "localhost:5000/busybox:latest"\n'


def layout_with(tmp_path: Path, text: str, name: str = "x") -> RepositoryLayout:
    write(tmp_path / "images" / f"{name}.toml", text)
    return RepositoryLayout(root=tmp_path)


def test_good_line_loads(tmp_path: Path) -> None:
    (line,) = load_lines(layout_with(tmp_path, GOOD + '[vars]\ncodename = "bookworm"\n'))
    assert (line.name, line.repository, line.vars) == (
        "x",
        "localhost:5000/pods/x",
        {"codename": "bookworm"},
    )
    assert line.tag_for(3) == "localhost:5000/pods/x:v3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("repository = \n", "not valid TOML"),
        (GOOD + "colour = 'red'\n", "unknown key colour"),
        ('base = "b:1"\n', "'repository' is missing"),
        ('repository = "localhost:5000/x"\n', "'base' is missing"),
        ('repository = "Localhost:5000/UPPER"\nbase = "b"\n', "not a valid image repository"),
        ('repository = "localhost:5000/x:v1"\nbase = "b"\n', "not a valid image repository"),
        ('repository = "localhost:5000/x"\nbase = "b c"\n', "not a valid image reference"),
        (GOOD + "vars = 3\n", r"\[vars\] must be a table"),
        (GOOD + "[vars]\nversion = 2\n", "defines version"),
        ('repository = 3\nbase = "b"\n', "must be a non-empty string"),
    ],
)
def test_bad_line_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_lines(layout_with(tmp_path, text))
    assert "images/x.toml" in str(info.value)


def test_bad_line_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line name 'Bad Name' is not valid"):
        load_lines(layout_with(tmp_path, GOOD, name="Bad Name"))


def test_select_unknown_line(tmp_path: Path) -> None:
    lines = load_lines(layout_with(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=r"no image line named nope.*Known lines: x"):
        select_lines(lines, ["nope"])
    assert select_lines(lines, []) == lines


def test_find_repository_walks_up(tmp_path: Path) -> None:
    layout_with(tmp_path, GOOD)
    deep = tmp_path / "increments" / "x"
    deep.mkdir(parents=True)
    assert find_repository(deep).root == tmp_path.resolve()


def test_no_repository(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no image repository found"):
        find_repository(tmp_path)


def test_increments_are_discovered_in_order(tmp_path: Path) -> None:
    layout = make_line(
        tmp_path,
        "x",
        repository="localhost:5000/x",
        base="b",
        increments={"0002-b": "# second\nRUN true\n", "0001-a": "RUN true\n"},
    )
    write(tmp_path / "increments" / "x" / "0003-folder" / "Dockerfile.j2", "# third\nCOPY f /f\n")
    write(tmp_path / "increments" / "x" / "0003-folder" / "f", "data")
    write(tmp_path / "increments" / "x" / "README.md", "notes")
    found = discover_increments(layout, "x")
    assert [(i.number, i.name, i.is_folder, i.summary) for i in found] == [
        (1, "0001-a", False, ""),
        (2, "0002-b", False, "second"),
        (3, "0003-folder", True, "third"),
    ]


def test_folder_without_template(tmp_path: Path) -> None:
    layout = make_line(tmp_path, "x", repository="localhost:5000/x", base="b")
    write(tmp_path / "increments" / "x" / "0001-f" / "file", "x")
    with pytest.raises(ConfigError, match=r"no Dockerfile\.j2"):
        discover_increments(layout, "x")


def test_misnamed_increment(tmp_path: Path) -> None:
    layout = make_line(tmp_path, "x", repository="localhost:5000/x", base="b", increments={})
    write(tmp_path / "increments" / "x" / "0001-a.Dockerfile", "RUN true\n")
    with pytest.raises(ConfigError, match=r"neither a \*\.Dockerfile\.j2 file nor a folder"):
        discover_increments(layout, "x")


def test_context_file_changes_the_hash(tmp_path: Path) -> None:
    folder = tmp_path / "inc"
    write(folder / "Dockerfile.j2", "COPY f /f\n")
    write(folder / "f", "one")
    first = hash_increment(folder)
    write(folder / "f", "two")
    assert hash_increment(folder) != first
    (folder / "f").chmod(0o755)
    write(folder / "f", "one")
    assert hash_increment(folder) != first  # the executable bit is content too


def test_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "inc"
    write(folder / "Dockerfile.j2", "COPY secret /s\n")
    write(tmp_path / "secret", "x")
    (folder / "secret").symlink_to(tmp_path / "secret")
    with pytest.raises(ConfigError, match="points outside the increment folder"):
        hash_increment(folder)


def test_summary_skips_parser_directives() -> None:
    assert summarize("# syntax=docker/dockerfile:1\n# Install tools\nRUN x\n") == "Install tools"
    assert summarize("{# Jinja comment #}\nRUN x\n") == "Jinja comment"
    assert summarize("RUN x\n") == ""


def test_secrets_name_where_buildkit_reads_them(tmp_path: Path) -> None:
    text = GOOD + '[secrets]\ntoken = "env:NPM_TOKEN"\nkey = "file:/run/keys/k"\n'
    (line,) = load_lines(layout_with(tmp_path, text))
    assert line.secrets == {"token": "env:NPM_TOKEN", "key": "file:/run/keys/k"}


@pytest.mark.parametrize("value", ['"plain-value"', '"env:"', "3"])
def test_a_secret_value_in_the_line_file_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="is not a secret source"):
        load_lines(layout_with(tmp_path, GOOD + f"[secrets]\ntoken = {value}\n"))


def test_drift_check_cache_never_hides_an_edited_snippet(tmp_path: Path) -> None:
    layout = make_line(
        tmp_path,
        "x",
        repository="localhost:5000/x",
        base="b:1",
        increments={"0001-a": '{% include "_shared/s.j2" %}\n'},
    )
    write(tmp_path / "increments" / "_shared" / "s.j2", "RUN echo one\n")
    (line,) = load_lines(layout)
    (increment,) = discover_increments(layout, "x")
    rendered = render_step(layout, line, increment, version=1, parent="b:1")
    write_lock(
        layout.lock_path("x"),
        Lock(
            line="x",
            repository="localhost:5000/x",
            base="b:1",
            versions=(
                locked_version(
                    1,
                    increment=increment.path.as_posix(),
                    increment_hash=increment.source_hash,
                    dockerfile_hash=rendered.dockerfile_hash,
                    parent="b:1",
                ),
            ),
        ),
    )
    load_state(layout, line)  # renders and caches
    load_state(layout, line)  # answered from the cache
    assert (tmp_path / ".imagectl" / "render-hashes-v2.json").exists()
    write(tmp_path / "increments" / "_shared" / "s.j2", "RUN echo two\n")
    with pytest.raises(DriftError, match="renders differently"):
        load_state(layout, line)
