"""The test gate against in-memory fakes: which tests run on which version, in what order, what
the lock records, and that a failing test leaves nothing tagged or recorded (milliseconds)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from imagectl.app import workflows
from imagectl.app.plans import plan_lines
from imagectl.app.project import Project, open_project
from imagectl.app.results.build import BuildResult
from imagectl.commands.build import outcomes_text
from imagectl.core import lockfile
from imagectl.core.errors import ConfigError, TestFailedError
from imagectl.core.model import LockedVersion
from imagectl.core.ports import RemoteImage, TestRun
from imagectl.core.recipe import hash_text

from .fakes import FakeBuilder, FakeGit, FakeImages, FakeRegistry
from .helpers import make_line, write

BASE = "localhost:5000/b:1"
BASE_DIGEST = "sha256:" + "b" * 64
REPO = "localhost:5000/t/line"
STEPS = {
    "0001-one": "# One\nRUN echo one\n",
    "0002-two": "# Two\nRUN echo two\n",
    "0003-three": "# Three\nRUN echo three\n",
}


def setup(
    tmp_path: Path, images: FakeImages | None = None, *, lines: tuple[str, ...] = ("line",)
) -> tuple[Project, FakeImages]:
    root = tmp_path / "repo"
    for name in lines:
        repository = REPO if name == "line" else f"{REPO}-{name}"
        make_line(
            root, name, repository=repository, base=BASE, increments=STEPS, variables='motd = "hi"'
        )
    images = images or FakeImages()
    images.add(layers=("sha256:base-layer",), tag=BASE, digest=BASE_DIGEST)
    registry = FakeRegistry(images=images)
    registry.tags[BASE] = RemoteImage(digest=BASE_DIGEST, config_digest=images.tags[BASE])
    project = open_project(
        root, builder=FakeBuilder(images), images=images, registry=registry, git=FakeGit()
    )
    return project, images


def line_dir(project: Project, line: str = "line") -> Path:
    return project.root / "increments" / line


def build(project: Project, *lines: str, jobs: int = 1) -> BuildResult:
    return workflows.build_next(
        project, list(lines), all_versions=True, wait=0, say=print, output=print, jobs=jobs
    )


def versions(project: Project) -> tuple[LockedVersion, ...]:
    path = project.layout.lock_path("line")
    return lockfile.read_lock(path, line="line", repository=REPO, base=BASE).versions


def test_tests_accumulate_in_version_order_and_the_lock_records_them(tmp_path: Path) -> None:
    project, images = setup(tmp_path)
    write(line_dir(project) / "0001-one.test.sh", "test -f /one\n")
    write(line_dir(project) / "0002-two.start-test.sh.j2", "echo {{ motd }} v{{ version }}\n")
    write(line_dir(project) / "0003-three.test.sh", "test -f /three\n")
    assert build(project).failures == ()
    ran = [(call.image, call.script, call.start) for call in images.test_calls]
    v1, v2, v3 = (images.tags[f"{REPO}:v{n}"] for n in (1, 2, 3))
    assert ran == [
        (v1, "0001-one.test.sh", False),
        (v2, "0001-one.test.sh", False),
        (v2, "0002-two.start-test.sh", True),
        (v3, "0001-one.test.sh", False),
        (v3, "0002-two.start-test.sh", True),
        (v3, "0003-three.test.sh", False),
    ]
    # a template is rendered with the vars of the version built from its increment
    assert {c.text for c in images.test_calls if c.start} == {"echo hi v2\n"}
    assert {c.timeout for c in images.test_calls} == {120.0}
    recorded = [[(t.name, t.hash, t.result) for t in v.tests] for v in versions(project)]
    one = ("increments/line/0001-one.test.sh", hash_text("test -f /one\n"), "passed")
    two = ("increments/line/0002-two.start-test.sh.j2", hash_text("echo hi v2\n"), "passed")
    three = ("increments/line/0003-three.test.sh", hash_text("test -f /three\n"), "passed")
    assert recorded == [[one], [one, two], [one, two, three]]


def test_a_later_increment_breaking_an_earlier_test_is_neither_tagged_nor_recorded(
    tmp_path: Path,
) -> None:
    project, images = setup(tmp_path)
    write(line_dir(project) / "0001-one.test.sh", "test -f /one\n")
    images.test_codes["0001-one.test.sh"] = 0
    assert build(project, "line").failures == ()
    before = project.layout.lock_path("line").read_bytes()
    write(line_dir(project) / "0004-four.Dockerfile.j2", "# Four breaks one\nRUN rm /one\n")
    images.test_codes["0001-one.test.sh"] = 1
    ((line, error),) = build(project).failures
    assert line == "line"
    assert isinstance(error, TestFailedError)
    assert "v4 failed 1 of 1 test: increments/line/0001-one.test.sh (exit code 1)" in (
        error.message
    )
    assert "ran 0001-one.test.sh" in error.details  # its output
    assert error.to_json()["tests"] == [
        {
            "name": "increments/line/0001-one.test.sh",
            "kind": "test",
            "increment": "increments/line/0001-one.Dockerfile.j2",
            "version": 1,
            "hash": hash_text("test -f /one\n"),
            "result": "failed",
            "exit_code": 1,
            "duration": 0.01,
            "output": "ran 0001-one.test.sh\n",
        }
    ]
    assert f"{REPO}:v4" not in images.tags
    assert project.layout.lock_path("line").read_bytes() == before


def test_a_test_that_times_out_fails_the_version(tmp_path: Path) -> None:
    project, images = setup(tmp_path)
    write(project.root / "images" / "line.toml", f'repository = "{REPO}"\nbase = "{BASE}"\n'
          "[tests]\ntimeout = 7\n")  # fmt: skip
    project = project.reopened()
    write(line_dir(project) / "0002-two.test.sh", "sleep 600\n")
    images.test_codes["0002-two.test.sh"] = None
    ((_, error),) = build(project).failures
    assert isinstance(error, TestFailedError)
    assert "0002-two.test.sh (timed out after 7 s)" in error.message
    assert {c.timeout for c in images.test_calls} == {7.0}
    assert [v.version for v in versions(project)] == [1]


def test_one_failing_line_does_not_stop_the_others(tmp_path: Path) -> None:
    project, images = setup(tmp_path, lines=("line", "other"))
    write(line_dir(project, "other") / "0002-two.test.sh", "false\n")
    images.test_codes["0002-two.test.sh"] = 1
    result = build(project, "line", "other", jobs=2)
    assert [name for name, _ in result.failures] == ["other"]
    assert [b.tag for b in result.built if b.line == "line"] == [f"{REPO}:v{n}" for n in (1, 2, 3)]
    other = lockfile.read_lock(
        project.layout.lock_path("other"), line="other", repository=f"{REPO}-other", base=BASE
    )
    assert [v.version for v in other.versions] == [1]  # built before its v2 failed
    assert result.to_json()["lines"][1]["error"]["kind"] == "test failed"  # type: ignore[index]


def test_an_edited_test_is_no_drift_and_runs_as_it_is_now(tmp_path: Path) -> None:
    project, _ = setup(tmp_path)
    test = line_dir(project) / "0001-one.test.sh"
    write(test, "test -f /one\n")
    (line_dir(project) / "0003-three.Dockerfile.j2").unlink()
    assert build(project).failures == ()
    write(test, "test -s /one\n")  # improved after v1 and v2 were built
    write(line_dir(project) / "0003-three.Dockerfile.j2", "RUN echo three\n")
    assert build(project).failures == ()
    first, second, third = (v.tests[0].hash for v in versions(project))
    assert first == second == hash_text("test -f /one\n")
    assert third == hash_text("test -s /one\n")


def test_a_deleted_test_is_reported_by_plan(tmp_path: Path) -> None:
    project, _ = setup(tmp_path)
    write(line_dir(project) / "0001-one.test.sh", "true\n")
    assert build(project).failures == ()
    (line_dir(project) / "0001-one.test.sh").unlink()
    (plan,) = plan_lines(project, [], all_versions=True)
    assert plan.deleted_tests == ("increments/line/0001-one.test.sh",)
    assert plan.to_json()["deleted_tests"] == ["increments/line/0001-one.test.sh"]


class SlowImages(FakeImages):
    """Tests that take a moment, counting how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self.guard = threading.Lock()

    def run_test(self, image: str, script: Path, *, start: bool, timeout: float) -> TestRun:
        with self.guard:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self.guard:
            self.running -= 1
        return super().run_test(image, script, start=start, timeout=timeout)


def test_the_tests_of_one_version_run_side_by_side_bounded(tmp_path: Path) -> None:
    images = SlowImages()
    project, _ = setup(tmp_path, images)
    folder = line_dir(project) / "0004-four"
    write(folder / "Dockerfile.j2", "RUN true\n")
    for name in ("test.sh", "start-test.sh"):
        write(folder / name, "true\n")
    for stem in ("0001-one", "0002-two", "0003-three"):
        write(line_dir(project) / f"{stem}.test.sh", "true\n")
    write(project.root / "imagectl.toml", "[tests]\njobs = 1\n")
    serial = open_project(project.root, builder=project.adapters.builder, images=images,
                          registry=project.adapters.registry, git=FakeGit())  # fmt: skip
    assert build(serial, "line").failures == ()
    assert images.most == 1
    (project.root / "imagectl.toml").unlink()
    project.layout.lock_path("line").unlink()
    images.most = 0
    assert build(project, "line").failures == ()
    assert images.most == 2  # v4's own two tests together; other versions have one each


def test_imagectl_test_runs_the_tests_up_to_a_built_version_and_changes_no_file(
    tmp_path: Path,
) -> None:
    project, images = setup(tmp_path)
    write(line_dir(project) / "0001-one.test.sh", "true\n")
    write(line_dir(project) / "0003-three.start-test.sh", "true\n")
    assert build(project).failures == ()
    lock = project.layout.lock_path("line").read_bytes()
    images.test_calls.clear()
    report = workflows.test_version(project, "line", None)
    assert (report.version, report.passed) == (3, True)
    assert [(c.image, c.script) for c in images.test_calls] == [
        (images.tags[f"{REPO}:v3"], "0001-one.test.sh"),
        (images.tags[f"{REPO}:v3"], "0003-three.start-test.sh"),
    ]
    images.test_codes["0001-one.test.sh"] = 2
    older = workflows.test_version(project, "line", 2)
    assert (older.version, older.passed) == (2, False)
    data = older.to_json()
    assert (data["tag"], data["passed"]) == (f"{REPO}:v2", False)
    assert [(t["name"], t["result"], t["exit_code"]) for t in data["tests"]] == [  # type: ignore[attr-defined]
        ("increments/line/0001-one.test.sh", "failed", 2)
    ]
    text = outcomes_text(older)
    assert "line v2 (localhost:5000/t/line:v2, " in text
    assert "1 test, 1 FAILED" in text
    assert "  FAILED     v1  increments/line/0001-one.test.sh  (exit code 2, " in text
    assert "      | ran 0001-one.test.sh" in text
    assert project.layout.lock_path("line").read_bytes() == lock
    with pytest.raises(ConfigError, match="line has no built v4"):
        workflows.test_version(project, "line", 4)
