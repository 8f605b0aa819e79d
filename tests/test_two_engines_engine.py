"""Two engines: the first one (scripts/engine's) and a second dockerd the tests start in its own
network namespace (tests/second_engine.py). imagectl reaches an engine through DOCKER_HOST or a
docker context, like every docker command; what one engine built, the other gets only from the
registry, by digest."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import docker, imagectl
from .engine_helpers import assert_lock_matches_registry, busybox_repo, read_lock, remote
from .second_engine import SecondEngine, second_engine

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def engine_b(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondEngine]:
    with second_engine(tmp_path_factory.mktemp("engine-b")) as started:
        yield started


def unique_repo(tmp_path: Path, repo_name: str) -> Path:
    """A busybox line of two versions whose content is this test's own: no other test's image
    (which engine B may have pulled) can be the same image."""
    steps = {
        "0001-one": f"RUN echo '{repo_name} one' > /one\n",
        "0002-two": f"RUN echo '{repo_name} two' > /two\n",
    }
    return busybox_repo(tmp_path, repo_name, steps)


def on_a(ref: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    return done.returncode == 0


def test_v1_on_engine_a_then_v2_on_engine_b_from_the_published_v1(
    tmp_path: Path, repo_name: str, engine_b: SecondEngine
) -> None:
    root = unique_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0  # v1 on A
    assert imagectl(root, "publish", "-q").code == 0
    v1 = read_lock(root, repo_name).versions[0]
    assert not engine_b.has_image(v1.image_id)

    on_b = imagectl(root, "build", "next", "-q", env=engine_b.env)  # v2 on B
    assert on_b.code == 0, on_b.stderr
    v2 = read_lock(root, repo_name).versions[1]
    assert (v2.parent, v2.parent_digest) == (f"{repo_name}:v1@{v1.digest}", v1.digest)
    assert engine_b.has_image(f"{repo_name}:v2")
    assert not on_a(f"{repo_name}:v2")
    # built on exactly the published v1's layers (imagectl checked it; so does the test)
    layers_b = json.loads(
        engine_b.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", v2.image_id)
    )
    layers_a = json.loads(
        docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", v1.image_id)
    )
    assert layers_b[: len(layers_a)] == layers_a
    assert len(layers_b) == len(layers_a) + 1

    published = imagectl(root, "publish", "--json", "-q", env=engine_b.env)
    assert published.code == 0, published.stdout
    actions = [(p["version"], p["action"]) for p in json.loads(published.stdout)["published"]]
    assert actions == [(2, "pushed")]
    assert_lock_matches_registry(root, repo_name, 2)


def test_a_parent_only_on_the_other_engine_is_a_clear_error(
    tmp_path: Path, repo_name: str, engine_b: SecondEngine
) -> None:
    root = unique_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0  # v1 on A, never published
    v1 = read_lock(root, repo_name).versions[0]
    before = (root / "lock" / "line.lock.toml").read_bytes()
    result = imagectl(root, "build", "next", "-q", env=engine_b.env)
    assert result.code == 1
    assert (
        "\nimagectl: plan error: lock/line.lock.toml: the lock records v1 as image "
        f"{v1.image_id}, which is neither in the engine nor (published) in the registry."
    ) in result.stderr, result.stderr  # after the engine line, which names engine B
    assert "publish it from the engine that built it" in result.stderr
    assert "Traceback" not in result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert not engine_b.has_image(f"{repo_name}:v2")


def test_publish_only_from_the_engine_that_holds_the_image(
    tmp_path: Path, repo_name: str, engine_b: SecondEngine
) -> None:
    root = unique_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q", env=engine_b.env).code == 0  # v1 on B
    v1 = read_lock(root, repo_name).versions[0]
    before = (root / "lock" / "line.lock.toml").read_bytes()

    from_a = imagectl(root, "publish", "-q")
    assert from_a.code == 1
    assert f"v1 ({v1.image_id}) is not in this engine, so it cannot be published" in from_a.stderr
    assert remote(f"{repo_name}:v1") is None
    assert (root / "lock" / "line.lock.toml").read_bytes() == before

    from_b = imagectl(root, "publish", "-q", env=engine_b.env)
    assert from_b.code == 0, from_b.stderr
    assert_lock_matches_registry(root, repo_name, 1)


def context_env(tmp_path: Path, engine_b: SecondEngine) -> tuple[str, dict[str, str]]:
    """A docker context for engine B, in a docker config of the test's own (the machine's
    ~/.docker is left alone)."""
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {"DOCKER_CONFIG": str(config)}
    name = f"imagectl-test-{engine_b.id}"
    subprocess.run(
        ["docker", "context", "create", name, "--docker", f"host={engine_b.host}"],
        check=True, capture_output=True, env={**os.environ, **env},
    )  # fmt: skip
    return name, env


def test_a_docker_context_chooses_the_engine_and_its_builder(
    tmp_path: Path, repo_name: str, engine_b: SecondEngine
) -> None:
    root = unique_repo(tmp_path, repo_name)
    context, env = context_env(tmp_path, engine_b)

    # the context's own builder (docker driver) while imagectl reads the first engine: refused
    # before building, naming both engines
    mixed = imagectl(root, "build", "next", "-q", "--builder", context, env=env)
    assert mixed.code == 1
    assert mixed.stderr.startswith(
        f"imagectl: engine error: the builder {context!r} builds on the engine at "
        f"{engine_b.host}, but imagectl works with the engine at unix:///var/run/docker.sock"
    ), mixed.stderr
    assert not (root / "lock" / "line.lock.toml").exists()

    # the context for the whole command: images, builds and the builder on engine B
    chosen = imagectl(
        root, "build", "next", "-q", "--builder", context, env={**env, "DOCKER_CONTEXT": context}
    )
    assert chosen.code == 0, chosen.stderr
    assert imagectl(root, "build", "next", "-q", env={**env, "DOCKER_CONTEXT": context}).code == 0
    versions = read_lock(root, repo_name).versions
    assert [v.version for v in versions] == [1, 2]
    assert all(engine_b.has_image(v.tag) for v in versions)
    assert not any(on_a(v.tag) for v in versions)
