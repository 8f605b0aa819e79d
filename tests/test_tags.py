"""Who holds a tag (core/tags.py): every case of the one rule, and the commands that use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.app import publishing
from imagectl.core.errors import TagConflictError
from imagectl.core.ports import RemoteImage
from imagectl.core.tags import Holder, adopt_or_refuse, holder, registry_holder

from .fakes import fake_id
from .test_decisions import REPO, build, lock_of, setup

OURS, OTHER = fake_id("ours"), fake_id("other")


def remote(config: str) -> RemoteImage:
    return RemoteImage(digest=fake_id("manifest-" + config), config_digest=config)


@pytest.mark.parametrize(
    ("named", "expected"),
    [(None, Holder.FREE), (OURS, Holder.OURS), (OTHER, Holder.THEIRS)],
)
def test_a_tag_is_free_ours_or_theirs_by_the_image_it_names(
    named: str | None, expected: Holder
) -> None:
    assert holder(named, ours=OURS) is expected


@pytest.mark.parametrize(
    ("in_registry", "in_engine", "expected"),
    [
        (None, None, Holder.FREE),
        (None, OURS, Holder.FREE),  # the registry's side only: the engine's is another question
        (OURS, OURS, Holder.OURS),  # our own push whose recording a crash lost
        (OURS, None, Holder.THEIRS),  # nothing here proves it ours: someone published it
        (OURS, OTHER, Holder.THEIRS),
    ],
)
def test_an_unrecorded_registry_tag_is_ours_only_when_this_engine_holds_the_same_image(
    in_registry: str | None, in_engine: str | None, expected: Holder
) -> None:
    found = remote(in_registry) if in_registry else None
    assert registry_holder(found, engine=in_engine) is expected


@pytest.mark.parametrize(
    ("in_engine", "in_registry", "adopted"),
    [(None, None, False), (OURS, None, True), (None, OURS, True), (OURS, OURS, True)],
)
def test_tagging_adopts_a_tag_that_names_this_image_on_either_side(
    in_engine: str | None, in_registry: str | None, adopted: bool
) -> None:
    found = remote(in_registry) if in_registry else None
    assert adopt_or_refuse("r:v1", ours=OURS, engine=in_engine, remote=found, made="m") is adopted


def test_tagging_refuses_another_image_with_the_hint_for_where_it_is() -> None:
    with pytest.raises(TagConflictError) as engine:
        adopt_or_refuse("r:v1", ours=OURS, engine=OTHER, remote=None, made="m")
    assert "docker rmi r:v1" in engine.value.hint  # a leftover here: remove it
    with pytest.raises(TagConflictError) as registry:
        adopt_or_refuse("r:v1", ours=OURS, engine=OURS, remote=remote(OTHER), made="m")
    assert "git pull" in registry.value.hint  # published elsewhere: the lock is behind


def test_a_parent_whose_local_tag_was_retagged_is_refused_and_never_re_tagged(
    tmp_path: Path,
) -> None:
    project, images, _ = setup(tmp_path)
    build(project, all_versions=False)  # v1, not published: v2 builds FROM its local tag
    other = images.add(layers=("sha256:someone-else",))
    images.tags[f"{REPO}:v1"] = other.image_id
    ((_, error),) = build(project).failures
    assert isinstance(error, TagConflictError)
    assert f"the local tag {REPO}:v1 names {other.image_id}" in error.message
    assert f"docker tag {lock_of(project)[0].image_id} {REPO}:v1" in error.hint
    assert images.tags[f"{REPO}:v1"] == other.image_id  # untouched
    assert len(lock_of(project)) == 1


def test_publish_refuses_a_local_tag_that_names_another_image(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    build(project, all_versions=False)
    other = images.add(layers=("sha256:someone-else",))
    images.tags[f"{REPO}:v1"] = other.image_id
    result = publishing.publish(project, [], wait=0, say=print, output=print)
    ((_, error),) = result.failures
    assert isinstance(error, TagConflictError)
    assert "nothing was pushed" in error.message
    assert f"{REPO}:v1" not in registry.tags


def test_publish_restores_a_removed_local_tag_of_the_recorded_image(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    build(project, all_versions=False)
    recorded = images.tags.pop(f"{REPO}:v1")
    publishing.publish(project, [], wait=0, say=print, output=print)
    assert images.tags[f"{REPO}:v1"] == recorded
    assert registry.tags[f"{REPO}:v1"].config_digest == recorded
