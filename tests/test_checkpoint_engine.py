"""Checkpoints without a dead end, on the real engine: SHELL, HEALTHCHECK, STOPSIGNAL and
ONBUILD are kept in one layer; device nodes, hard links, setuid bits and xattrs survive; a
checkpoint killed after its tag is adopted by the rerun, and a tag of another image refused."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from imagectl.core.labels import LABEL_KEYS
from imagectl.core.owners import scratch_repository

from .conftest import docker, image_id, imagectl
from .engine_helpers import busybox_repo, kill_when_paused, layers, read_lock
from .helpers import git_commit_all, write

pytestmark = pytest.mark.engine


def config_of(ref: str) -> dict[str, object]:
    return dict(json.loads(docker("image", "inspect", "--format", "{{json .Config}}", ref)))


def test_shell_healthcheck_and_stopsignal_checkpoint_to_one_layer(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {
            "0001-config": "# Config docker import cannot set\n"
            'SHELL ["/bin/sh", "-eu", "-c"]\n'
            "HEALTHCHECK --interval=45s --timeout=4s --start-period=9s --retries=2 "
            'CMD test "$(cat /proc/1/oom_score_adj)" = 900\n'
            "STOPSIGNAL SIGINT\nWORKDIR /srv\nENV GREETING=hello\n",
            "0002-more": "# More config\nRUN echo two > /two\n"
            'ENTRYPOINT ["/bin/sh", "-c"]\nCMD ["echo $GREETING"]\nONBUILD RUN echo child\n',
        },
    )
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    result = imagectl(root, "checkpoint", "line")
    assert result.code == 0, result.stderr
    head = read_lock(root, repo_name).versions[-1]
    assert (head.version, head.checkpoint, head.layers) == (3, True, 1)
    assert len(layers(f"{repo_name}:v3")) == 1
    ours, theirs = config_of(f"{repo_name}:v3"), config_of(f"{repo_name}:v2")
    assert ours["Shell"] == ["/bin/sh", "-eu", "-c"]
    assert ours["StopSignal"] == "SIGINT"
    assert ours["Healthcheck"] == {
        "Test": ["CMD-SHELL", 'test "$(cat /proc/1/oom_score_adj)" = 900'],
        "Interval": 45_000_000_000,
        "Timeout": 4_000_000_000,
        "StartPeriod": 9_000_000_000,
        "Retries": 2,
    }
    for key in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "OnBuild",
                "Healthcheck", "Shell", "StopSignal", "ExposedPorts", "Volumes"):  # fmt: skip
        assert ours.get(key) == theirs.get(key), key
    # Labels: the increment's own are kept; imagectl's and OCI's are the checkpoint's own (v3)
    our_labels: dict[str, str] = dict(ours.get("Labels") or {})  # type: ignore[call-overload]
    their_labels: dict[str, str] = dict(theirs.get("Labels") or {})  # type: ignore[call-overload]
    own = {k: v for k, v in our_labels.items() if k not in LABEL_KEYS}
    assert own == {k: v for k, v in their_labels.items() if k not in LABEL_KEYS}
    assert our_labels["org.opencontainers.image.version"] == "v3"
    assert docker("run", "--rm", f"{repo_name}:v3") == "hello"
    assert "(checkpoint)" in imagectl(root, "history", "line").stdout
    assert docker("image", "ls", "-q", scratch_repository(f"{repo_name}:v3")) == ""  # none left


def test_device_nodes_hardlinks_setuid_and_xattrs_survive_a_checkpoint(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {
            "0001-special": "# Special files\n"
            "RUN mkdir -p /opt/special && cd /opt/special && mknod null c 1 3 "
            "&& mknod disk b 7 0 && mkfifo fifo && echo x > one && ln one two "
            "&& cp /bin/busybox suid && chmod 4755 suid && chmod 2755 /opt/special\n",
        },
    )
    folder = root / "increments" / "line" / "0002-xattr"
    marked = write(folder / "marked", "marked\n")
    os.setxattr(marked, "user.pod", b"kept")
    write(
        folder / "Dockerfile.j2", "# A file with an extended attribute\nCOPY marked /opt/marked\n"
    )
    git_commit_all(root, "xattr")
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    result = imagectl(root, "checkpoint", "line")
    assert result.code == 0, result.stderr
    assert read_lock(root, repo_name).versions[-1].layers == 1

    def listing(ref: str) -> str:
        # never mtimes: a tar round trip keeps whole seconds only
        return docker("run", "--rm", ref, "sh", "-c",
                      "cd /opt/special && stat -c '%n %a %F %t:%T %u:%g links=%h' * "
                      "&& ls -i one two | sed 's/ .*//' | uniq | wc -l")  # fmt: skip

    before, after = listing(f"{repo_name}:v2"), listing(f"{repo_name}:v3")
    assert after == before
    assert "suid 4755 regular file" in after  # setuid
    assert "2755" in docker("run", "--rm", f"{repo_name}:v3", "stat", "-c", "%a", "/opt/special")
    assert "null 644 character special file 1:3" in after
    assert "disk 644 block special file 7:0" in after
    assert "fifo 644 fifo" in after
    assert "one 644 regular file 0:0 0:0 links=2" in after
    assert after.endswith("\n1")  # one and two: one inode, a hard link
    assert xattrs_of(f"{repo_name}:v2", "opt/marked", tmp_path) == {"user.pod": "kept"}
    assert xattrs_of(f"{repo_name}:v3", "opt/marked", tmp_path) == {"user.pod": "kept"}


def xattrs_of(ref: str, path: str, tmp_path: Path) -> dict[str, str]:
    """A file's extended attributes as BuildKit's tar export of `ref` carries them (`docker cp`
    and `docker export` keep security.capability only)."""
    context = tmp_path / f"export-{ref.rpartition(':')[2]}"
    write(context / "Dockerfile", f"FROM {ref}\n")
    command = ["docker", "buildx", "build", "-q", "--output", "type=tar,dest=-", str(context)]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        found: dict[str, str] = {}
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                if member.name.removeprefix("./") == path:
                    found = {
                        key.removeprefix("SCHILY.xattr."): value
                        for key, value in member.pax_headers.items()
                        if key.startswith("SCHILY.xattr.")
                    }
    assert proc.returncode == 0
    return found


def test_a_checkpoint_killed_after_its_tag_is_adopted_by_the_rerun(
    tmp_path: Path, repo_name: str
) -> None:
    """The tag-to-lock window of a checkpoint: the kill leaves v2 tagged and unrecorded. The
    rerun proves that image (one layer, files, config, tests) and records it, instead of
    refusing its own tag forever or making a second image under it."""
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "# One\nRUN echo one > /one\n"})
    assert imagectl(root, "build", "next", "-q").code == 0
    before = (root / "lock" / "line.lock.toml").read_text()
    kill_when_paused(root, ("checkpoint", "line"), "after-tag")
    left = image_id(f"{repo_name}:v2")
    assert (root / "lock" / "line.lock.toml").read_text() == before  # tagged, not recorded
    ours = scratch_repository(f"{repo_name}:v2")
    scratch = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", ours)
    assert scratch  # the killed run's `finally` never removed its scratch images
    rerun = imagectl(root, "checkpoint", "line")
    assert rerun.code == 0, rerun.stderr
    assert f"adopting {repo_name}:v2" in rerun.stderr
    for ref in scratch.split():  # the rerun removed them, and said so
        assert f"removed a leftover scratch image {ref}" in rerun.stderr
        assert docker("image", "ls", "-q", ref) == ""
    head = read_lock(root, repo_name).versions[-1]
    assert (head.version, head.checkpoint, head.image_id) == (2, True, left)
    assert image_id(f"{repo_name}:v2") == left  # the tag never moved


def test_a_checkpoint_refuses_a_tag_of_another_image_with_what_to_do(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "# One\nRUN echo one > /one\n"})
    assert imagectl(root, "build", "next", "-q").code == 0
    before = (root / "lock" / "line.lock.toml").read_text()
    docker("tag", f"{repo_name}:v1", f"{repo_name}:v2")  # someone's image under the next tag
    refused = imagectl(root, "checkpoint", "line")
    assert refused.code == 1
    assert f"the tag {repo_name}:v2 already exists in the engine" in refused.stderr
    assert f"docker rmi {repo_name}:v2" in refused.stderr  # not `git pull`: nothing was pushed
    assert (root / "lock" / "line.lock.toml").read_text() == before
    assert image_id(f"{repo_name}:v2") == image_id(f"{repo_name}:v1")
