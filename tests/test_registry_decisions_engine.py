"""The decisions around a push and a build, on the real engine with registries of our own.

A proxy in front of a real docker-registry answers like a registry with immutable tags (ECR's
400 TAG_INVALID, Harbor's 412 PRECONDITION) or serves another image after a push; real images
that do not sit on their parent's layers, and real images 98 to 125 layers deep, go through
`build next`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import BUSYBOX, docker, image_id, imagectl
from .engine_helpers import busybox_repo, kill_when_paused, layers, local_tags, read_lock
from .helpers import git_init, make_line, write
from .registry_helpers import (
    OwnRegistry,
    Proxy,
    Refusal,
    ecr_refusal,
    harbor_refusal,
    remove_local_tags,
    running_proxy,
    running_registry,
    tag_digest,
)

pytestmark = pytest.mark.engine

TWO_STEPS = {
    "0001-one": "# Write one\nRUN echo one >> /applied\n",
    "0002-two": "# Write two\nRUN echo two >> /applied\n",
}


@pytest.fixture(scope="module")
def backend(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRegistry]:
    """A plain-HTTP docker-registry of this module's own."""
    with running_registry(tmp_path_factory.mktemp("backend"), tls=False) as registry:
        yield registry


@pytest.fixture
def proxy(backend: OwnRegistry) -> Iterator[Proxy]:
    with running_proxy(backend) as running:
        yield running


@pytest.fixture
def names(backend: OwnRegistry, proxy: Proxy) -> Iterator[Callable[[str], str]]:
    """Repositories for one test: names("proxy") -> localhost:PROXY/imagectl-test/<id>, the
    same repository as the backend names it with names("backend"); local tags removed after."""
    path = f"imagectl-test/{uuid.uuid4().hex[:10]}"
    made: list[str] = []

    def name(where: str) -> str:
        host = proxy.host if where == "proxy" else backend.host
        made.append(f"{host}/{path}")
        return f"{host}/{path}"

    yield name
    for repository in made:
        remove_local_tags(repository)


def repository_path(repository: str) -> str:
    return repository.split("/", 1)[1]


def push_to_backend(image: str, repository: str, tag: str, backend: OwnRegistry) -> str:
    """Put `image` under `repository:tag` straight into the backend (as another publisher
    would); returns the manifest digest the backend serves for it."""
    ref = f"{backend.host}/{repository_path(repository)}:{tag}"
    docker("tag", image, ref)
    docker("push", "-q", ref)
    docker("rmi", "--no-prune", ref)
    digest = tag_digest(backend, repository_path(repository), tag)
    assert digest is not None
    return digest


def refusal_of(kind: str, repository: str) -> Refusal:
    return ecr_refusal("v1") if kind == "ecr" else harbor_refusal(repository_path(repository), "v1")


# -- an immutable registry refuses the push ---------------------------------------------------


@pytest.mark.parametrize("kind", ["ecr", "harbor"])
def test_identical_image_refused_as_immutable_is_recorded(
    tmp_path: Path, backend: OwnRegistry, proxy: Proxy, names: Callable[[str], str], kind: str
) -> None:
    """Another publisher pushed this very image between our look-up and our push; the
    immutable registry refuses our push. Protection: a push refused as immutable
    (push_failure's markers -> TagImmutableError) is followed by a second look-up, and the same
    image there is success ("recorded"). Without it publish fails on v1 and v2 stays unpushed."""
    repo = names("proxy")
    root = busybox_repo(tmp_path, repo, TWO_STEPS)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    theirs = push_to_backend(f"{repo}:v1", repo, "v1", backend)
    proxy.policy.refusal = refusal_of(kind, repo)
    proxy.policy.hidden_until_put = {"v1"}

    result = imagectl(root, "publish")
    assert result.code == 0, result.stderr
    refusal = proxy.policy.refusal
    v1_manifest = f"/v2/{repository_path(repo)}/manifests/v1"
    assert (v1_manifest, refusal.status) in proxy.policy.manifest_puts()  # the push was refused
    out = result.stdout.splitlines()
    assert out[0] == f"line: recorded {repo}:v1@{theirs}", result.stdout
    assert out[1].startswith(f"line: pushed {repo}:v2@sha256:"), result.stdout
    lock = read_lock(root, repo)
    assert lock.versions[0].digest == theirs
    assert lock.versions[1].digest == tag_digest(backend, repository_path(repo), "v2")


@pytest.mark.parametrize("kind", ["ecr", "harbor"])
def test_another_image_refused_as_immutable_is_a_tag_conflict(
    tmp_path: Path, backend: OwnRegistry, proxy: Proxy, names: Callable[[str], str], kind: str
) -> None:
    """Another publisher pushed a different image under v1 between our look-up and our push.
    Protection: after an immutable refusal the image under the tag is compared with the
    recorded one; another image is a tag conflict naming both, the lock is unchanged and the
    line stops (v2 is not pushed). Without the comparison the refusal would be read as
    "already published" and the lock would record someone else's digest."""
    repo = names("proxy")
    root = busybox_repo(tmp_path, repo, TWO_STEPS)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    ours = image_id(f"{repo}:v1")
    foreign = push_to_backend(BUSYBOX, repo, "v1", backend)
    proxy.policy.refusal = refusal_of(kind, repo)
    proxy.policy.hidden_until_put = {"v1"}
    before = (root / "lock" / "line.lock.toml").read_bytes()

    result = imagectl(root, "publish")
    assert result.code == 1, result.stderr
    v1_manifest = f"/v2/{repository_path(repo)}/manifests/v1"
    assert (v1_manifest, proxy.policy.refusal.status) in proxy.policy.manifest_puts()
    assert (
        f"imagectl: tag conflict: the registry already has {repo}:v1 as {foreign} (image "
        f"{image_id(BUSYBOX)}), but the lock records image {ours} for v1." in result.stderr
    ), result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert tag_digest(backend, repository_path(repo), "v2") is None


def test_rerun_after_a_kill_records_without_pushing_into_an_immutable_tag(
    tmp_path: Path, backend: OwnRegistry, proxy: Proxy, names: Callable[[str], str]
) -> None:
    """Killed between the push of v1 and the lock write (IMAGECTL_PAUSE_AT=after-push), then
    run again against a registry that has become immutable. Protection: the look-up before
    each push records a tag that already names the recorded image, without pushing it again
    (no manifest PUT of v1 reaches the registry on the rerun)."""
    repo = names("proxy")
    root = busybox_repo(tmp_path, repo, TWO_STEPS)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    kill_when_paused(root, ("publish",), "after-push")
    assert [v.digest for v in read_lock(root, repo).versions] == ["", ""]
    pushed = tag_digest(backend, repository_path(repo), "v1")
    assert pushed is not None
    proxy.policy.refusal = ecr_refusal("v1")
    puts_before = len(proxy.policy.manifest_puts())

    result = imagectl(root, "publish")
    assert result.code == 0, result.stderr
    assert f"pushing {repo}:v1" not in result.stderr
    v1_manifest = f"/v2/{repository_path(repo)}/manifests/v1"
    assert v1_manifest not in [path for path, _ in proxy.policy.manifest_puts()[puts_before:]]
    assert result.stdout.splitlines()[0] == f"line: recorded {repo}:v1@{pushed}"
    assert read_lock(root, repo).versions[0].digest == pushed


# -- the read-back after a push ---------------------------------------------------------------


def test_read_back_naming_another_image_is_not_recorded(
    tmp_path: Path, backend: OwnRegistry, proxy: Proxy, names: Callable[[str], str]
) -> None:
    """Right after our push the tag names another image (the registry overwrote it: another
    publisher, the same moment). Protection: the read-back after each push compares the tag's
    digest and image with what was pushed; without it the lock would record our digest for a
    tag that serves someone else's image."""
    repo = names("proxy")
    root = busybox_repo(tmp_path, repo, TWO_STEPS)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    other = push_to_backend(BUSYBOX, repo, "other", backend)
    proxy.policy.read_back = {"v1": "other"}
    before = (root / "lock" / "line.lock.toml").read_bytes()

    result = imagectl(root, "publish")
    assert result.code == 1, result.stderr
    assert f"pushing {repo}:v1" in result.stderr
    assert (
        f"the registry names {other} (image {image_id(BUSYBOX)}): another publisher pushed the "
        "same tag at the same moment. The lock does not record it." in result.stderr
    ), result.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    assert [v.digest for v in read_lock(root, repo).versions] == ["", ""]
    assert tag_digest(backend, repository_path(repo), "v2") is None  # the line stopped


# -- errors that say what the command had done ---------------------------------------------------


def test_a_registry_failure_at_v2_says_v1_was_built_and_recorded(
    tmp_path: Path, proxy: Proxy, names: Callable[[str], str]
) -> None:
    """The registry fails (503) looking up v2's tag after v1 was built, tagged and recorded.
    Protection: the hint is built from what the command did; a fixed "nothing was changed"
    would be false here. The local registry's start-up advice is not given for this one."""
    repo = names("proxy")
    root = busybox_repo(tmp_path, repo, TWO_STEPS)
    proxy.policy.failing_reads = {"v2": 503}
    result = imagectl(root, "build", "next", "--all")
    assert result.code == 1
    assert [v.version for v in read_lock(root, repo).versions] == [1]
    assert "So far: v1 of line was built and recorded; v2 was not recorded." in result.stderr
    assert "nothing was changed" not in result.stderr.lower()
    assert "scripts/engine up" not in result.stderr
    as_json = imagectl(root, "build", "next", "--all", "--json")
    (row,) = json.loads(as_json.stdout)["lines"]
    assert row["error"]["done"] == [  # the second run built nothing before v2 failed again
        "no version of line was built by this command; v2 was not recorded"
    ]


def test_a_failed_read_back_after_a_push_says_the_tag_was_pushed(
    tmp_path: Path, backend: OwnRegistry, proxy: Proxy, names: Callable[[str], str]
) -> None:
    """The push of v1 reached the registry, then its read-back failed (500): the registry
    serves v1 while the lock does not record it. The error says so, and a rerun records it."""
    repo = names("proxy")
    root = busybox_repo(tmp_path, repo, TWO_STEPS)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    proxy.policy.failing_reads_after_put = {"v1": 500}
    result = imagectl(root, "publish")
    assert result.code == 1
    served = tag_digest(backend, repository_path(repo), "v1")
    assert served is not None  # the registry does serve it
    assert f"{repo}:v1 was pushed and the registry may serve it now" in result.stderr
    assert "So far: nothing of line was pushed or recorded before v1; " in result.stderr
    assert "nothing was changed" not in result.stderr.lower()
    proxy.policy.failing_reads_after_put = {}
    again = imagectl(root, "publish")
    assert again.code == 0, again.stderr
    assert [v.digest for v in read_lock(root, repo).versions] == [served, tag_digest(
        backend, repository_path(repo), "v2")]  # fmt: skip


# -- a built image that does not sit on its parent's layers -------------------------------------


def test_image_not_built_on_the_parents_layers_is_refused(
    tmp_path: Path, backend: OwnRegistry, names: Callable[[str], str]
) -> None:
    """The base tag names image A in the engine (busybox, re-tagged by hand, no digest in the
    base's repository) and image B in the registry; imagectl pins the base by the registry's
    digest, so BuildKit builds on B while the parent imagectl resolved is A. Protection:
    check_built_on_parent compares the new image's layers with the parent's; without it v1 is
    tagged and recorded as built on A."""
    base = f"{names('backend')}-base"
    context = write(
        tmp_path / "other-base" / "Dockerfile",
        f"FROM {BUSYBOX} AS files\nFROM scratch\nCOPY --from=files / /\n"
        "RUN echo other > /base-marker\n",
    ).parent
    docker("buildx", "build", "-q", "-t", f"{base}:latest", str(context))
    docker("push", "-q", f"{base}:latest")
    other = image_id(f"{base}:latest")
    docker("tag", BUSYBOX, f"{base}:latest")  # the engine's tag now names busybox
    assert layers(other)[0] != layers(BUSYBOX)[0]

    repo = names("backend")
    root = tmp_path / "repo"
    make_line(root, "line", repository=repo, base=f"{base}:latest", increments=TWO_STEPS)
    git_init(root)
    try:
        result = imagectl(root, "build", "next")
    finally:
        remove_local_tags(base)
        docker("rmi", "--no-prune", other, check=False)
    assert result.code == 1, result.stderr
    assert "building v1" in result.stderr  # refused after the build, before the tag
    assert "was not built on its locked parent" in result.stderr, result.stderr
    assert "its layers do not start with the parent's layers" in result.stderr
    assert not (root / "lock" / "line.lock.toml").exists()
    assert local_tags(repo) == {}


# -- the layer limit ------------------------------------------------------------------------------


def deep_image(tmp_path: Path, repository: str, count: int) -> str:
    """busybox plus one tiny COPY layer per step: an image `count` layers deep, pushed."""
    context = tmp_path / f"deep-{count}"
    context.mkdir()
    steps = [f"FROM {BUSYBOX}"]
    for n in range(1, count):
        name = f"f{n:03d}"
        write(context / name, f"{n}\n")
        os.utime(context / name, (0, 0))
        steps.append(f"COPY {name} /layers/{name}")
    write(context / "Dockerfile", "\n".join(steps) + "\n")
    tag = f"{repository}:{count}"
    docker("buildx", "build", "-q", "-t", tag, str(context))
    assert len(layers(tag)) == count
    docker("push", "-q", tag)
    return tag


def layer_line(tmp_path: Path, name: str, repository: str, base: str) -> Path:
    root = tmp_path / name
    make_line(root, "line", repository=repository, base=base, increments=TWO_STEPS)
    git_init(root)
    return root


def test_warning_from_100_layers(
    tmp_path: Path, backend: OwnRegistry, names: Callable[[str], str]
) -> None:
    """Protection: check_layer_budget warns from 100 layers (v2), not before (v1 has 99)."""
    deep = f"{names('backend')}-deep"
    try:
        base = deep_image(tmp_path, deep, 98)
        repo = names("backend")
        root = layer_line(tmp_path, "repo", repo, base)
        result = imagectl(root, "build", "next", "--all")
    finally:
        remove_local_tags(deep)
    assert result.code == 0, result.stderr
    assert "warning: v1" not in result.stderr
    assert (
        "line: warning: v2 has 100 of at most 125 layers; run `imagectl checkpoint line` soon."
        in result.stderr
    ), result.stderr
    assert [v.layers for v in read_lock(root, repo).versions] == [99, 100]


def test_a_parent_at_the_layer_limit_is_refused_before_building(
    tmp_path: Path, backend: OwnRegistry, names: Callable[[str], str]
) -> None:
    """Protection: check_parent_depth refuses to build on a parent that has 125 layers, before
    the build (without it the build starts and Docker fails with `max depth exceeded`); a
    124-layer parent still takes one more increment (v1 has 125 layers)."""
    deep = f"{names('backend')}-deep"
    try:
        at_limit = deep_image(tmp_path, deep, 125)
        below = deep_image(tmp_path, deep, 124)
        full_repo = names("backend") + "-full"
        full = layer_line(tmp_path, "full", full_repo, at_limit)
        refused = imagectl(full, "build", "next")

        repo = names("backend")
        root = layer_line(tmp_path, "repo", repo, below)
        first = imagectl(root, "build", "next")
        second = imagectl(root, "build", "next")
    finally:
        remove_local_tags(deep)
        remove_local_tags(full_repo)
    assert refused.code == 1, refused.stderr
    assert "building v1" not in refused.stderr
    base_digest = tag_digest(backend, repository_path(deep), "125")
    assert (
        f"imagectl: plan error: {at_limit}@{base_digest} already has 125 "
        "layers, Docker's limit; no increment can go on top of it." in refused.stderr
    ), refused.stderr
    assert "imagectl checkpoint line" in refused.stderr
    assert not (full / "lock" / "line.lock.toml").exists()

    assert first.code == 0, first.stderr
    assert "line: warning: v1 has 125 of at most 125 layers" in first.stderr
    assert [v.layers for v in read_lock(root, repo).versions] == [125]
    assert second.code == 1, second.stderr
    assert "building v2" not in second.stderr
    assert f"{repo}:v1 already has 125 layers, Docker's limit" in second.stderr, second.stderr
    assert [v.layers for v in read_lock(root, repo).versions] == [125]
