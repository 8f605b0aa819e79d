"""`publish` and the CI job against the real registry and real git."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BUSYBOX, ROOT, docker, image_id, imagectl
from .engine_helpers import (
    assert_lock_matches_registry,
    busybox_repo,
    kill_when_paused,
    read_lock,
    remote,
)
from .helpers import git_commit_all, write

pytestmark = pytest.mark.engine


def test_publish_three_versions_then_rerun_is_a_noop(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    dry = imagectl(root, "publish", "--dry-run")
    assert f"line: {repo_name}:v1, {repo_name}:v2, {repo_name}:v3" in dry.stdout
    result = imagectl(root, "publish", "--json", "-q")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(p["version"], p["action"]) for p in report["published"]] == [
        (1, "pushed"),
        (2, "pushed"),
        (3, "pushed"),
    ]
    assert_lock_matches_registry(root, repo_name, 3)
    before = (root / "lock" / "line.lock.toml").read_bytes()
    again = imagectl(root, "publish")
    assert again.code == 0
    assert "nothing to publish" in again.stdout
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    history = json.loads(imagectl(root, "history", "line", "--json").stdout)
    assert all(row["digest"].startswith("sha256:") for row in history)


def test_pushed_but_unrecorded_version_is_recorded_on_rerun(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    docker("push", "-q", f"{repo_name}:v1")  # as if publish died between push and lock write
    result = imagectl(root, "publish", "--json", "-q")
    assert result.code == 0, result.stderr
    actions = [(p["version"], p["action"]) for p in json.loads(result.stdout)["published"]]
    assert actions == [(1, "recorded"), (2, "pushed"), (3, "pushed")]
    assert_lock_matches_registry(root, repo_name, 3)


def test_sigkill_after_pushing_v2_on_a_published_v1_then_rerun_records_it(
    tmp_path: Path, repo_name: str
) -> None:
    """Killed inside the push-to-lock window (IMAGECTL_PAUSE_AT=after-push) of v2, whose parent
    v1 is published. Protection: the digest goes into the lock right after each push (v1 keeps
    its digest), and a rerun records a tag that already names the recorded image instead of
    pushing it again (without that it says "pushing"/"pushed" for v2, or refuses the tag)."""
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0
    assert imagectl(root, "publish", "-q").code == 0
    assert imagectl(root, "build", "next", "--all", "-q").code == 0  # v2, v3 FROM v1@digest
    kill_when_paused(root, ("publish",), "after-push")

    lock = read_lock(root, repo_name)
    assert lock.versions[0].digest.startswith("sha256:")
    assert [v.digest for v in lock.versions[1:]] == ["", ""]
    pushed = remote(f"{repo_name}:v2")
    assert pushed is not None
    assert pushed[1] == lock.versions[1].image_id
    assert remote(f"{repo_name}:v3") is None

    rerun = imagectl(root, "publish")
    assert rerun.code == 0, rerun.stderr
    assert f"pushing {repo_name}:v2" not in rerun.stderr
    assert rerun.stdout.splitlines()[0] == f"line: recorded {repo_name}:v2@{pushed[0]}"
    assert rerun.stdout.splitlines()[1].startswith(f"line: pushed {repo_name}:v3@")
    assert remote(f"{repo_name}:v2") == pushed
    assert_lock_matches_registry(root, repo_name, 3)


def test_foreign_image_on_a_tag_is_refused_and_untouched(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    ours_v2 = image_id(f"{repo_name}:v2")
    docker("tag", BUSYBOX, f"{repo_name}-foreign:x")
    docker("tag", BUSYBOX, f"{repo_name}:v2")  # someone else's image under our next tag
    docker("push", "-q", f"{repo_name}:v2")
    foreign = remote(f"{repo_name}:v2")
    assert foreign is not None
    docker("tag", ours_v2, f"{repo_name}:v2")  # restore our local tag
    result = imagectl(root, "publish", "-q")
    assert result.code == 1
    assert f"the registry already has {repo_name}:v2 as {foreign[0]}" in result.stderr
    assert f"lock records image {ours_v2}" in result.stderr
    assert remote(f"{repo_name}:v2") == foreign
    assert remote(f"{repo_name}:v3") is None
    lock = read_lock(root, repo_name)
    assert lock.versions[0].digest.startswith("sha256:")
    assert (lock.versions[1].digest, lock.versions[2].digest) == ("", "")
    docker("rmi", f"{repo_name}-foreign:x", check=False)


def test_next_build_after_publish_pins_its_parent_by_digest(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "RUN echo one >> /applied\n"})
    assert imagectl(root, "build", "next", "-q").code == 0
    assert imagectl(root, "publish", "-q").code == 0
    digest = read_lock(root, repo_name).versions[0].digest
    write(root / "increments" / "line" / "0002-two.Dockerfile.j2", "RUN echo two >> /applied\n")
    plan = imagectl(root, "plan")
    assert f"FROM {repo_name}:v1@{digest}" in plan.stdout
    assert imagectl(root, "build", "next", "-q").code == 0
    v2 = read_lock(root, repo_name).versions[1]
    assert (v2.parent, v2.parent_digest) == (f"{repo_name}:v1@{digest}", digest)


# -- a registry of our own, to stop and break ---------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int) -> None:
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def own_registry(tmp_path: Path, engine: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    config = write(
        tmp_path / "registry.yml",
        f"""version: 0.1
storage:
  filesystem:
    rootdirectory: {tmp_path}/registry-data
http:
  addr: 127.0.0.1:{port}
""",
    )
    with subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        wait_for(port)
        yield port, process
        process.kill()


class Always500(http.server.BaseHTTPRequestHandler):
    """Answers every request with 500, like a registry whose storage broke.

    docker first tries TLS on the port; only an answer that starts with an HTTP status line
    ("server gave HTTP response to HTTPS client") makes it fall back to plain HTTP and reach
    the 500. http.server answers a request line it cannot parse in HTTP/0.9 style, without a
    status line, and docker would stop at a TLS error instead.
    """

    default_request_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"boom")

    do_HEAD = do_GET  # noqa: N815 - the names http.server dispatches to
    do_PUT = do_GET  # noqa: N815
    do_POST = do_GET  # noqa: N815

    def log_message(self, *_: object) -> None:
        pass


def built_line_on(tmp_path: Path, port: int) -> tuple[Path, str]:
    name = f"localhost:{port}/imagectl-test/down"
    root = busybox_repo(tmp_path, name, {"0001-one": "RUN echo one > /one\n"})
    result = imagectl(root, "build", "next", "-q")
    assert result.code == 0, result.stderr
    return root, name


def test_registry_down_is_a_clear_error_and_the_lock_is_unchanged(
    tmp_path: Path, own_registry: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, process = own_registry
    root, name = built_line_on(tmp_path, port)
    before = (root / "lock" / "line.lock.toml").read_bytes()
    process.kill()
    process.wait()
    result = imagectl(root, "publish", "-q")
    assert result.code == 1
    host = name.split("/", 1)[0]
    # classified from the connection's failure (refused), not from words in docker's text
    assert f"the registry {host} refused the connection" in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    docker("rmi", f"{name}:v1", check=False)


def test_registry_answering_500_is_a_clear_error(
    tmp_path: Path, own_registry: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, process = own_registry
    root, name = built_line_on(tmp_path, port)
    before = (root / "lock" / "line.lock.toml").read_bytes()
    process.kill()
    process.wait()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = imagectl(root, "publish", "-q")
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 1
    # classified as the registry's own failure: not unreachable, not TLS, not a missing tag
    host, path = name.split("/", 1)
    assert (
        f"imagectl: registry error: the registry {host} failed with a server error (HTTP 500) "
        f"looking up {host}/{path}:v1."
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    docker("rmi", f"{name}:v1", check=False)


# -- the CI job ------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def ci_remote(tmp_path: Path, repo_name: str) -> Path:
    """A bare repository as the CI remote, holding a busybox image repository."""
    source = busybox_repo(tmp_path, repo_name)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    return bare


def clone(bare: Path, target: Path) -> Path:
    git(bare.parent, "clone", "-q", str(bare), str(target))
    return target


def ci_publish(checkout: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(ROOT / "ci" / "publish"), "--quiet"],
        cwd=checkout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def remote_lock(bare: Path, tmp_path: Path, repo_name: str, name: str) -> Path:
    check = clone(bare, tmp_path / name)
    assert_lock_matches_registry(check, repo_name, 3)
    return check


def test_ci_job_end_to_end(tmp_path: Path, repo_name: str) -> None:
    bare = ci_remote(tmp_path, repo_name)
    job = clone(bare, tmp_path / "job")
    with ci_publish(job) as first:
        out, err = first.communicate(timeout=600)
    assert "pushed lock commit" in out, err
    message = git(bare, "log", "-1", "--format=%B", "main")
    assert message.startswith("imagectl: publish 3 new tags")
    for version in (1, 2, 3):
        assert f"- {repo_name}:v{version}" in message
    remote_lock(bare, tmp_path, repo_name, "check")
    commits = git(bare, "rev-list", "--count", "main")
    with ci_publish(job) as again:
        out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "nothing to publish" in out
    assert git(bare, "rev-list", "--count", "main") == commits


def test_ci_job_refuses_a_dirty_tree(tmp_path: Path, repo_name: str) -> None:
    bare = ci_remote(tmp_path, repo_name)
    job = clone(bare, tmp_path / "job")
    write(job / "increments" / "line" / "0004-four.Dockerfile.j2", "RUN true\n")
    with ci_publish(job) as process:
        _, err = process.communicate(timeout=600)
    assert process.returncode == 1
    assert "working tree is not clean" in err
    assert "0004-four" in err


def test_two_ci_jobs_at_once_one_wins_the_other_is_clean(tmp_path: Path, repo_name: str) -> None:
    bare = ci_remote(tmp_path, repo_name)
    first, second = clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")
    with ci_publish(first) as job_a, ci_publish(second) as job_b:
        out_a, err_a = job_a.communicate(timeout=600)
        out_b, err_b = job_b.communicate(timeout=600)
    assert (job_a.returncode, job_b.returncode) == (0, 0), err_a + err_b
    # exactly one lock commit landed; the registry and the remote lock agree
    log = git(bare, "log", "--format=%s", "main").splitlines()
    assert sum(1 for subject in log if subject.startswith("imagectl: publish")) == 1
    remote_lock(bare, tmp_path, repo_name, "check")
    # the other job found nothing left to do, or had made the very same commit (same tree,
    # parent, author and second), whose push was then a no-op
    outcomes = {out_a.strip().splitlines()[-1], out_b.strip().splitlines()[-1]}
    assert "nothing to publish" in outcomes or len(outcomes) == 1, outcomes


def test_ci_job_retries_when_the_remote_moved(tmp_path: Path, repo_name: str) -> None:
    bare = ci_remote(tmp_path, repo_name)
    job = clone(bare, tmp_path / "job")
    other = clone(bare, tmp_path / "other")
    write(other / "NOTES.md", "someone else's change\n")
    git_commit_all(other, "docs: notes")
    git(other, "push", "-q", "origin", "HEAD:main")
    with ci_publish(job) as process:
        _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "push rejected" in err
    subjects = git(bare, "log", "--format=%s", "main").splitlines()
    assert subjects[:2] == ["imagectl: publish 3 new tags", "docs: notes"]
    remote_lock(bare, tmp_path, repo_name, "check")
