"""The test gate and the labels on the real engine and registry, through the CLI: tests that
stop a tag, travel with a back-port, see a started pod, time out; `imagectl test`; every label
on v2, none left from the parent, none counted as drift."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagectl.core.labels import LABEL_KEYS

from .conftest import BUSYBOX, ROOT, docker, imagectl
from .engine_helpers import busybox_repo, read_lock
from .helpers import git_commit_all, make_line, write

pytestmark = pytest.mark.engine

TOKEN = "s3cret-t0ken"  # in the git remote's URL: must reach no label and no output


def labels(ref: str) -> dict[str, str]:
    found: dict[str, str] = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref)
    )
    return found


def leftover_containers() -> set[str]:
    return set(docker("ps", "-aq", "--filter", "label=imagectl.test=1").split())


def lock_bytes(root: Path) -> bytes:
    return (root / "lock" / "line.lock.toml").read_bytes()


def test_a_later_increment_breaking_an_earlier_test_is_not_tagged(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(
        tmp_path, repo_name, {"0001-conf": "# Config\nRUN echo on > /etc/pod.conf\n"}
    )
    line = root / "increments" / "line"
    write(
        line / "0001-conf.test.sh",
        'grep -qsx on /etc/pod.conf || { echo "pod.conf lost" >&2; exit 1; }\n',
    )
    git_commit_all(root, "a test")
    assert imagectl(root, "build", "next").code == 0
    before = lock_bytes(root)
    write(line / "0002-clean.Dockerfile.j2", "# Tidy up /etc (too much)\nRUN rm /etc/pod.conf\n")
    git_commit_all(root, "a breaking increment")

    result = imagectl(root, "build", "next")
    assert result.code == 1
    assert "imagectl: test failed: v2 failed 1 of 1 test: increments/line/0001-conf.test.sh " in (
        result.stderr
    )
    assert "== increments/line/0001-conf.test.sh (test of v1, exit code 1)\n" in result.stderr
    assert result.stderr.rstrip().endswith("pod.conf lost")  # its output
    assert "Traceback" not in result.stderr
    assert docker("image", "ls", "-q", f"{repo_name}:v2") == ""
    assert lock_bytes(root) == before
    as_json = json.loads(imagectl(root, "build", "next", "--json").stdout)
    (error,) = [row["error"] for row in as_json["lines"]]
    assert error["kind"] == "test failed"
    assert [(t["name"], t["result"], t["output"]) for t in error["tests"]] == [
        ("increments/line/0001-conf.test.sh", "failed", "pod.conf lost\n")
    ]
    assert lock_bytes(root) == before


POD_INIT = (
    "# Pod start-up script\nCOPY pod-start /usr/local/bin/pod-start\n"
    'ENTRYPOINT ["/usr/local/bin/pod-start"]\nCMD ["sleep", "3600"]\n'
)


def pod_line(tmp_path: Path, repo_name: str, start: str = '#!/bin/sh\nexec "$@"\n') -> Path:
    root = busybox_repo(tmp_path, repo_name, {})
    folder = root / "increments" / "line" / "0001-pod-init"
    write(folder / "Dockerfile.j2", POD_INIT)
    write(folder / "pod-start", start)
    (folder / "pod-start").chmod(0o755)
    return root


def test_a_backported_fix_brings_its_test_and_a_fix_failing_its_own_test_is_not_tagged(
    tmp_path: Path, repo_name: str
) -> None:
    root = pod_line(tmp_path, repo_name)
    shared = root / "increments" / "_shared"
    for name in ("oom-score-adj.Dockerfile.j2", "oom-score-adj.start-test.sh"):
        write(shared / name, (ROOT / "increments" / "_shared" / name).read_text())
    git_commit_all(root, "a pod line and the shared OOM fix")
    assert imagectl(root, "build", "next", "-q").code == 0
    added = imagectl(root, "backport", "increments/_shared/oom-score-adj.Dockerfile.j2")
    assert added.code == 0, added.stderr
    assert "and 0002-oom-score-adj.start-test.sh.j2" in added.stdout
    git_commit_all(root, "back-port")
    built = imagectl(root, "build", "next", "-q")
    assert built.code == 0, built.stderr
    (test,) = read_lock(root, repo_name).versions[1].tests
    assert (test.name, test.result) == (
        "increments/line/0002-oom-score-adj.start-test.sh.j2",
        "passed",
    )

    # A fix that is meant to raise the score to 1000, appended after the exec, where it never
    # runs: its own start-up test catches it before the tag.
    fix = "RUN echo 'echo 1000 > /proc/self/oom_score_adj' >> /usr/local/bin/pod-start\n"
    write(shared / "oom-max.Dockerfile.j2", f"# Pod start-up sets oom_score_adj=1000\n{fix}")
    write(
        shared / "oom-max.start-test.sh",
        '[ "$(cat /proc/1/oom_score_adj)" = 1000 ] || { echo "PID 1 has '
        '$(cat /proc/1/oom_score_adj)" >&2; exit 1; }\n',
    )
    assert imagectl(root, "backport", "increments/_shared/oom-max.Dockerfile.j2").code == 0
    git_commit_all(root, "a broken fix")
    before = lock_bytes(root)
    refused = imagectl(root, "build", "next")
    assert refused.code == 1
    assert "increments/line/0003-oom-max.start-test.sh.j2 (exit code 1)" in refused.stderr
    assert "PID 1 has 900" in refused.stderr  # the output of the failing test
    assert docker("image", "ls", "-q", f"{repo_name}:v3") == ""
    assert lock_bytes(root) == before


def test_a_start_up_test_sees_the_entrypoints_effect_and_a_plain_test_does_not(
    tmp_path: Path, repo_name: str
) -> None:
    start = '#!/bin/sh\necho "started by $(id -u)" > /tmp/started\nexec "$@"\n'
    root = pod_line(tmp_path, repo_name, start)
    folder = root / "increments" / "line" / "0001-pod-init"
    write(folder / "Dockerfile.j2", POD_INIT + "USER 1000\n")
    # The plain test: run with /bin/sh instead of the entrypoint, as the image's user, the
    # script mounted read-only, no network.
    write(
        folder / "test.sh",
        'fail() { echo "$*" >&2; exit 1; }\n'
        "[ ! -e /tmp/started ] || fail 'the entrypoint ran'\n"
        '[ "$(id -u)" = 1000 ] || fail "runs as $(id -u)"\n'
        "awk '$5 == \"/imagectl-test/test.sh\" {print $6}' /proc/self/mountinfo | grep -q '^ro'"
        " || fail 'the script is writable'\n"
        '[ "$(ls /sys/class/net)" = lo ] || fail "a network: $(ls /sys/class/net)"\n',
    )
    write(folder / "start-test.sh",
          "i=0\nuntil [ -e /tmp/started ]; do i=$((i + 1)); [ $i -lt 100 ] || exit 1; "
          "sleep 0.1; done\n"
          'grep -qx "started by 1000" /tmp/started || { cat /tmp/started; exit 1; }\n'
          '[ "$(tr "\\0" " " < /proc/1/cmdline)" = "sleep 3600 " ] || exit 1\n')  # fmt: skip
    git_commit_all(root, "a pod line with tests")
    before = leftover_containers()
    result = imagectl(root, "build", "next")
    assert result.code == 0, result.stderr
    assert "line: v1 passed 2 tests" in result.stderr
    assert [(t.name, t.result) for t in read_lock(root, repo_name).versions[0].tests] == [
        ("increments/line/0001-pod-init/test.sh", "passed"),
        ("increments/line/0001-pod-init/start-test.sh", "passed"),
    ]
    assert leftover_containers() <= before  # every test container is gone
    # the tests are no context files: not in the image
    assert docker("run", "--rm", "--entrypoint", "ls", f"{repo_name}:v1", "/").count("test") == 0


def test_imagectl_test_runs_the_accumulated_tests_on_a_built_version(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name)  # three increments appending to /applied
    line = root / "increments" / "line"
    write(line / "0001-one.test.sh", "grep -qx one /applied\n")
    write(line / "0002-two.test.sh.j2", "grep -qx two /applied && echo v{{ version }} ok\n")
    git_commit_all(root, "tests")
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    lock = lock_bytes(root)

    result = imagectl(root, "test", "line")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"line v3 ({repo_name}:v3, ")
    assert "2 tests, all passed" in result.stdout
    data = json.loads(imagectl(root, "test", "line", "v1", "--json").stdout)
    assert (data["version"], data["passed"]) == (1, True)
    assert [(t["name"], t["kind"], t["version"]) for t in data["tests"]] == [
        ("increments/line/0001-one.test.sh", "test", 1)
    ]
    # An improved test is not drift: it runs as it is now, and fails where it should.
    write(line / "0002-two.test.sh.j2", "grep -qx three /applied && echo v{{ version }} ok\n")
    failed = imagectl(root, "test", "line", "2", "--json")
    assert failed.code == 1
    report = json.loads(failed.stdout)
    assert report["passed"] is False
    assert [t["result"] for t in report["tests"]] == ["passed", "failed"]
    assert report["tests"][1]["exit_code"] == 1
    assert imagectl(root, "test", "line", "3").code == 0
    assert imagectl(root, "plan").code == 0  # no drift
    assert lock_bytes(root) == lock  # imagectl test records nothing
    missing = imagectl(root, "test", "line", "9")
    assert (missing.code, "line has no built v9 (it has v1 to v3)" in missing.stderr) == (1, True)


def test_a_test_that_outlives_its_timeout_fails_and_leaves_no_container(
    tmp_path: Path, repo_name: str
) -> None:
    root = pod_line(tmp_path, repo_name)
    with (root / "images" / "line.toml").open("a") as handle:
        handle.write("[tests]\ntimeout = 2\n")
    folder = root / "increments" / "line" / "0001-pod-init"
    write(folder / "test.sh", "echo waiting; sleep 60\n")
    write(folder / "start-test.sh", "sleep 60\n")
    git_commit_all(root, "slow tests")
    before = leftover_containers()
    began = time.monotonic()
    result = imagectl(root, "build", "next")
    assert time.monotonic() - began < 40
    assert result.code == 1
    assert (
        "v1 failed 2 of 2 tests: increments/line/0001-pod-init/test.sh (timed out after 2 s)"
        in (result.stderr)
    )
    assert "start-test.sh (timed out after 2 s)" in result.stderr
    assert "waiting" in result.stderr  # what it said before it was killed
    assert docker("image", "ls", "-q", f"{repo_name}:v1") == ""
    assert not (root / "lock" / "line.lock.toml").exists()
    assert leftover_containers() <= before


def commit_time(root: Path) -> str:
    """The committer time of HEAD in UTC, as the created label writes it."""
    seconds = int(
        subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_all_the_labels_on_v2_with_base_digest_the_registry_digest_of_v1(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "# One\nRUN echo one > /one\n"})
    remote = f"https://bot:{TOKEN}@git.example.com/platform/images.git"
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin", remote], check=True)
    assert imagectl(root, "build", "next", "-q").code == 0
    assert imagectl(root, "publish", "-q").code == 0
    v1 = read_lock(root, repo_name).versions[0]
    assert v1.digest.startswith("sha256:")
    write(root / "increments" / "line" / "0002-two.Dockerfile.j2", "# Two\nRUN echo two > /two\n")
    git_commit_all(root, "two")
    built = imagectl(root, "build", "next")
    assert built.code == 0, built.stderr
    v2 = read_lock(root, repo_name).versions[1]
    assert labels(f"{repo_name}:v2") == {
        "org.opencontainers.image.version": "v2",
        "org.opencontainers.image.revision": v2.commit,
        "org.opencontainers.image.source": "https://git.example.com/platform/images",
        "org.opencontainers.image.created": commit_time(root),
        "org.opencontainers.image.base.name": f"{repo_name}:v1@{v1.digest}",
        "org.opencontainers.image.base.digest": v1.digest,
        "org.opencontainers.image.ref.name": f"{repo_name}:v2",
        "org.opencontainers.image.title": "line",
        "imagectl.line": "line",
        "imagectl.version": "2",
        "imagectl.increment": "increments/line/0002-two.Dockerfile.j2",
    }
    assert len(v2.commit) == 40
    for text in (built.stdout, built.stderr, docker("image", "inspect", f"{repo_name}:v2"),
                 lock_bytes(root).decode()):  # fmt: skip
        assert TOKEN not in text
    # the increment text carries none of them: they are build flags
    assert "LABEL" not in imagectl(root, "render", "line", "2").stdout


def test_labels_never_leak_from_the_parent_and_are_no_drift(tmp_path: Path, repo_name: str) -> None:
    # Another repository than the line's (verify refuses a reference built on the line's own
    # images); its tag is removed at the end of the test.
    base = f"{repo_name}-base:labelled"
    leaked = dict.fromkeys(LABEL_KEYS, "from-the-base")
    write(tmp_path / "base" / "Dockerfile",
          f"FROM {BUSYBOX}\nLABEL "
          + " ".join(f'"{key}"="{value}"' for key, value in leaked.items())
          + ' "org.example.team"="pods"\n')  # fmt: skip
    docker("build", "-q", "-t", base, str(tmp_path / "base"))
    root = tmp_path / "repo"
    steps = {
        "0001-one": "RUN echo one > /one\n",
        "0002-two": "# Own label\nLABEL org.example.app=two\n",
    }
    make_line(root, "line", repository=repo_name, base=base, increments=steps)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git_commit_all(root, "init")  # the labels name no remote: source is empty
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    first, second = labels(f"{repo_name}:v1"), labels(f"{repo_name}:v2")
    for found in (first, second):
        assert "from-the-base" not in found.values()
        assert set(LABEL_KEYS) <= set(found)
        assert found["org.example.team"] == "pods"  # labels imagectl does not set carry on
        assert found["org.opencontainers.image.source"] == ""
    assert second["org.example.app"] == "two"
    assert second["org.opencontainers.image.base.name"] == f"{repo_name}:v1"
    assert {k: second[k] for k in LABEL_KEYS} != {k: first[k] for k in LABEL_KEYS}

    # Deterministic (created is the commit's time): a rerun after losing the lock builds the
    # very same images and adopts them. (Before verify, whose --no-cache rebuild renews the cache.)
    ids = [v.image_id for v in read_lock(root, repo_name).versions]
    (root / "lock" / "line.lock.toml").unlink()
    rerun = imagectl(root, "build", "next", "--all", "-q")
    assert rerun.code == 0, rerun.stderr
    assert rerun.stdout.count("adopted") == 2
    assert [v.image_id for v in read_lock(root, repo_name).versions] == ids
    # No drift: the increments are as built, the reference (no labels) rebuilds the same files.
    assert "up to date" in imagectl(root, "build", "next").stdout
    assert imagectl(root, "squash", "--check").code == 0
    verified = imagectl(root, "verify", "line", "-q")
    assert verified.code == 0, verified.stdout + verified.stderr
    docker("rmi", base, check=False)


def test_a_pod_that_cannot_start_fails_its_start_up_test_with_the_reason(
    tmp_path: Path, repo_name: str
) -> None:
    root = pod_line(tmp_path, repo_name)
    folder = root / "increments" / "line" / "0001-pod-init"
    write(folder / "start-test.sh", "true\n")
    write(root / "increments" / "line" / "0002-typo.Dockerfile.j2",
          '# A typo in the entrypoint\nENTRYPOINT ["/usr/local/bin/pod-strat"]\n')  # fmt: skip
    git_commit_all(root, "a pod that cannot start")
    result = imagectl(root, "build", "next", "--all")
    assert result.code == 1
    assert "v2 failed 1 of 1 test: increments/line/0001-pod-init/start-test.sh (exit code 127)" in (
        result.stderr
    )
    assert "the pod did not start: " in result.stderr
    assert "/usr/local/bin/pod-strat" in result.stderr
    assert [v.version for v in read_lock(root, repo_name).versions] == [1]
