"""Years of versions: package manifests and diffs, verify against the reference, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagectl.core import sidecar
from imagectl.core.labels import LABEL_KEYS
from imagectl.core.packages import of_kinds

from .conftest import docker, image_id, imagectl
from .engine_helpers import busybox_repo, file_tree, read_lock
from .helpers import git_commit_all, git_init, write

pytestmark = pytest.mark.engine


@pytest.mark.debian
def test_package_manifests_and_diff_on_the_debian_line(example_repo: Path) -> None:
    increments = example_repo / "increments" / "pod-bookworm"
    write(
        increments / "0004-tree.Dockerfile.j2",
        '# Install tree\n{% from "_shared/apt.j2" import apt_install -%}\n'
        '{{ apt_install(["tree"]) }}\n',
    )
    write(
        increments / "0005-no-less.Dockerfile.j2",
        "# Remove less again\nRUN apt-get purge -y less && apt-get autoremove -y\n",
    )
    git_init(example_repo)
    result = imagectl(example_repo, "build", "next", "--all", "-q", "pod-bookworm")
    assert result.code == 0, result.stderr
    history = json.loads(imagectl(example_repo, "history", "pod-bookworm", "--json").stdout)
    none = {"added": 0, "removed": 0, "changed": 0}
    tree = {**none, "added": 1}
    less = {**none, "removed": 1}
    assert [row["packages"] for row in history][1:] == [
        {**none, "by_kind": {}},
        {**none, "by_kind": {}},
        {**tree, "by_kind": {"deb": tree}},
        {**less, "by_kind": {"deb": less}},
    ]
    added = history[3]["package_changes"]["added"]
    assert [(e["name"], e["kind"]) for e in added] == [("tree", "deb")]
    first = history[0]["packages"]
    assert first["added"] > 0
    table = imagectl(example_repo, "history", "pod-bookworm").stdout
    assert "PACKAGES" in table
    assert "+1 -0 ~0" in table

    installs = json.loads(imagectl(example_repo, "diff", "pod-bookworm", "3", "4", "--json").stdout)
    assert [entry["name"] for entry in installs["added"]] == ["tree"]
    assert set(installs["added"][0]) == {"name", "version", "kind", "arch"}
    assert installs["added"][0]["kind"] == "deb"
    assert (installs["removed"], installs["changed"]) == ([], [])
    assert [inc["summary"] for inc in installs["increments"]] == ["Install tree"]
    from_base = json.loads(
        imagectl(example_repo, "diff", "pod-bookworm", "0", "1", "--json").stdout
    )
    assert {"procps", "less", "ca-certificates"} <= {e["name"] for e in from_base["added"]}
    removes = imagectl(example_repo, "diff", "pod-bookworm", "v3", "v5")
    assert removes.code == 0
    assert "  + tree " in removes.stdout
    assert "  - less " in removes.stdout
    assert "v5  0005-no-less.Dockerfile.j2  Remove less again" in removes.stdout
    # the manifest is what dpkg says inside the image
    dpkg = docker(
        "run",
        "--rm",
        "--entrypoint",
        "dpkg-query",
        history[-1]["tag"],
        "-W",
        "-f",
        "${Package} ${Version} ${Architecture}\\n",
    )
    record = sidecar.read_packages(example_repo / "lock" / "pod-bookworm.packages.toml")
    assert set(of_kinds(record.manifest(5), ["deb"])) == set(dpkg.splitlines())


def test_busybox_has_an_empty_manifest_and_diff_names_the_increments(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    rows = json.loads(imagectl(root, "history", "line", "--json").stdout)
    empty = {"added": 0, "removed": 0, "changed": 0, "by_kind": {}}
    assert [row["packages"] for row in rows] == [empty] * 3
    result = imagectl(root, "diff", "line", "1", "3")
    assert "packages +0 -0 ~0" in result.stdout
    assert "v2  0002-two.Dockerfile.j2  Write two" in result.stdout
    assert imagectl(root, "diff", "line", "1", "9").code == 1


def verify_leftovers() -> str:
    return docker("image", "ls", "-q", "imagectl-verify/*")


def test_verify_reports_no_drift_then_drift(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {
            "0001-stable": "# Stable\nRUN echo stable > /stable\nENV STAGE=one\n",
            "0002-files": "# Stable too\nRUN mkdir -p /etc/pod && echo x > /etc/pod/x\n",
        },
    )
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    same = imagectl(root, "verify", "line", "-q")
    assert same.code == 0, same.stderr
    assert "matches v2" in same.stdout
    write(
        root / "increments" / "line" / "0003-clock.Dockerfile.j2",
        "# Record the build time\nRUN cat /proc/sys/kernel/random/uuid > /built-at\n",
    )
    git_commit_all(root, "clock")
    assert imagectl(root, "build", "next", "-q").code == 0
    drift = imagectl(root, "verify", "line", "-q", "--json")
    assert drift.code == 3, drift.stderr
    report = json.loads(drift.stdout)
    assert report["drift"] is True
    assert report["files"]["different"] == [{"path": "built-at", "kind": "content"}]
    assert verify_leftovers() == ""  # the throwaway image is gone
    assert not any(v.tag.startswith("imagectl-verify") for v in read_lock(root, repo_name).versions)


def test_checkpoint_has_the_same_content_and_config_in_one_layer(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(
        tmp_path,
        repo_name,
        {
            "0001-config": '# Config to keep\nENV GREETING="hello $$ world" PATH=/usr/bin:/bin\n'
            "LABEL org.example.team=pods\nWORKDIR /srv\nEXPOSE 8888\n"
            'ENTRYPOINT ["/bin/sh", "-c"]\nCMD ["echo $GREETING"]\nUSER 0\n',
            "0002-files": "RUN mkdir -p /srv/data && echo one > /srv/data/one && chmod 600 "
            "/srv/data/one && ln -s /srv/data/one /srv/link\n",
        },
    )
    write(root / "increments" / "line" / "0002-files.test.sh", "test -L /srv/link\n")
    git_commit_all(root, "a test")
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    # the whole suite runs on the one-layer copy before it is tagged: a failing test stops it
    test = root / "increments" / "line" / "0002-files.test.sh"
    test.write_text("test -L /srv/link && test -f /srv/missing\n")
    before = (root / "lock" / "line.lock.toml").read_bytes()
    refused = imagectl(root, "checkpoint", "line")
    assert refused.code == 1
    assert "v3 failed 1 of 1 test: increments/line/0002-files.test.sh (exit code 1)" in (
        refused.stderr
    )
    assert docker("image", "ls", "-q", f"{repo_name}:v3") == ""
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    test.write_text("test -L /srv/link\n")
    result = imagectl(root, "checkpoint", "line")
    assert result.code == 0, result.stderr
    lock = read_lock(root, repo_name)
    head = lock.versions[-1]
    assert (head.version, head.checkpoint, head.layers) == (3, True, 1)
    assert file_tree(f"{repo_name}:v3") == file_tree(f"{repo_name}:v2")
    config = "{{json .Config}}"
    ours = json.loads(docker("image", "inspect", "--format", config, f"{repo_name}:v3"))
    theirs = json.loads(docker("image", "inspect", "--format", config, f"{repo_name}:v2"))
    for key in ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts"):
        assert ours.get(key) == theirs.get(key), key
    # the increment's own label is carried; imagectl's are the checkpoint's own, its content's
    # revision and created kept
    mine, parents = ours["Labels"], theirs["Labels"]
    assert {k: v for k, v in mine.items() if k not in LABEL_KEYS} == {"org.example.team": "pods"}
    assert {k: v for k, v in parents.items() if k not in LABEL_KEYS} == {"org.example.team": "pods"}
    v2 = lock.versions[1]
    assert mine == {
        **parents,
        "org.opencontainers.image.version": "v3",
        "org.opencontainers.image.ref.name": f"{repo_name}:v3",
        "org.opencontainers.image.base.name": f"{repo_name}:v2",
        "org.opencontainers.image.base.digest": v2.image_id,
        "imagectl.version": "3",
        "imagectl.increment": "",
    }
    assert mine["org.opencontainers.image.revision"] == v2.commit
    assert [t.name for t in head.tests] == ["increments/line/0002-files.test.sh"]
    assert docker("run", "--rm", f"{repo_name}:v3") == docker("run", "--rm", f"{repo_name}:v2")
    assert docker("run", "--rm", f"{repo_name}:v3").startswith("hello")
    # the next increment builds on the checkpoint, which history marks
    write(root / "increments" / "line" / "0003-after.Dockerfile.j2", "RUN echo after > /after\n")
    assert imagectl(root, "build", "next", "-q").code == 0
    v4 = read_lock(root, repo_name).versions[-1]
    assert (v4.version, v4.increment, v4.layers) == (
        4,
        "increments/line/0003-after.Dockerfile.j2",
        2,
    )
    assert "(checkpoint)" in imagectl(root, "history", "line").stdout
    assert imagectl(root, "build", "next").stdout.strip() == "line: up to date, nothing to build"
    assert imagectl(root, "squash", "--check").code == 0


def test_a_line_passes_125_layers_only_thanks_to_checkpoint(tmp_path: Path, repo_name: str) -> None:
    count = 130
    steps = {f"{n:04d}-step": f"RUN echo {n} >> /count\n" for n in range(1, count + 1)}
    steps["0124-step"] += "RUN true\n"  # two layers: v124 would have 126, one over the limit
    root = busybox_repo(tmp_path, repo_name, steps)
    first = imagectl(root, "build", "next", "--all", "-q", timeout=1200)
    assert first.code == 1
    assert "v124 would have 126 layers" in first.stderr
    assert "imagectl checkpoint line" in first.stderr
    lock = read_lock(root, repo_name)
    assert (len(lock.versions), lock.versions[-1].layers) == (123, 124)
    assert docker("image", "ls", "-q", f"{repo_name}:v124") == ""  # built, never tagged
    assert imagectl(root, "checkpoint", "line").code == 0
    rest = imagectl(root, "build", "next", "--all", "-q", timeout=600)
    assert rest.code == 0, rest.stderr
    lock = read_lock(root, repo_name)
    assert len(lock.versions) == count + 1
    assert [v.version for v in lock.versions if v.checkpoint] == [124]
    head = lock.versions[-1]
    assert head.layers == 1 + (count - 123) + 1
    counted = docker("run", "--rm", head.tag, "cat", "/count").split()
    assert counted == [str(n) for n in range(1, count + 1)]
    assert image_id(head.tag) == head.image_id
