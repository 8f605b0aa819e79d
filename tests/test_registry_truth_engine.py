"""The registry read right, on the real engine and registry: names that look like errors, a
burned tag skipped, `audit` of what the registry serves, a digest no lock knows, the engine
named, and an overwritten parent tag reported."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from .conftest import BUSYBOX, docker, imagectl
from .engine_helpers import busybox_repo, read_lock

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("word", ["tls", "ca-certificates", "timeout-handler", "unauthorized"])
def test_repositories_named_like_errors_build_and_publish(
    tmp_path: Path, repo_name: str, word: str
) -> None:
    # The "tag not found yet" answer for such a name once read as a TLS/network/auth failure.
    name = f"{repo_name}/{word}"
    root = busybox_repo(tmp_path, name, {"0001-one": "RUN echo one > /one\n"})
    built = imagectl(root, "build", "next", "-q")
    assert built.code == 0, built.stderr
    published = imagectl(root, "publish", "-q")
    assert published.code == 0, published.stderr
    assert read_lock(root, name).versions[0].digest.startswith("sha256:")
    docker("rmi", f"{name}:v1", check=False)


def push_foreign(tag: str, tmp_path: Path, marker: str = "foreign") -> str:
    """Someone else's image under `tag` in the registry; returns its manifest digest."""
    context = tmp_path / f"foreign-{marker}"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {marker} > /who\n")
    docker("buildx", "build", "-q", "--load", "-t", tag, str(context))
    docker("push", "-q", tag)
    digest = docker("image", "inspect", "--format", "{{index .RepoDigests 0}}", tag)
    docker("rmi", tag)  # gone locally: only the registry holds it, as after a push elsewhere
    return digest.split("@", 1)[1]


def test_a_burned_tag_is_refused_before_building_then_skipped(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "-q").code == 0
    foreign = push_foreign(f"{repo_name}:v2", tmp_path)
    refused = imagectl(root, "build", "next", "-q")
    assert refused.code == 1
    assert "building v2" not in refused.stderr  # refused before building
    assert f"already holds {repo_name}:v2 as {foreign}" in refused.stderr
    assert "imagectl skip line 2" in refused.stderr
    skipped = imagectl(root, "skip", "line", "2", "--reason", "pushed by hand", "--json")
    assert skipped.code == 0, skipped.stderr
    assert json.loads(skipped.stdout)["foreign_digest"] == foreign
    rebuilt = imagectl(root, "build", "next", "--all", "-q")
    assert rebuilt.code == 0, rebuilt.stderr
    lock = read_lock(root, repo_name)
    # the three increments became v1, v3 and v4: v2 is the burned tag, v3 sits on v1
    assert [(v.version, v.skipped) for v in lock.versions] == [
        (1, False),
        (2, True),
        (3, False),
        (4, False),
    ]
    assert lock.versions[2].parent == f"{repo_name}:v1"
    assert lock.versions[2].increment.endswith("0002-two.Dockerfile.j2")
    history = imagectl(root, "history", "line")
    assert "(skipped)" in history.stdout
    assert "pushed by hand" in history.stdout
    assert imagectl(root, "publish", "-q").code == 0
    # publish never touched the foreign tag; resolve, squash, diff pass over v2
    assert docker("manifest", "inspect", "--insecure", "-v", f"{repo_name}:v2").count(foreign)
    assert imagectl(root, "resolve", f"{repo_name}:v1").stdout.startswith(f"{repo_name}:v4@")
    assert imagectl(root, "squash", "--check").code == 0
    assert imagectl(root, "diff", "line", "1", "3").code == 0
    assert "was skipped" in imagectl(root, "diff", "line", "1", "2").stderr


def delete_manifest(reference: str) -> None:
    """Delete a manifest by digest through the registry API (the engine's registry allows it)."""
    repo, _, digest = reference.partition("@")
    path = repo.split("/", 1)[1]
    request = urllib.request.Request(
        f"http://127.0.0.1:5000/v2/{path}/manifests/{digest}", method="DELETE"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202


def test_audit_finds_tampered_missing_and_deleted_tags(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    assert imagectl(root, "publish", "-q").code == 0
    clean = imagectl(root, "audit")
    assert clean.code == 0, clean.stderr
    assert "3 published versions checked, 0 problems" in clean.stdout
    v1, v2, v3 = read_lock(root, repo_name).versions
    foreign = push_foreign(v1.tag, tmp_path)  # overwrites v1: distribution does so silently
    delete_manifest(f"{repo_name}@{v3.digest}")  # the digest and its tag go
    report = imagectl(root, "audit", "--json")
    assert report.code == 3, report.stderr
    found = {f["version"]: f for f in json.loads(report.stdout)["findings"]}
    assert found[1]["status"] == "tampered"
    assert (found[1]["recorded"], found[1]["served"]) == (v1.digest, foreign)
    assert found[2]["status"] == "ok"
    assert found[3]["status"] == "deleted"
    human = imagectl(root, "audit")
    assert f"TAMPERED {v1.tag} names {foreign}, the lock records {v1.digest}" in human.stdout
    # the overwritten parent tag is reported by build and publish too, and resolve explains
    warned = imagectl(root, "publish", "-q")
    assert f"warning: the registry's {v3.tag} now names nothing" in warned.stderr
    unknown = imagectl(root, "resolve", f"{repo_name}@{foreign}")
    assert unknown.code == 1
    assert f"the registry's {v1.tag} names it now: that tag was overwritten" in unknown.stderr
    del v2


def test_build_names_the_engine_and_records_its_version(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name)
    result = imagectl(root, "build", "next", "-q")
    assert result.code == 0, result.stderr
    version = docker("version", "--format", "{{.Server.Version}}")
    assert f"engine unix:///var/run/docker.sock, Docker {version}, builder buildx" in result.stderr
    assert read_lock(root, repo_name).versions[0].engine == version
    other = imagectl(root, "build", "next", "-q", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert other.code == 1
    assert "engine (unix:///nonexistent.sock) does not answer" in other.stderr
    assert "scripts/engine" not in other.stderr  # only the local default engine gets that hint
