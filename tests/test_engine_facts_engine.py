"""What the docker adapter asks the real engine once per command: its version (from /_ping's
Server header, as /version says it) and /info (asked beside other work, once)."""

from __future__ import annotations

import json
import subprocess

import pytest

from imagectl.adapters.docker_engine import DockerBuilder, DockerImages
from imagectl.adapters.engine_api import EngineApi

pytestmark = pytest.mark.engine


def test_the_version_check_names_the_version_docker_itself_reports() -> None:
    builder = DockerBuilder("buildx")
    try:
        builder.check()
    finally:
        builder.api._connection().close()
    reported = subprocess.run(
        ["docker", "version", "--format", "{{json .Server.Version}}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert builder.engine_version == json.loads(reported)
    assert f"Docker {builder.engine_version}," in builder.describe()


class CountingApi(EngineApi):
    """The real engine's API, counting the /info requests made through call()."""

    asked = 0

    def call(self, method: str, path: str, **keywords: object) -> object:  # type: ignore[override]
        if path == "/info":
            CountingApi.asked += 1
        return super().call(method, path, **keywords)  # type: ignore[arg-type]


def test_info_is_asked_once_for_the_capture_address_and_the_layer_store() -> None:
    """Protection: the cache in EngineApi.info(). Without it the capture address and the
    local layer store would each ask /info (~5 ms of dockerd's time each)."""
    api = CountingApi()
    images = DockerImages(DockerBuilder("buildx", api=api))
    try:
        images.capture_address()
        assert images.is_local()
        assert api.info()["ID"]
    finally:
        api._connection().close()
    assert CountingApi.asked == 1


def test_a_prefetched_info_is_the_same_answer() -> None:
    api = EngineApi()
    try:
        api.prefetch_info()
        prefetched = api.info()
        asked = api.json("GET", "/info")
    finally:
        api._connection().close()
    assert prefetched["ID"] == asked["ID"]
    assert prefetched["DockerRootDir"] == asked["DockerRootDir"]
