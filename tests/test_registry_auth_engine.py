"""A registry that wants credentials: docker-registry with TLS and htpasswd, on the real engine.

Credentials reach imagectl only through docker's store (DOCKER_CONFIG, per test); these tests
check that a refused look-up stops a command before it builds or pushes anything, that the
right credentials (`docker login` or a credential helper) build and publish, and that no
secret ever shows up in output, files or any process's command line.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Result, imagectl
from .engine_helpers import busybox_repo, local_tags, read_lock
from .helpers import write
from .registry_helpers import (
    CommandLineWatch,
    OwnRegistry,
    b64,
    docker_login,
    remove_local_tags,
    running_registry,
    tag_digest,
    write_docker_auth,
)

pytestmark = pytest.mark.engine

USER = "user"
TWO_STEPS = {
    "0001-one": "# Write one\nRUN echo one >> /applied\n",
    "0002-two": "# Write two\nRUN echo two >> /applied\n",
}


@dataclass(frozen=True)
class AuthRegistry:
    registry: OwnRegistry
    password: str  # long and random, so that finding it as a substring means a leak

    @property
    def host(self) -> str:
        return self.registry.host

    def digest(self, repository: str, tag: str) -> str | None:
        """What `host/repository:tag` names, asked with the right credentials."""
        path = repository.split("/", 1)[1]
        return tag_digest(self.registry, path, tag, auth=(USER, self.password))


@pytest.fixture(scope="module")
def auth_registry(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """docker-registry with a self-signed certificate and htpasswd (bcrypt) basic auth."""
    password = uuid.uuid4().hex + uuid.uuid4().hex
    folder = tmp_path_factory.mktemp("auth-registry")
    with running_registry(folder, tls=True, user=USER, password=password) as registry:
        yield AuthRegistry(registry=registry, password=password)


@pytest.fixture
def auth_repo(auth_registry: AuthRegistry) -> Iterator[str]:
    name = f"{auth_registry.host}/imagectl-test/{uuid.uuid4().hex[:10]}"
    yield name
    remove_local_tags(name)


def config_with(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def logged_in(tmp_path: Path, auth_registry: AuthRegistry) -> dict[str, str]:
    config = config_with(tmp_path, "docker-good")
    docker_login(config, auth_registry.host, USER, auth_registry.password)
    assert "auths" in json.loads((config / "config.json").read_text())
    return {"DOCKER_CONFIG": str(config)}


def bad_credentials(tmp_path: Path, auth_registry: AuthRegistry, kind: str) -> dict[str, str]:
    config = config_with(tmp_path, f"docker-{kind}")
    if kind == "wrong":
        write_docker_auth(config, auth_registry.host, USER, "wrong-" + uuid.uuid4().hex)
    return {"DOCKER_CONFIG": str(config)}


def assert_refused_access(result: Result, host: str) -> None:
    assert result.code == 1, result.stderr
    assert "registry refused access" in result.stderr
    assert f"the registry {host} refused access to" in result.stderr
    assert f"Log in with `docker login {host}`" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("credentials", ["none", "wrong"])
def test_refused_access_stops_build_and_publish_before_they_start(
    tmp_path: Path, auth_registry: AuthRegistry, auth_repo: str, credentials: str
) -> None:
    """Protection: a 401 from the tag look-up is an auth error that stops the command, never
    "the tag is absent". Read as absent, `build next` would build and tag v1 and `publish`
    would start `docker push` ("pushing ..." on stderr)."""
    host = auth_registry.host
    root = busybox_repo(tmp_path, auth_repo, TWO_STEPS)
    bad = bad_credentials(tmp_path, auth_registry, credentials)

    build = imagectl(root, "build", "next", env=bad)
    assert_refused_access(build, host)
    assert "building v1" not in build.stderr
    assert not (root / "lock" / "line.lock.toml").exists()
    assert local_tags(auth_repo) == {}

    good = logged_in(tmp_path, auth_registry)
    built = imagectl(root, "build", "next", "-q", env=good)
    assert built.code == 0, built.stderr
    lock = (root / "lock" / "line.lock.toml").read_bytes()

    publish = imagectl(root, "publish", env=bad)
    assert_refused_access(publish, host)
    assert f"pushing {auth_repo}:v1" not in publish.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == lock
    assert auth_registry.digest(auth_repo, "v1") is None


def credential_helper(tmp_path: Path, auth_registry: AuthRegistry) -> dict[str, str]:
    """docker's config naming a credential helper for the registry, the helper on PATH: it
    answers `get` for the host read on stdin, as docker-credential-* programs do."""
    config = config_with(tmp_path, "docker-helper")
    bin_dir = config_with(tmp_path, "bin")
    answer = write(
        tmp_path / "helper-answer.json",
        json.dumps({"ServerURL": auth_registry.host, "Username": USER,
                    "Secret": auth_registry.password}),
    )  # fmt: skip
    helper = write(
        bin_dir / "docker-credential-imagectltest",
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read -r host\n"
        f'[ "$host" = "{auth_registry.host}" ] || {{ echo "credentials not found"; exit 1; }}\n'
        f"cat {answer}\n",
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    write(
        config / "config.json",
        json.dumps({"credHelpers": {auth_registry.host: "imagectltest"}}),
    )
    return {"DOCKER_CONFIG": str(config), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("store", ["docker login", "credential helper"])
def test_right_credentials_build_and_publish_and_a_rerun_is_a_noop(
    tmp_path: Path, auth_registry: AuthRegistry, auth_repo: str, store: str
) -> None:
    """Protection: look-ups answer the registry's basic-auth challenge with the credentials of
    docker's store (its `auths` or the credential helper it names). Without that, every
    look-up is refused (401) and nothing is built or published."""
    env = (
        logged_in(tmp_path, auth_registry)
        if store == "docker login"
        else credential_helper(tmp_path, auth_registry)
    )
    root = busybox_repo(tmp_path, auth_repo, TWO_STEPS)
    built = imagectl(root, "build", "next", "--all", "-q", env=env)
    assert built.code == 0, built.stderr
    published = imagectl(root, "publish", "--json", "-q", env=env)
    assert published.code == 0, published.stderr
    actions = [(p["version"], p["action"]) for p in json.loads(published.stdout)["published"]]
    assert actions == [(1, "pushed"), (2, "pushed")]
    lock = read_lock(root, auth_repo)
    for version in lock.versions:
        assert version.digest.startswith("sha256:")
        assert auth_registry.digest(auth_repo, f"v{version.version}") == version.digest

    before = (root / "lock" / "line.lock.toml").read_bytes()
    again = imagectl(root, "publish", env=env)
    assert again.code == 0, again.stderr
    assert "nothing to publish" in again.stdout
    assert "pushing" not in again.stderr
    assert (root / "lock" / "line.lock.toml").read_bytes() == before
    rebuilt = imagectl(root, "build", "next", env=env)
    assert rebuilt.code == 0, rebuilt.stderr
    assert "building" not in rebuilt.stderr


def commands_of(repository: str) -> list[tuple[str, ...]]:
    """Every command a user would run on a built line, in human and JSON form."""
    runs: list[tuple[str, ...]] = [
        ("build", "next", "--all"),
        ("publish", "--dry-run"),
        ("publish",),
        ("publish", "--json"),
        ("build", "next", "--json"),
        ("history", "line"),
        ("history", "line", "--json"),
        ("plan",),
        ("plan", "--json"),
        ("squash",),
        ("squash", "--check", "--json"),
        ("resolve", f"{repository}:v1"),
        ("resolve", f"{repository}:v1", "--json"),
        ("render", "line", "1"),
        ("diff", "line", "1", "2", "--json"),
    ]
    help_text = imagectl(Path("."), "--help").stdout
    if "audit" in help_text:
        runs += [("audit",), ("audit", "--json")]
    return runs


def test_no_secret_leaks_into_output_files_or_command_lines(
    tmp_path: Path, auth_registry: AuthRegistry, auth_repo: str
) -> None:
    """Protection: credentials are read from docker's store into memory only. Any message that
    quoted the Authorization header or config.json, a lock or reference that kept it, or a
    process started with the secret as an argument (`docker login -p`, `curl -u`, a helper
    called with it) fails here."""
    wrong = "wrong-" + uuid.uuid4().hex + uuid.uuid4().hex
    secrets = (
        auth_registry.password,
        b64(f"{USER}:{auth_registry.password}"),
        wrong,
        b64(f"{USER}:{wrong}"),
    )
    root = busybox_repo(tmp_path, auth_repo, TWO_STEPS)
    wrong_config = config_with(tmp_path, "docker-wrong")
    write_docker_auth(wrong_config, auth_registry.host, USER, wrong)
    bad = {"DOCKER_CONFIG": str(wrong_config)}
    good = logged_in(tmp_path, auth_registry)
    runs = commands_of(auth_repo)

    results: list[tuple[tuple[str, ...], Result]] = []
    with CommandLineWatch(secrets) as watch:
        refused_runs: list[tuple[str, ...]] = [("build", "next"), ("build", "next", "--json")]
        if ("audit",) in runs:
            refused_runs.append(("audit",))
        for args in refused_runs:
            results.append((args, imagectl(root, *args, env=bad)))
        refused = results[0][1]
        assert_refused_access(refused, auth_registry.host)
        for args in runs:
            result = imagectl(root, *args, env=good)
            assert result.code == 0, (args, result.stderr)
            results.append((args, result))
        results.append((("publish",), imagectl(root, "publish", env=bad)))  # nothing to do

    # the watch saw the runs: imagectl itself and its builds; its pushes are Engine API
    # requests of imagectl's own process (the credentials travel in the request header on the
    # engine's socket), so no process exists whose command line could hold them
    assert watch.samples > 100, watch.samples
    assert watch.saw("-m imagectl -C")
    assert not watch.saw("docker push")
    assert any(
        watch.saw(build) for build in ("docker-buildx build", "docker buildx build", "docker build")
    )
    assert watch.hits() == []

    for args, result in results:
        for secret in secrets:
            assert secret not in result.stdout, args
            assert secret not in result.stderr, args
    written = [
        path
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts
    ]
    names = {path.relative_to(root).as_posix() for path in written}
    assert {"lock/line.lock.toml", "lock/line.reference.Dockerfile"} <= names, names
    assert any(name.startswith(".imagectl/") for name in names), names
    for path in written:
        text = path.read_bytes().decode("utf-8", "replace")
        for secret in secrets:
            assert secret not in text, path
    assert all(v.digest.startswith("sha256:") for v in read_lock(root, auth_repo).versions)
