"""The labels of every version (pure, and through the build pipeline with fakes): what each key
says, that none is left from the parent, the source URL without credentials, the reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.app import workflows
from imagectl.app.project import Project, open_project
from imagectl.core.errors import ConfigError
from imagectl.core.labels import EPOCH, LABEL_KEYS, source_url
from imagectl.core.linerenders import reference_text
from imagectl.core.linestate import load_state
from imagectl.core.ports import ImageConfig, ImageInfo, RemoteImage

from .fakes import FakeBuilder, FakeGit, FakeImages, FakeRegistry
from .helpers import make_line, write

BASE = "localhost:5000/b:1"
BASE_DIGEST = "sha256:" + "b" * 64
REPO = "localhost:5000/t/line"
TOKEN = "s3cret-token"


@pytest.mark.parametrize(
    ("remote", "source"),
    [
        ("https://github.com/org/images.git", "https://github.com/org/images"),
        (f"https://bot:{TOKEN}@github.com/org/images.git", "https://github.com/org/images"),
        (f"https://{TOKEN}@gitlab.example.com:8443/org/images/", "https://gitlab.example.com:8443/org/images"),
        ("git@github.com:org/images.git", "https://github.com/org/images"),
        ("ssh://git@git.example.com:2222/org/images.git", "https://git.example.com/org/images"),
        (f"https://host/org/images?private_token={TOKEN}#x", "https://host/org/images"),
        ("/srv/git/images.git", ""),
        ("file:///srv/git/images.git", ""),
        ("", ""),
    ],
)  # fmt: skip
def test_the_source_label_is_the_remote_without_credentials(remote: str, source: str) -> None:
    assert source_url(remote) == source


class Uncommitted(FakeGit):
    def commit_of(self, path: Path) -> str:
        return "uncommitted"


def setup(tmp_path: Path, git: FakeGit) -> tuple[Project, FakeImages]:
    root = tmp_path / "repo"
    make_line(root, "line", repository=REPO, base=BASE,
              increments={"0001-one": "RUN echo one\n", "0002-two": "RUN echo two\n"})  # fmt: skip
    images = FakeImages()
    base = images.add(layers=("sha256:base-layer",), tag=BASE, digest=BASE_DIGEST)
    # the base carries labels of its own, under keys imagectl sets: none may reach a version
    leaking = dict.fromkeys(LABEL_KEYS, "from-the-base") | {"org.example.team": "base"}
    images.images[base.image_id] = ImageInfo(
        image_id=base.image_id, layers=base.layers, size=base.size,
        repo_digests=base.repo_digests, config=ImageConfig(labels=leaking),
    )  # fmt: skip
    registry = FakeRegistry(images=images)
    registry.tags[BASE] = RemoteImage(digest=BASE_DIGEST, config_digest=base.image_id)
    builder = FakeBuilder(images)
    return open_project(root, builder=builder, images=images, registry=registry, git=git), images


def labels_of(images: FakeImages, tag: str) -> dict[str, str]:
    return dict(images.images[images.tags[tag]].config.labels)


def build(project: Project) -> None:
    result = workflows.build_next(project, [], all_versions=True, wait=0, say=print, output=print)
    assert result.failures == ()


def test_every_version_gets_every_label_and_none_is_left_from_its_parent(tmp_path: Path) -> None:
    project, images = setup(tmp_path, FakeGit(remote=f"https://bot:{TOKEN}@github.com/org/x.git"))
    build(project)
    v1_id = images.tags[f"{REPO}:v1"]
    assert labels_of(images, f"{REPO}:v2") == {
        "org.opencontainers.image.version": "v2",
        "org.opencontainers.image.revision": "c" * 40,
        "org.opencontainers.image.source": "https://github.com/org/x",
        "org.opencontainers.image.created": "2026-11-25T12:00:00Z",
        "org.opencontainers.image.base.name": f"{REPO}:v1",
        "org.opencontainers.image.base.digest": v1_id,  # its image id while unpublished
        "org.opencontainers.image.ref.name": f"{REPO}:v2",
        "org.opencontainers.image.title": "line",
        "imagectl.line": "line",
        "imagectl.version": "2",
        "imagectl.increment": "increments/line/0002-two.Dockerfile.j2",
        "org.example.team": "base",  # a label imagectl does not set travels as any config does
    }
    v1 = labels_of(images, f"{REPO}:v1")
    assert v1["org.opencontainers.image.base.name"] == f"{BASE}@{BASE_DIGEST}"
    assert v1["org.opencontainers.image.base.digest"] == BASE_DIGEST
    assert "from-the-base" not in v1.values()
    builder = project.adapters.builder
    assert isinstance(builder, FakeBuilder)
    assert all("LABEL" not in text for text in builder.built)  # never in the Dockerfile


def test_an_uncommitted_increment_has_no_revision_and_the_epoch_as_created(
    tmp_path: Path,
) -> None:
    project, images = setup(tmp_path, Uncommitted())
    build(project)
    labels = labels_of(images, f"{REPO}:v1")
    assert labels["org.opencontainers.image.revision"] == ""
    assert labels["org.opencontainers.image.created"] == EPOCH
    assert labels["org.opencontainers.image.source"] == ""  # no remote, no setting


def test_the_source_setting_wins_and_refuses_credentials(tmp_path: Path) -> None:
    project, images = setup(tmp_path, FakeGit(remote="https://github.com/org/x.git"))
    write(project.root / "imagectl.toml", '[labels]\nsource = "https://example.com/images"\n')
    build(project.reopened())
    assert labels_of(images, f"{REPO}:v1")["org.opencontainers.image.source"] == (
        "https://example.com/images"
    )
    write(project.root / "imagectl.toml", f'[labels]\nsource = "https://u:{TOKEN}@x.com/i"\n')
    with pytest.raises(ConfigError, match="names a user or credentials") as raised:
        project.reopened()
    assert TOKEN not in str(raised.value)


def test_the_reference_lists_a_built_versions_labels_as_a_comment(tmp_path: Path) -> None:
    project, _ = setup(tmp_path, FakeGit())
    build(project)
    text = reference_text(project.layout, load_state(project.layout, project.line("line")))
    assert "\nLABEL" not in text
    (listed,) = [
        line for line in text.splitlines() if "org.opencontainers.image.version=v2" in line
    ]
    assert listed.startswith("# labels: org.opencontainers.image.version=v2 ")
    assert f"org.opencontainers.image.base.name={REPO}:v1 " in listed
    assert f"org.opencontainers.image.revision={'c' * 40} " in listed
    assert "imagectl.increment=increments/line/0002-two.Dockerfile.j2" in listed
