"""Which docker context buildx runs in for a named builder, read from `docker buildx inspect`
(pure functions of the docker adapter; no engine)."""

from __future__ import annotations

from pathlib import Path

from imagectl.docker_engine import (
    DockerBuilder,
    builder_context,
    buildx_command,
    inspected_fields,
)

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


def test_buildx_runs_in_the_builders_context_only_when_there_is_one() -> None:
    assert buildx_command("ctx") == ["docker", "--context", "ctx", "buildx"]
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
    assert command[:3] == ["docker", "buildx", "build"]
    assert "--builder" not in command
