"""The reference and the build agree on where a pending increment stands: a template's
`{{ parent }}` renders the same in the reference as in the Dockerfile built (in-memory fakes)."""

from __future__ import annotations

from pathlib import Path

from imagectl.app import publishing, workflows
from imagectl.app.project import Project
from imagectl.core import lockfile
from imagectl.core.linerenders import reference_text
from imagectl.core.linestate import load_state
from imagectl.core.ports import RemoteImage

from .fakes import FakeBuilder, FakeRegistry, fake_id
from .test_decisions import BASE, REPO
from .test_decisions import setup as line_setup

ECHO = 'RUN echo "parent='
SHOWS_PARENT = f'# Two\n{ECHO}{{{{ parent }}}}"\n'


def setup(tmp_path: Path) -> tuple[Project, FakeRegistry]:
    project, _images, registry = line_setup(
        tmp_path, increments={"0001-one": "# One\nRUN echo one\n", "0002-two": SHOWS_PARENT}
    )
    return project, registry


def build(project: Project, *, all_versions: bool) -> None:
    result = workflows.build_next(
        project, [], all_versions=all_versions, wait=0, say=print, output=print
    )
    assert not result.failures


def echoed(text: str) -> list[str]:
    """The increment's line that shows its parent, as rendered in `text`."""
    return [line for line in text.splitlines() if line.startswith(ECHO)]


def planned_in_reference(project: Project) -> list[str]:
    layout = project.layout
    return echoed(reference_text(layout, load_state(layout, project.line("line"))))


def built_last(project: Project) -> list[str]:
    builder = project.adapters.builder
    assert isinstance(builder, FakeBuilder)
    return echoed(builder.built[-1])


def test_on_a_published_head_the_reference_names_the_parent_by_digest_as_the_build_does(
    tmp_path: Path,
) -> None:
    project, _ = setup(tmp_path)
    build(project, all_versions=False)  # v1
    publishing.publish(project, [], wait=0, say=print, output=print)
    lock = lockfile.read_lock(
        project.layout.lock_path("line"), line="line", repository=REPO, base=BASE
    )
    digest = lock.versions[0].digest
    assert digest
    planned = planned_in_reference(project)
    build(project, all_versions=True)  # v2, on the published v1
    assert built_last(project) == planned == [f'{ECHO}{REPO}:v1@{digest}"']


def test_after_a_skip_the_reference_builds_on_the_version_before_the_burned_one(
    tmp_path: Path,
) -> None:
    project, registry = setup(tmp_path)
    build(project, all_versions=False)  # v1
    registry.tags[f"{REPO}:v2"] = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    workflows.skip(project, "line", 2, reason="pushed by hand", wait=0, say=print)
    planned = planned_in_reference(project)
    build(project, all_versions=True)  # v3, on v1: v2 has no image
    assert built_last(project) == planned == [f'{ECHO}{REPO}:v1"']
