"""`build next` on the real engine and registry, through the CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import BUSYBOX, docker, image_id, imagectl
from .engine_helpers import busybox_repo, layers, read_lock, run_in
from .helpers import git_commit_all, git_init, make_line, write

pytestmark = pytest.mark.engine


def test_three_versions_each_on_its_parent_then_a_noop(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    for expected in (1, 2, 3):
        result = imagectl(root, "build", "next")
        assert result.code == 0, result.stderr
        assert f"built {repo_name}:v{expected}" in result.stdout
    lock = read_lock(root, repo_name)
    assert [v.version for v in lock.versions] == [1, 2, 3]
    assert run_in(f"{repo_name}:v3", "cat", "/applied").split() == ["one", "two", "three"]
    # each version's layers start with exactly its parent's
    for older, newer in ((1, 2), (2, 3)):
        assert layers(f"{repo_name}:v{newer}")[: len(layers(f"{repo_name}:v{older}"))] == layers(
            f"{repo_name}:v{older}"
        )
    for version in lock.versions:
        assert image_id(version.tag) == version.image_id
        assert version.layers == len(layers(version.tag))
        assert len(version.commit) == 40
    assert lock.base_digest.startswith("sha256:")
    assert lock.versions[0].parent == f"{BUSYBOX}@{lock.base_digest}"
    assert lock.versions[1].parent == f"{repo_name}:v1"

    before = (root / "lock" / "line.lock.toml").read_bytes()
    again = imagectl(root, "build", "next")
    assert again.code == 0, again.stderr
    assert "up to date" in again.stdout
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert run_in(f"{repo_name}:v3", "cat", "/applied").split() == ["one", "two", "three"]


def test_build_all_and_history(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    result = imagectl(root, "build", "next", "--all")
    assert result.code == 0, result.stderr
    assert "RUN echo three" in result.stderr  # build output is streamed
    history = imagectl(root, "history", "line", "--json")
    rows = json.loads(history.stdout)
    assert [row["version"] for row in rows] == [1, 2, 3]
    for key in (
        "version",
        "tag",
        "image_id",
        "digest",
        "increment",
        "parent",
        "built_at",
        "commit",
        "layers",
        "size",
    ):
        assert key in rows[0]
    assert rows[2]["summary"] == "Write three"
    table = imagectl(root, "history", "line").stdout
    assert "Write two" in table
    assert image_id(f"{repo_name}:v2").removeprefix("sha256:")[:12] in table


def test_edited_built_increment_is_refused(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all").code == 0
    before = (root / "lock" / "line.lock.toml").read_bytes()
    write(root / "increments" / "line" / "0002-two.Dockerfile.j2", "RUN echo TWO >> /applied\n")
    write(root / "increments" / "line" / "0004-four.Dockerfile.j2", "RUN echo four >> /applied\n")
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "0002-two.Dockerfile.j2" in result.stderr
    assert "instead of editing 0002-two" in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert docker("image", "ls", "-q", f"{repo_name}:v4") == ""


def test_edited_shared_snippet_is_drift(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {"0001-shared": '{% include "_shared/step.j2" %}\n', "0002-next": "RUN true\n"},
    )
    write(root / "increments" / "_shared" / "step.j2", "RUN echo shared > /shared\n")
    assert imagectl(root, "build", "next").code == 0
    write(root / "increments" / "_shared" / "step.j2", "RUN echo changed > /shared\n")
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "renders differently than when v1 was built" in result.stderr


def test_existing_foreign_local_tag_is_refused_and_untouched(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next").code == 0
    docker("tag", BUSYBOX, f"{repo_name}:v2")  # someone else's image on our next tag
    foreign = image_id(f"{repo_name}:v2")
    before = (root / "lock" / "line.lock.toml").read_bytes()
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert f"{repo_name}:v2 already exists in the engine as {foreign}" in result.stderr
    assert "just built is sha256:" in result.stderr
    assert image_id(f"{repo_name}:v2") == foreign
    assert (root / "lock" / "line.lock.toml").read_bytes() == before


def test_existing_foreign_registry_tag_is_refused(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    docker("tag", BUSYBOX, f"{repo_name}:v1")
    docker("push", "-q", f"{repo_name}:v1")
    docker("rmi", f"{repo_name}:v1")
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert f"registry already holds {repo_name}:v1 as sha256:" in result.stderr
    assert "building v1" not in result.stderr  # refused before building
    assert not (root / "lock" / "line.lock.toml").exists()
    assert docker("image", "ls", "-q", f"{repo_name}:v1") == ""


def test_failing_run_records_nothing(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {"0001-ok": "RUN echo ok > /ok\n", "0002-fails": "RUN echo about to fail && exit 7\n"},
    )
    assert imagectl(root, "build", "next").code == 0
    before = (root / "lock" / "line.lock.toml").read_bytes()
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "build failed" in result.stderr
    assert "about to fail" in result.stderr.split("---- last output ----")[-1]
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert docker("image", "ls", "-q", f"{repo_name}:v2") == ""


def test_template_error_builds_nothing(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name, {"0001-bad": "RUN echo {{ nope }}\n"})
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "line 1 of increments/line/0001-bad.Dockerfile.j2" in result.stderr
    assert "undefined variable" in result.stderr
    assert not (root / "lock" / "line.lock.toml").exists()


def test_increment_with_its_own_from_is_refused(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name, {"0001-from": f"FROM {BUSYBOX}\nRUN true\n"})
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "the last stage starts `FROM" in result.stderr
    assert "FROM {{ parent }}" in result.stderr


def test_folder_increment_sends_its_context(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name, {})
    folder = root / "increments" / "line" / "0001-files"
    write(folder / "Dockerfile.j2", "# Ship a file\nCOPY hello.txt /srv/hello.txt\n")
    write(folder / "hello.txt", "hello from the context\n")
    git_commit_all(root, "add folder increment")
    assert imagectl(root, "build", "next").code == 0
    assert run_in(f"{repo_name}:v1", "cat", "/srv/hello.txt") == "hello from the context"


@pytest.mark.parametrize("builder", ["buildx", "legacy"])
def test_both_builders(tmp_path: Path, repo_name: str, builder: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    env = {"IMAGECTL_BUILDER": builder}
    assert imagectl(root, "build", "next", "--all", env=env).code == 0
    lock = read_lock(root, repo_name)
    assert {v.builder for v in lock.versions} == {builder}
    assert run_in(f"{repo_name}:v3", "cat", "/applied").split() == ["one", "two", "three"]


def test_lock_naming_a_lost_image_is_refused(tmp_path: Path, repo_name: str) -> None:
    # Content of its own: an image id no other run shares, so `docker rmi` really removes it.
    steps = {"0001-own": f"RUN echo {repo_name} > /own\n", "0002-next": "RUN echo next >> /own\n"}
    root = busybox_repo(tmp_path, repo_name, steps)
    assert imagectl(root, "build", "next").code == 0
    docker("rmi", f"{repo_name}:v1")
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "neither in the engine nor (published) in the registry" in result.stderr
    assert "lock/line.lock.toml" in result.stderr


def test_missing_base_is_a_clear_error(tmp_path: Path, repo_name: str) -> None:
    root = tmp_path / "repo"
    make_line(
        root,
        "line",
        repository=repo_name,
        base="localhost:5000/no/such:base",
        increments={"0001-x": "RUN true\n"},
    )
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "base image localhost:5000/no/such:base is neither in the engine" in result.stderr
    assert "images/line.toml" in result.stderr


def test_engine_down_is_a_clear_error(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    result = imagectl(
        root, "build", "next", env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    )
    assert result.code == 1
    assert f"Docker engine (unix://{tmp_path}/no-docker.sock) does not answer" in result.stderr
    # another engine than this machine's default: the hint names it, not scripts/engine
    assert "scripts/engine" not in result.stderr
    assert not (root / "lock" / "line.lock.toml").exists()


def test_registry_down_is_a_clear_error(tmp_path: Path, repo_name: str) -> None:
    root = tmp_path / "repo"
    make_line(
        root,
        "line",
        repository=repo_name.replace(":5000", ":5999"),
        base=BUSYBOX,
        increments={"0001-x": "RUN true\n"},
    )
    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "the registry localhost:5999 refused the connection" in result.stderr
    assert not (root / "lock" / "line.lock.toml").exists()


def test_concurrent_builds_never_corrupt_the_lock(tmp_path: Path, repo_name: str) -> None:
    steps = {f"{n:04d}-s{n}": f"RUN sleep 1 && echo {n} >> /applied\n" for n in range(1, 4)}
    root = busybox_repo(tmp_path, repo_name, steps)
    command = [
        sys.executable,
        "-m",
        "imagectl",
        "-C",
        str(root),
        "build",
        "next",
        "--all",
        "--quiet",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as first:
        time.sleep(0.3)
        second = subprocess.run(command, capture_output=True, text=True, check=False)
        _, first_err = first.communicate(timeout=300)
    codes = sorted([first.returncode, second.returncode])
    assert codes[0] == 0, first_err + second.stderr
    if codes[1] != 0:
        assert "another imagectl build or publish is running" in (first_err + second.stderr)
    lock = read_lock(root, repo_name)
    assert [v.version for v in lock.versions] == [1, 2, 3]
    assert run_in(f"{repo_name}:v3", "cat", "/applied").split() == ["1", "2", "3"]
    # with --wait the second one waits its turn and then finds nothing to do
    waited = imagectl(root, "build", "next", "--all", "--wait", "60")
    assert waited.code == 0
    assert "up to date" in waited.stdout


def test_interrupted_build_records_nothing_and_rerun_completes(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name, {"0001-slow": "RUN sleep 4 && echo slow > /s\n"})
    command = [sys.executable, "-m", "imagectl", "-C", str(root), "build", "next"]
    with subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if "RUN sleep 4" in line:
                break
        process.kill()  # SIGKILL mid-build: no chance to clean up
        process.wait()
    assert not (root / "lock" / "line.lock.toml").exists()
    assert docker("image", "ls", "-q", f"{repo_name}:v1") == ""
    again = imagectl(root, "build", "next")
    assert again.code == 0, again.stderr
    assert [v.version for v in read_lock(root, repo_name).versions] == [1]


def test_crash_between_tag_and_lock_write_is_adopted_on_rerun(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next").code == 0
    tagged = image_id(f"{repo_name}:v1")
    (root / "lock" / "line.lock.toml").unlink()  # as if killed after tagging, before recording
    result = imagectl(root, "build", "next")
    assert result.code == 0, result.stderr
    assert f"adopted {repo_name}:v1" in result.stderr
    assert image_id(f"{repo_name}:v1") == tagged
    assert read_lock(root, repo_name).versions[0].image_id == tagged


def test_moved_base_tag_is_reported_not_followed(tmp_path: Path, repo_name: str) -> None:
    base = f"{repo_name}-base:latest"
    docker("tag", BUSYBOX, base)
    docker("push", "-q", base)
    root = tmp_path / "repo"
    make_line(
        root, "line", repository=repo_name, base=base, increments={"0001-a": "RUN echo a > /a\n"}
    )
    assert imagectl(root, "build", "next").code == 0
    pinned = read_lock(root, repo_name).base_digest
    # someone moves the base tag to another image
    write(tmp_path / "other" / "Dockerfile", f"FROM {BUSYBOX}\nRUN echo other > /other\n")
    docker("build", "-q", "-t", base, str(tmp_path / "other"))
    docker("push", "-q", base)
    write(root / "increments" / "line" / "0002-b.Dockerfile.j2", "RUN echo b > /b\n")
    result = imagectl(root, "build", "next")
    assert result.code == 0, result.stderr
    assert f"the base tag {base} now names sha256:" in result.stderr
    assert f"pinned to {pinned}" in result.stderr
    assert read_lock(root, repo_name).base_digest == pinned
    assert docker("run", "--rm", f"{repo_name}:v2", "ls", "/").count("other") == 0
    docker("rmi", base, check=False)


def test_dry_run_builds_nothing(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    result = imagectl(root, "build", "next", "--dry-run", "--all")
    assert result.code == 0
    assert f"v3  increments/line/0003-three.Dockerfile.j2  FROM {repo_name}:v2" in result.stdout
    assert not (root / "lock" / "line.lock.toml").exists()
    assert docker("image", "ls", "-q", repo_name) == ""


@pytest.mark.debian
def test_example_lines_build_end_to_end_and_the_oom_fix_is_live(
    example_repo: Path, repo_name: str
) -> None:
    git_init(example_repo)
    result = imagectl(example_repo, "build", "next", "--all", "--quiet")
    assert result.code == 0, result.stderr
    pods = json.loads(imagectl(example_repo, "history", "pod-bookworm", "--json").stdout)
    assert [row["increment"].rsplit("/", 1)[-1] for row in pods] == [
        "0001-base-tools.Dockerfile.j2",
        "0002-pod-init",
        "0003-oom-score-adj",
    ]
    head = pods[-1]["tag"]
    # through the pod start-up script (the image's entrypoint), as a pod starts
    score = docker("run", "--rm", head, "cat", "/proc/self/oom_score_adj")
    assert score == "900"
    before_fix = docker("run", "--rm", pods[1]["tag"], "cat", "/proc/self/oom_score_adj")
    assert before_fix == "0"
    assert docker("run", "--rm", "--entrypoint", "ps", head, "--version").startswith("ps from")
    toolbox = json.loads(imagectl(example_repo, "history", "toolbox-busybox", "--json").stdout)
    motd = docker("run", "--rm", toolbox[-1]["tag"], "cat", "/etc/motd")
    assert motd == "toolbox pod (toolbox-busybox v1)"
    # The main line, on Ubuntu: started as the platform starts a pod (entrypoint, then CMD).
    noble = json.loads(imagectl(example_repo, "history", "pod-noble", "--json").stdout)
    assert len(noble) == 8
    assert noble[6]["images"], "the helper stage's image is pinned in the lock"
    # its tests ran on every version before the tag, accumulating: the pod user exists, the
    # start-up script is PID 1 with oom_score_adj 900, sshd's config is valid
    assert [[t["name"].split("/", 2)[2] for t in row["tests"]] for row in noble][-1] == [
        "0002-pod-user.test.sh.j2",
        "0003-pod-init/start-test.sh",
        "0004-sshd.test.sh",
    ]
    assert [len(row["tests"]) for row in noble] == [0, 1, 2, 3, 3, 3, 3, 3]
    assert {t["result"] for row in noble for t in row["tests"]} == {"passed"}
    assert [t["name"].rsplit("/", 2)[-2:] for t in pods[-1]["tests"]] == [
        ["0002-pod-init", "start-test.sh"],
        ["0003-oom-score-adj", "start-test.sh.j2"],
    ]
    pod = docker("run", "--rm", "-d", noble[-1]["tag"])
    try:
        assert docker("exec", pod, "cat", "/proc/1/oom_score_adj") == "900"
        assert docker("exec", pod, "sh", "-c", "command -v sshd") == "/usr/sbin/sshd"
        assert docker("exec", pod, "id", "-un", "1000") == "jovyan"
        assert "Ubuntu 24.04" in docker("exec", pod, "cat", "/etc/os-release")
    finally:
        docker("rm", "-f", pod)
