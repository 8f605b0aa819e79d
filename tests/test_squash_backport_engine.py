"""Squash, resolve and back-port on the real engine: the reference builds the same files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import BUSYBOX, docker, imagectl
from .engine_helpers import busybox_repo, file_tree, read_lock
from .helpers import git_commit_all, make_line, write

pytestmark = pytest.mark.engine

STEPS = {
    "0001-args": "# ARG per increment, ENV carries on\nARG GREETING=hi\n"
    'ENV MOTD="${GREETING} from {{ line }}"\nRUN echo "$MOTD" > /motd\n',
    "0002-continued": "# Continuations\nRUN mkdir -p /opt/a \\\n    && echo one > /opt/a/one \\\n"
    "    && echo two > /opt/a/two\n",
    "0004-after": '# Uses the ENV of 0001\nRUN echo "[$MOTD]" > /scope\n',
}


def test_reference_builds_the_same_files_as_the_incremental_head(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name, STEPS)
    folder = root / "increments" / "line" / "0003-files"
    write(
        folder / "Dockerfile.j2",
        "# Context files\nCOPY conf/app.conf /etc/app.conf\n"
        'COPY ["run me.sh", "/usr/local/bin/run-me"]\nADD . /opt/ctx/\n',
    )
    write(folder / "conf" / "app.conf", "key = value\n")
    write(folder / "run me.sh", "#!/bin/sh\necho run\n")
    (folder / "run me.sh").chmod(0o755)
    git_commit_all(root, "increments")
    result = imagectl(root, "build", "next", "--all", "-q")
    assert result.code == 0, result.stderr
    assert imagectl(root, "squash", "--check").code == 0  # build next kept it current
    reference = root / "lock" / "line.reference.Dockerfile"
    assert "(commit " in reference.read_text()
    scratch = f"{repo_name}-reference:check"
    docker("buildx", "build", "-q", "--load", "-t", scratch, "-f", str(reference), str(root))
    try:
        head = file_tree(f"{repo_name}:v4")
        rebuilt = file_tree(scratch)
        assert head == rebuilt
        assert docker("run", "--rm", scratch, "cat", "/motd") == "hi from line"
        config = "{{json .Config.Env}}"
        assert docker("image", "inspect", "--format", config, scratch) == docker(
            "image", "inspect", "--format", config, f"{repo_name}:v4"
        )
    finally:
        docker("rmi", scratch, check=False)


def test_resolve_on_the_real_lock(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    assert imagectl(root, "publish", "-q", "line").code == 0
    lock = read_lock(root, repo_name)
    newest = f"{repo_name}:v3@{lock.versions[2].digest}"
    for ref in (
        f"{repo_name}:v1",
        f"{repo_name}@{lock.versions[0].digest}",
        lock.versions[1].image_id,
        lock.versions[0].image_id[7:19],
    ):
        result = imagectl(root, "resolve", ref)
        assert (result.code, result.stdout.strip()) == (0, newest), (ref, result.stderr)
    data = json.loads(imagectl(root, "resolve", f"{repo_name}:v2", "--json").stdout)
    assert (data["version"], data["newest"], data["published"]) == (2, 3, True)


def test_backport_across_three_lines_with_one_failing(tmp_path: Path, repo_name: str) -> None:
    root = tmp_path / "repo"
    fix = (
        Path(__file__).resolve().parent.parent
        / "increments"
        / "_shared"
        / "oom-score-adj.Dockerfile.j2"
    )
    write(root / "increments" / "_shared" / "oom-score-adj.Dockerfile.j2", fix.read_text())
    for name in ("alpha", "beta", "gamma"):
        folder = root / "increments" / name / "0001-pod-init"
        make_line(root, name, repository=f"{repo_name}/{name}", base=BUSYBOX)
        if name != "gamma":  # gamma has no start-up script: the fix must fail there
            write(
                folder / "Dockerfile.j2",
                "COPY pod-start /usr/local/bin/pod-start\n"
                'ENTRYPOINT ["/usr/local/bin/pod-start"]\n',
            )
            write(folder / "pod-start", '#!/bin/sh\nexec "$@"\n')
            (folder / "pod-start").chmod(0o755)
        else:
            write(folder / "Dockerfile.j2", "RUN echo no pod-start here > /README\n")
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    dry = imagectl(root, "backport", "increments/_shared/oom-score-adj.Dockerfile.j2", "--dry-run")
    assert dry.stdout.count("would add") == 3
    assert not (root / "increments" / "alpha" / "0002-oom-score-adj.Dockerfile.j2").exists()
    added = imagectl(root, "backport", "increments/_shared/oom-score-adj.Dockerfile.j2")
    assert added.code == 0
    assert (root / "increments" / "alpha" / "0002-oom-score-adj.Dockerfile.j2").exists()
    result = imagectl(root, "build", "next", "--all", "--jobs", "2")
    assert result.code == 1
    assert "gamma: FAILED (build failed)" in result.stdout
    assert "no pod start-up script at /usr/local/bin/pod-start" in result.stderr
    assert "[alpha]" in result.stderr  # per-line progress when building side by side
    for name in ("alpha", "beta"):
        head = f"{repo_name}/{name}:v2"
        assert docker("run", "--rm", head, "cat", "/proc/self/oom_score_adj") == "900"
    assert docker("image", "ls", "-q", f"{repo_name}/gamma:v2") == ""
    # the failed line recorded nothing; the others are done
    again = imagectl(root, "build", "next", "--all", "alpha", "beta")
    assert again.code == 0
    assert "up to date" in again.stdout


def test_example_busybox_lines_carry_the_backported_fix(example_repo: Path) -> None:
    result = imagectl(
        example_repo,
        "build",
        "next",
        "--all",
        "-q",
        "--jobs",
        "2",
        "toolbox-busybox",
        "slim-busybox",
    )
    assert result.code == 0, result.stderr
    for line in ("toolbox-busybox", "slim-busybox"):
        history = json.loads(imagectl(example_repo, "history", line, "--json").stdout)
        assert history[-1]["summary"].startswith("Back-port: Pod start-up sets oom_score_adj")
        head = history[-1]["tag"]
        # through the start-up script, which is the image's entrypoint
        assert docker("run", "--rm", head, "cat", "/proc/self/oom_score_adj") == "900"
        before = history[-2]["tag"]
        assert docker("run", "--rm", before, "cat", "/proc/self/oom_score_adj") == "0"
        first = imagectl(example_repo, "resolve", history[0]["tag"])
        assert first.stdout.strip() == head
        # the shared fix's start-up test came with its back-port and ran on the head
        tests = [t["name"].rsplit("/", 2)[-1] for t in history[-1]["tests"]]
        assert tests[-1].endswith("-oom-score-adj.start-test.sh.j2")
        assert {t["result"] for t in history[-1]["tests"]} == {"passed"}
    toolbox = json.loads(imagectl(example_repo, "history", "toolbox-busybox", "--json").stdout)
    assert [[t["name"].split("/", 2)[2] for t in row["tests"]] for row in toolbox] == [
        ["0001-motd.test.sh.j2"],
        ["0001-motd.test.sh.j2", "0002-workdir.test.sh"],
        ["0001-motd.test.sh.j2", "0002-workdir.test.sh", "0003-pod-init/start-test.sh"],
        [
            "0001-motd.test.sh.j2",
            "0002-workdir.test.sh",
            "0003-pod-init/start-test.sh",
            "0004-oom-score-adj.start-test.sh.j2",
        ],
    ]
