"""Which docker context buildx runs in for a named builder, read from `docker buildx inspect`
and what a failed build is blamed on (pure functions of the docker adapter; no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagectl.adapters import docker_config
from imagectl.adapters.docker_config import buildx_plugin
from imagectl.adapters.docker_engine import (
    DockerBuilder,
    build_failure,
    builder_context,
    buildx_command,
    inspected_fields,
    same_engine,
    server_version,
)
from imagectl.core.errors import BuildError, EngineError
from imagectl.core.model import Builder

# `docker buildx inspect NAME` (buildx 0.13) for a docker context, and for a builder of its own
CONTEXT_BUILDER = """Name:   ctx
Driver: docker

Nodes:
Name:             ctx
Endpoint:         ctx
Status:           running
BuildKit version: v0.0.0+unknown
Platforms:        linux/amd64, linux/386
Labels:
 org.mobyproject.buildkit.worker.moby.host-gateway-ip: 172.17.0.1
"""
CONTAINER_BUILDER = """Name:          farm
Driver:        docker-container
Last Activity: 2026-12-01 10:00:00 +0000 UTC

Nodes:
Name:      farm0
Endpoint:  unix:///var/run/docker.sock
Status:    running
"""


def test_a_builder_of_the_docker_driver_is_its_context() -> None:
    fields = inspected_fields(CONTEXT_BUILDER)
    assert fields["Driver"] == "docker"
    assert builder_context(fields) == "ctx"


def test_a_builder_of_another_driver_runs_in_the_current_context() -> None:
    fields = inspected_fields(CONTAINER_BUILDER)
    assert fields["Endpoint"] == "unix:///var/run/docker.sock"  # the first colon splits
    assert builder_context(fields) == ""


def _plugin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    plugin = folder / "docker-buildx"
    plugin.write_text("#!/bin/sh\n", encoding="utf-8")
    plugin.chmod(0o755)
    return plugin


def test_buildx_runs_in_the_builders_context_only_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    mine = _plugin(tmp_path / "cli-plugins")
    assert buildx_command("ctx") == ["docker", "--context", "ctx", "buildx"]
    assert buildx_command("") == [str(mine)]


def test_the_plugin_is_the_one_the_docker_cli_would_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$DOCKER_CONFIG/cli-plugins first, then the config's cliPluginsExtraDirs, then the
    system folders; a file that is not executable is passed over, as docker does."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "config"))
    extra = _plugin(tmp_path / "extra")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text(
        json.dumps({"cliPluginsExtraDirs": [str(tmp_path / "extra")]}), encoding="utf-8"
    )
    assert buildx_plugin() == extra
    own = _plugin(tmp_path / "config" / "cli-plugins")
    assert buildx_plugin() == own
    own.chmod(0o644)
    assert buildx_plugin() == extra


def test_without_a_plugin_file_buildx_goes_through_the_docker_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setattr(docker_config, "SYSTEM_PLUGIN_DIRS", ())
    assert buildx_command("") == ["docker", "buildx"]


def test_the_build_command_names_both_the_context_and_the_builder(tmp_path: Path) -> None:
    builder = DockerBuilder("buildx", named="ctx")
    builder.context = "ctx"  # what check() finds for a docker context
    command, _ = builder._command(
        tmp_path / "Dockerfile", tmp_path, tmp_path / "iid", None, no_cache=False, labels={}
    )
    assert command[:7] == ["docker", "--context", "ctx", "buildx", "build", "--builder", "ctx"]
    plain = DockerBuilder("buildx")
    command, _ = plain._command(
        tmp_path / "Dockerfile", tmp_path, tmp_path / "iid", None, no_cache=False, labels={}
    )
    assert command[:2] == [*buildx_command(""), "build"]
    assert "--builder" not in command


STEP_FAILED = """#6 [2/2] RUN false
#6 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1
------
Dockerfile:2
--------------------
   1 |     FROM localhost:5000/busybox:latest
   2 | >>> RUN false
--------------------
ERROR: failed to solve: process "/bin/sh -c false" did not complete successfully: exit code: 1"""
BUILDER_FAILED = """#0 building with "farm" instance using remote driver
 > [internal] waiting for connection:
------
ERROR: context deadline exceeded"""


def failure(output: str, *, builder: Builder = "buildx", named: str = "farm") -> EngineError:
    return build_failure(
        builder=builder, named=named, command=("docker",), code=1, output=output,
        dockerfile="Dockerfile",
    )  # fmt: skip


def test_a_failing_instruction_is_the_increments_to_fix() -> None:
    found = failure(STEP_FAILED)
    assert isinstance(found, BuildError)
    assert found.dockerfile_line == 2
    assert "fix the increment" in found.hint


def test_a_buildx_failure_naming_no_instruction_is_the_builders() -> None:
    found = failure(BUILDER_FAILED)
    assert not isinstance(found, BuildError)
    assert found.kind == "engine error"
    assert "the builder 'farm' or the engine failed, not the increment" in found.message
    assert "fix the increment" not in f"{found.message} {found.hint}"
    assert "`docker buildx inspect farm`" in found.hint
    assert (found.exit_code, found.details) == (1, BUILDER_FAILED)
    current = failure(BUILDER_FAILED, named="")
    assert "the current buildx builder or the engine failed" in current.message


def test_the_legacy_builder_names_no_line_and_its_failures_stay_the_increments() -> None:
    found = failure("The command '/bin/sh -c false' returned a non-zero code: 1", builder="legacy")
    assert isinstance(found, BuildError)
    assert found.dockerfile_line is None


def test_engines_are_the_same_when_their_ids_are() -> None:
    assert same_engine({"ID": "e1", "Name": "a"}, {"ID": "e1", "Name": "b"})
    assert not same_engine({"ID": "e1"}, {"ID": "e2"})
    assert not same_engine({}, {})  # no ID proves nothing
    assert not same_engine(None, {"ID": "e1"})


def test_the_engine_version_comes_from_the_server_header_of_docker_only() -> None:
    """What check() reads from /_ping; anything else (another engine's API) is "" and check()
    asks /version instead."""
    assert server_version("Docker/26.1.5+dfsg1 (linux)") == "26.1.5+dfsg1"
    assert server_version("Docker/27.0.0") == "27.0.0"
    assert server_version("Libpod/5.0.2 (linux)") == ""
    assert server_version("") == ""
