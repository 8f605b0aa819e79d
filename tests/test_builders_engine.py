"""Named buildx builders (`--builder NAME`, `[build] builder` in imagectl.toml) on the real
engine: an existing one builds, verifies and checkpoints; an unknown one is a clear error
naming it, before anything is built."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imagectl.adapters.docker_config import DEFAULT_HOST

from .conftest import docker, image_id, imagectl
from .engine_helpers import busybox_repo, read_lock
from .helpers import write

pytestmark = pytest.mark.engine


def test_an_existing_builder_builds_verifies_and_checkpoints(
    tmp_path: Path, repo_name: str
) -> None:
    """`default` is the builder of the engine's own BuildKit (the docker driver), the one named
    builder every engine has: what is asserted is that naming it works end to end."""
    root = busybox_repo(tmp_path, repo_name)
    built = imagectl(root, "build", "next", "--all", "-q", "--builder", "default")
    assert built.code == 0, built.stderr
    assert [v.version for v in read_lock(root, repo_name).versions] == [1, 2, 3]
    verified = imagectl(root, "verify", "line", "-q", "--builder", "default")
    assert verified.code == 0, verified.stderr
    assert "matches v3" in verified.stdout
    flat = imagectl(root, "checkpoint", "line", "--builder", "default")
    assert flat.code == 0, flat.stderr
    assert read_lock(root, repo_name).versions[-1].checkpoint


def test_the_builder_of_imagectl_toml_is_used_and_the_option_wins(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    missing = f"imagectl-test-{secrets.token_hex(5)}"
    write(root / "imagectl.toml", f'[build]\nbuilder = "{missing}"\n')
    refused = imagectl(root, "build", "next", "-q")
    assert refused.code == 1
    assert f"there is no buildx builder named {missing!r}" in refused.stderr
    assert "The name comes from [build] builder in imagectl.toml." in refused.stderr
    chosen = imagectl(root, "build", "next", "-q", "--builder", "default")
    assert chosen.code == 0, chosen.stderr
    assert len(read_lock(root, repo_name).versions) == 1


@pytest.mark.parametrize(
    "command",
    [("build", "next"), ("build", "next", "--all"), ("verify", "line"), ("checkpoint", "line")],
)
def test_an_unknown_builder_is_a_clear_error_naming_it(
    tmp_path: Path, repo_name: str, command: tuple[str, ...]
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    if command[0] != "build":
        assert imagectl(root, "build", "next", "-q").code == 0
    lock = root / "lock" / "line.lock.toml"
    before = lock.read_bytes() if lock.exists() else b""
    missing = f"imagectl-test-{secrets.token_hex(5)}"
    result = imagectl(root, *command, "--builder", missing)
    assert result.code == 1
    assert result.stderr.startswith(
        f"imagectl: engine error: there is no buildx builder named {missing!r}. "
        "The name comes from --builder."
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert (lock.read_bytes() if lock.exists() else b"") == before
    as_json = imagectl(root, *command, "--builder", missing, "--json")
    assert as_json.code == 1
    assert f"\"there is no buildx builder named '{missing}'.\"" in as_json.stdout


@contextmanager
def docker_context(tmp_path: Path, host: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A docker context of `host`, in a docker config of the test's own (the machine's
    ~/.docker is left alone); buildx lists it as a builder of the docker driver."""
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    name = f"imagectl-test-{secrets.token_hex(5)}"
    subprocess.run(
        ["docker", "context", "create", name, "--docker", f"host={host}"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    try:
        yield name, {"DOCKER_CONFIG": str(config)}
    finally:
        subprocess.run(
            ["docker", "context", "rm", "-f", name], capture_output=True, env=env, check=False
        )


@pytest.fixture
def same_engine_context(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A docker context of this engine's own socket, at the address imagectl uses."""
    with docker_context(tmp_path, DEFAULT_HOST) as made:
        yield made


def local_tags(repo_name: str) -> list[str]:
    return docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repo_name).split()


def test_a_docker_context_of_this_engine_is_a_builder_that_builds(
    tmp_path: Path, repo_name: str, same_engine_context: tuple[str, dict[str, str]]
) -> None:
    """buildx lists every docker context as a builder, but `buildx build --builder CONTEXT`
    refuses any context but the current one: imagectl runs buildx in that context."""
    root = busybox_repo(tmp_path, repo_name)
    context, env = same_engine_context
    built = imagectl(root, "build", "next", "-q", "--builder", context, env=env)
    assert built.code == 0, built.stderr
    assert "fix the increment" not in built.stderr
    versions = read_lock(root, repo_name).versions
    assert [v.version for v in versions] == [1]
    assert image_id(versions[0].tag) == versions[0].image_id
    verified = imagectl(root, "verify", "line", "-q", "--builder", context, env=env)
    assert verified.code == 0, verified.stderr
    assert "matches v1" in verified.stdout


def test_a_docker_context_of_this_engine_at_another_address_builds(
    tmp_path: Path, repo_name: str
) -> None:
    """/var/run is a link to /run: unix:///run/docker.sock is this engine under another name.
    The engine's own ID says so, where comparing addresses refused it as another engine."""
    socket = Path(DEFAULT_HOST.removeprefix("unix://")).resolve()
    assert f"unix://{socket}" != DEFAULT_HOST  # the precondition: two names, one engine
    root = busybox_repo(tmp_path, repo_name)
    with docker_context(tmp_path, f"unix://{socket}") as (context, env):
        built = imagectl(root, "build", "next", "-q", "--builder", context, env=env)
    assert built.code == 0, built.stderr
    versions = read_lock(root, repo_name).versions
    assert image_id(versions[0].tag) == versions[0].image_id


def test_an_unknown_builder_is_refused_before_building_and_not_blamed_on_the_increment(
    tmp_path: Path, repo_name: str, same_engine_context: tuple[str, dict[str, str]]
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    _, env = same_engine_context
    assert imagectl(root, "build", "next", "-q").code == 0
    lock = root / "lock" / "line.lock.toml"
    before, tags = lock.read_bytes(), local_tags(repo_name)
    missing = f"imagectl-test-{secrets.token_hex(5)}"
    result = imagectl(root, "build", "next", "-q", "--builder", missing, env=env)
    assert result.code == 1
    assert f"there is no buildx builder named {missing!r}" in result.stderr, result.stderr
    assert "fix the increment" not in result.stderr
    assert "Traceback" not in result.stderr
    assert lock.read_bytes() == before
    assert local_tags(repo_name) == tags


def test_a_builder_that_cannot_build_is_blamed_not_the_increment(
    tmp_path: Path, repo_name: str
) -> None:
    """A builder buildx knows (so check() lets it pass) whose BuildKit never answers: a remote
    driver on a port nothing listens on, made in a docker config of the test's own."""
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"DOCKER_CONFIG": str(config)}
    name = f"imagectl-test-{secrets.token_hex(5)}"
    subprocess.run(
        ["docker", "buildx", "create", "--name", name, "--driver", "remote", "tcp://127.0.0.1:9"],
        check=True, capture_output=True, env={**os.environ, **env},
    )  # fmt: skip
    lock = root / "lock" / "line.lock.toml"
    before, tags = lock.read_bytes(), local_tags(repo_name)
    try:
        result = imagectl(root, "build", "next", "-q", "--builder", name, env=env)
    finally:
        subprocess.run(
            ["docker", "buildx", "rm", name],
            capture_output=True, env={**os.environ, **env}, check=False,
        )  # fmt: skip
    assert result.code == 1
    assert (
        f"imagectl: engine error: the buildx build exited with code 1 without naming a failing "
        f"instruction: the builder {name!r} or the engine failed, not the increment."
    ) in result.stderr, result.stderr
    assert "fix the increment" not in result.stderr
    assert "Traceback" not in result.stderr
    assert lock.read_bytes() == before
    assert local_tags(repo_name) == tags
