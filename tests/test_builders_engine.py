"""Named buildx builders (`--builder NAME`, `[build] builder` in imagectl.toml) on the real
engine: an existing one builds, verifies and checkpoints; an unknown one is a clear error
naming it, before anything is built."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from .conftest import imagectl
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
