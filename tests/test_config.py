"""Line files and increment folders are validated up front, with the file named."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.app.project import read_settings
from imagectl.core.config import RepositoryLayout, find_repository, load_lines, select_lines
from imagectl.core.errors import ConfigError, DriftError
from imagectl.core.increments import discover_increments, hash_increment, summarize
from imagectl.core.linestate import load_state
from imagectl.core.lockfile import write_lock
from imagectl.core.model import Lock
from imagectl.core.rendering import render_step

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


def test_tests_are_found_beside_file_increments_and_inside_folders(tmp_path: Path) -> None:
    layout = make_line(
        tmp_path,
        "x",
        repository="localhost:5000/x",
        base="b",
        increments={"0001-a": "RUN true\n", "0002-b": "RUN true\n"},
    )
    line_dir = tmp_path / "increments" / "x"
    write(line_dir / "0001-a.test.sh", "true\n")
    write(line_dir / "0001-a.start-test.sh.j2", "test {{ line }} = x\n")
    write(line_dir / "0003-c" / "Dockerfile.j2", "COPY f /f\n")
    write(line_dir / "0003-c" / "f", "data")
    write(line_dir / "0003-c" / "test.sh.j2", "test -f /f\n")
    first, second, third = discover_increments(layout, "x")
    assert [(t.name, t.kind, t.template) for t in first.tests] == [
        ("increments/x/0001-a.test.sh", "test", False),
        ("increments/x/0001-a.start-test.sh.j2", "start-test", True),
    ]
    assert second.tests == ()
    assert [(t.name, t.kind, t.script_name) for t in third.tests] == [
        ("increments/x/0003-c/test.sh.j2", "test", "test.sh")
    ]


def test_tests_are_not_part_of_an_increments_hashes(tmp_path: Path) -> None:
    layout = make_line(
        tmp_path, "x", repository="localhost:5000/x", base="b", increments={"0001-a": "RUN true\n"}
    )
    folder = tmp_path / "increments" / "x" / "0002-f"
    write(folder / "Dockerfile.j2", "COPY . /f/\n")
    write(folder / "f", "data")
    before = discover_increments(layout, "x")
    write(tmp_path / "increments" / "x" / "0001-a.test.sh", "true\n")
    write(folder / "test.sh", "test -f /f/f\n")
    write(folder / "start-test.sh", "true\n")
    after = discover_increments(layout, "x")
    assert [(i.source_hash, i.context_hash) for i in after] == [
        (i.source_hash, i.context_hash) for i in before
    ]
    assert [len(i.tests) for i in after] == [1, 2]
    # a file named like a test deeper in the folder is a context file like any other
    write(folder / "sub" / "test.sh", "x")
    assert discover_increments(layout, "x")[1].source_hash != before[1].source_hash


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0002-nope.test.sh": "true\n"}, "is a test of no file increment"),
        ({"0003-f.test.sh": "true\n"}, "keeps its tests inside, as test.sh"),
        ({"0001-a.test.sh": "true\n", "0001-a.test.sh.j2": "true\n"}, "two tests of one"),
    ],
)
def test_tests_of_no_increment_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    layout = make_line(
        tmp_path, "x", repository="localhost:5000/x", base="b", increments={"0001-a": "RUN true\n"}
    )
    write(tmp_path / "increments" / "x" / "0003-f" / "Dockerfile.j2", "RUN true\n")
    for name, text in files.items():
        write(tmp_path / "increments" / "x" / name, text)
    with pytest.raises(ConfigError, match=message):
        discover_increments(layout, "x")


def test_a_lines_test_timeout(tmp_path: Path) -> None:
    (line,) = load_lines(layout_with(tmp_path, GOOD))
    assert line.test_timeout == 120.0
    (line,) = load_lines(layout_with(tmp_path, GOOD + "[tests]\ntimeout = 2.5\n"))
    assert line.test_timeout == 2.5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[tests]\ntimeout = 0\n", "is not a number of seconds"),
        ("[tests]\ntimeout = -3\n", "is not a number of seconds"),
        ("[tests]\ntimeout = true\n", "is not a number of seconds"),
        ('[tests]\ntimeout = "2m"\n', "is not a number of seconds"),
        ("[tests]\ntimeout = inf\n", "is not a number of seconds"),
        ("[tests]\nretries = 3\n", "unknown key retries"),
        ('tests = "all"\n', r"\[tests\] must be a table"),
    ],
)
def test_bad_test_settings_name_the_file(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_lines(layout_with(tmp_path, GOOD + table))
    assert "images/x.toml" in str(info.value)


def test_repository_settings(tmp_path: Path) -> None:
    write(
        tmp_path / "imagectl.toml",
        '[build]\nbuilder = "farm"\n[tests]\njobs = 2\n[labels]\nsource = "https://x/y"\n',
    )
    settings = read_settings(tmp_path / "imagectl.toml")
    assert (settings.builder, settings.test_jobs, settings.label_source) == (
        "farm",
        2,
        "https://x/y",
    )
    assert read_settings(tmp_path / "absent.toml").test_jobs == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tests]\njobs = 0\n", r"\[tests\] jobs must be a whole number of at least 1"),
        ("[tests]\njobs = true\n", "must be a whole number"),
        ('[labels]\nsource = ""\n', r"\[labels\] source must be a non-empty string"),
        ("[labels]\nrevision = 'x'\n", "unknown key 'revision'"),
        ("[oci]\nsource = 'x'\n", r"unknown table \[oci\]"),
    ],
)
def test_bad_repository_settings(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "imagectl.toml", text)
    with pytest.raises(ConfigError, match=message):
        read_settings(tmp_path / "imagectl.toml")
