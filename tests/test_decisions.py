"""The decisions, against in-memory fakes of the engine, registry and git: adopt or refuse an
existing tag, the publish race, and the CI job's retries (milliseconds, no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagectl.app import lookups, publishing, workflows
from imagectl.app.ci_job import run_publish_job
from imagectl.app.plans import plan_lines
from imagectl.app.project import Project, open_project
from imagectl.app.publisher import publish_version
from imagectl.app.results.build import BuildResult
from imagectl.app.results.lookup import Plans
from imagectl.app.results.publish import JobResult
from imagectl.commands.plan import plans_text
from imagectl.core import lockfile
from imagectl.core.errors import ConfigError, GitError, PlanError, RegistryError, TagConflictError
from imagectl.core.model import LinePlan, LockedVersion
from imagectl.core.ports import RemoteImage

from .fakes import FakeBuilder, FakeGit, FakeImages, FakeRegistry, fake_id
from .helpers import make_line

BASE = "localhost:5000/b:1"
BASE_DIGEST = "sha256:" + "b" * 64
REPO = "localhost:5000/t/line"


TWO_STEPS = {"0001-one": "# One\nRUN echo one\n", "0002-two": "# Two\nRUN echo two\n"}


def setup(
    tmp_path: Path, *, git: FakeGit | None = None, increments: dict[str, str] = TWO_STEPS
) -> tuple[Project, FakeImages, FakeRegistry]:
    """A line of two increments on a fake engine and registry that hold its base."""
    root = tmp_path / "repo"
    make_line(root, "line", repository=REPO, base=BASE, increments=increments)
    images = FakeImages()
    images.add(layers=("sha256:base-layer",), tag=BASE, digest=BASE_DIGEST)
    registry = FakeRegistry(images=images)
    registry.tags[BASE] = RemoteImage(digest=BASE_DIGEST, config_digest=images.tags[BASE])
    project = open_project(
        root, builder=FakeBuilder(images), images=images, registry=registry, git=git or FakeGit()
    )
    return project, images, registry


def build(project: Project, *, all_versions: bool = True) -> BuildResult:
    return workflows.build_next(
        project, [], all_versions=all_versions, wait=0, say=print, output=print
    )


def lock_of(project: Project) -> tuple[LockedVersion, ...]:
    path = project.layout.lock_path("line")
    return lockfile.read_lock(path, line="line", repository=REPO, base=BASE).versions


def test_a_fresh_build_is_tagged_and_recorded_on_the_pinned_base(tmp_path: Path) -> None:
    project, images, _ = setup(tmp_path)
    result = build(project)
    assert [(b.version, b.adopted) for b in result.built] == [(1, False), (2, False)]
    builder = project.adapters.builder
    assert isinstance(builder, FakeBuilder)
    assert f"FROM {BASE}@{BASE_DIGEST}\n" in builder.built[0]
    versions = lock_of(project)
    assert [v.image_id for v in versions] == [images.tags[f"{REPO}:v1"], images.tags[f"{REPO}:v2"]]


def test_a_rerun_after_a_crash_adopts_the_tag_that_names_the_same_image(tmp_path: Path) -> None:
    project, images, _ = setup(tmp_path)
    build(project, all_versions=False)
    project.layout.lock_path("line").unlink()  # the crash: tagged, not recorded
    images.calls.clear()
    result = build(project, all_versions=False)
    assert result.built[0].adopted
    assert f"tag {REPO}:v1" not in images.calls  # never re-tagged
    assert len(lock_of(project)) == 1


def test_a_local_tag_naming_another_image_is_refused(tmp_path: Path) -> None:
    project, images, _ = setup(tmp_path)
    other = images.add(layers=("sha256:other",), tag=f"{REPO}:v1")
    result = build(project)
    ((_, error),) = result.failures
    assert isinstance(error, TagConflictError)
    assert "already exists in the engine" in error.message
    assert images.tags[f"{REPO}:v1"] == other.image_id  # untouched
    assert not project.layout.lock_path("line").exists()


def test_a_registry_tag_naming_another_image_is_refused_before_building(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    registry.tags[f"{REPO}:v1"] = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    ((_, error),) = build(project).failures
    assert isinstance(error, TagConflictError)
    assert "already holds" in error.message
    assert "imagectl skip line 1" in error.hint
    builder = project.adapters.builder
    assert isinstance(builder, FakeBuilder)
    assert builder.built == []  # refused before building, not after
    assert f"{REPO}:v1" not in images.tags
    assert not project.layout.lock_path("line").exists()


def test_a_skipped_version_is_passed_over(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project, all_versions=False)  # v1
    foreign = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    registry.tags[f"{REPO}:v2"] = foreign
    workflows.skip(project, "line", 2, reason="pushed by hand in 2025", wait=0, say=print)
    result = build(project)
    assert [(b.version, b.tag) for b in result.built] == [(3, f"{REPO}:v3")]
    versions = lock_of(project)
    assert [(v.version, v.skipped) for v in versions] == [(1, False), (2, True), (3, False)]
    assert versions[1].foreign_digest == foreign.digest
    assert versions[1].reason == "pushed by hand in 2025"
    assert versions[2].parent == f"{REPO}:v1"  # v3 sits on v1
    assert registry.tags[f"{REPO}:v2"] == foreign  # never touched
    published = publishing.publish(project, [], wait=0, say=print, output=print)
    assert [p.tag for p in published.published] == [f"{REPO}:v1", f"{REPO}:v3"]
    assert lookups.resolve(project, f"{REPO}:v1").newest.version == 3


def test_skip_refuses_a_free_tag_and_our_own_image(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    with pytest.raises(PlanError, match="nothing to skip"):
        workflows.skip(project, "line", 1, reason="x", wait=0, say=print)
    build(project, all_versions=False)
    project.layout.lock_path("line").unlink()  # a crash: tagged and pushed, not recorded
    registry.tags[f"{REPO}:v1"] = RemoteImage(
        digest=fake_id("m"), config_digest=images.tags[f"{REPO}:v1"]
    )
    with pytest.raises(PlanError, match="not burned"):
        workflows.skip(project, "line", 1, reason="x", wait=0, say=print)


def test_audit_finds_tampered_missing_and_deleted_tags(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    publishing.publish(project, [], wait=0, say=print, output=print)
    assert not publishing.audit(project, []).problems
    v1, v2 = lock_of(project)
    registry.tags[v1.tag] = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    del registry.tags[v2.tag]
    report = publishing.audit(project, [])
    assert [(f.version, f.status) for f in report.findings] == [(1, "tampered"), (2, "deleted")]
    assert report.findings[0].served == registry.tags[v1.tag].digest
    registry.tags["kept-by-digest"] = RemoteImage(digest=v2.digest, config_digest=v2.image_id)
    assert publishing.audit(project, []).findings[1].status == "missing"


def test_a_registry_tag_naming_the_same_image_is_adopted_as_published(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    build(project, all_versions=False)
    image_id = images.tags[f"{REPO}:v1"]
    project.layout.lock_path("line").unlink()
    digest = fake_id("manifest")
    registry.tags[f"{REPO}:v1"] = RemoteImage(digest=digest, config_digest=image_id)
    result = build(project, all_versions=False)
    assert result.built[0].adopted
    assert lock_of(project)[0].digest == digest


def published(project: Project) -> LockedVersion:
    build(project)
    return lock_of(project)[0]


def test_publish_pushes_an_absent_tag_and_records_what_it_reads_back(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    version = published(project)
    digest, action = publish_version(
        version, images=images, registry=registry, say=print, output=print
    )
    assert action == "pushed"
    assert registry.tags[version.tag].digest == digest


def test_publish_records_a_tag_that_already_names_the_image(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    version = published(project)
    registry.tags[version.tag] = RemoteImage(
        digest="sha256:" + "d" * 64, config_digest=version.image_id
    )
    assert publish_version(version, images=images, registry=registry, say=print, output=print) == (
        "sha256:" + "d" * 64,
        "recorded",
    )
    assert registry.pushes == []


def test_publish_never_overwrites_a_tag_naming_another_image(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    version = published(project)
    registry.tags[version.tag] = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    with pytest.raises(TagConflictError, match="No tag was changed"):
        publish_version(version, images=images, registry=registry, say=print, output=print)
    assert registry.pushes == []


def test_publish_detects_a_race_lost_after_its_push(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    version = published(project)
    registry.after_push[version.tag] = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    with pytest.raises(RegistryError, match="another publisher pushed the same tag"):
        publish_version(version, images=images, registry=registry, say=print, output=print)


def test_an_immutable_registry_refusing_the_same_image_is_success(tmp_path: Path) -> None:
    project, images, registry = setup(tmp_path)
    version = published(project)
    registry.immutable = True
    registry.tags[version.tag] = RemoteImage(
        digest="sha256:" + "e" * 64, config_digest=version.image_id
    )
    assert publish_version(version, images=images, registry=registry, say=print, output=print)[
        1
    ] == ("recorded")


def no_backoff(_attempt: int) -> None:
    pass


def ci(tmp_path: Path, git: FakeGit, attempts: int = 5) -> JobResult:
    project, _, _ = setup(tmp_path, git=git)
    git.changed = ("lock/line.lock.toml",)
    return run_publish_job(
        project, remote="origin", branch="main", attempts=attempts, say=print, output=print,
        git=git, backoff=no_backoff,
    )  # fmt: skip


def test_ci_retries_a_rejected_push_after_rebasing(tmp_path: Path) -> None:
    git = FakeGit(pushes=[False, True])
    result = ci(tmp_path, git)
    assert result.attempts == 2
    assert git.log == [
        "commit lock/line.lock.toml",
        "push rejected",
        "fetch",
        "rebase ok",
        "commit lock/line.lock.toml",
        "push ok",
    ]


def test_ci_takes_theirs_when_the_rebase_conflicts(tmp_path: Path) -> None:
    git = FakeGit(pushes=[False, True], rebases=[False])
    ci(tmp_path, git)
    assert "rebase conflict" in git.log
    conflict = git.log.index("rebase conflict")
    assert git.log[conflict + 1].startswith("reset")
    assert git.log[-1] == "push ok"


def test_ci_gives_up_after_its_attempts(tmp_path: Path) -> None:
    git = FakeGit(pushes=[False] * 10)
    with pytest.raises(GitError, match="gave up after 3 attempts"):
        ci(tmp_path, git, attempts=3)
    assert git.log.count("push rejected") == 3


def test_ci_refuses_a_dirty_tree(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not clean"):
        ci(tmp_path, FakeGit(dirty=("images/x.toml",)))


def two_lines(tmp_path: Path, git: FakeGit) -> Project:
    project, images, registry = setup(tmp_path, git=git)
    make_line(
        project.root, "other", repository=f"{REPO}-other", base=BASE,
        increments={"0001-one": "# One\nRUN echo other\n"},
    )  # fmt: skip
    return open_project(
        project.root, builder=FakeBuilder(images), images=images, registry=registry, git=git
    )


def test_a_ci_shard_builds_publishes_and_commits_only_its_lines(tmp_path: Path) -> None:
    git = FakeGit(pushes=[False, True])
    project = two_lines(tmp_path, git)
    # What git reports as changed under lock/: this shard's files, another line's, a stray one.
    git.changed = (
        "lock/other.lock.toml",
        "lock/other.packages.toml",
        "lock/other.reference.Dockerfile",
        "lock/line.lock.toml",
        "lock/line.reference.Dockerfile",
        "lock/notes.txt",
    )
    result = run_publish_job(
        project, remote="origin", branch="main", attempts=3, say=print, output=print,
        lines="oth*", git=git, backoff=no_backoff,
    )  # fmt: skip
    assert result.lines == ("other",)
    assert result.tags == (f"{REPO}-other:v1",)
    assert git.log[0] == (
        "commit lock/other.lock.toml lock/other.packages.toml lock/other.reference.Dockerfile"
    )
    assert (git.log[1:4], git.log[-1]) == (["push rejected", "fetch", "rebase ok"], "push ok")
    registry = project.adapters.registry
    assert isinstance(registry, FakeRegistry)
    assert registry.pushes == [f"{REPO}-other:v1"]  # the other line is not this shard's
    assert not project.layout.lock_path("line").exists()


def test_a_ci_shard_glob_matching_no_line_is_an_error(tmp_path: Path) -> None:
    git = FakeGit()
    project = two_lines(tmp_path, git)
    with pytest.raises(ConfigError, match="no image line matches 'nope-\\*'"):
        run_publish_job(
            project, remote="origin", branch="main", attempts=1, say=print, output=print,
            lines="nope-*", git=git, backoff=no_backoff,
        )  # fmt: skip
    assert git.log == []


def test_plan_says_per_line_what_to_build_and_to_publish(tmp_path: Path) -> None:
    project, _, _ = setup(tmp_path)
    build(project, all_versions=False)
    make_line(project.root, "idle", repository=f"{REPO}-idle", base=BASE, increments={})
    project = project.reopened()
    rows = {row["line"]: row for row in Plans(
        plans=plan_lines(project, [], all_versions=True)
    ).to_json()}  # fmt: skip
    line = rows["line"]
    assert (line["up_to_date"], line["to_build"], line["to_publish"]) == (False, [2], [1])
    assert line["repository"] == REPO
    assert (line["built"], line["pending"], len(line["steps"])) == (1, 1, 1)  # type: ignore[arg-type]
    assert rows["idle"]["up_to_date"] is True
    assert (rows["idle"]["to_build"], rows["idle"]["to_publish"]) == ([], [])
    build(project)
    publishing.publish(project, ["line"], wait=0, say=print, output=print)
    (again,) = plan_lines(project, ["line"], all_versions=True)
    assert again.up_to_date
    text = plans_text(Plans(plans=(again,)))
    assert text == "line: up to date (v2)"


def test_a_line_failing_later_keeps_the_versions_it_built_in_the_result(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    registry.tags[f"{REPO}:v2"] = RemoteImage(digest=fake_id("m"), config_digest=fake_id("i"))
    result = build(project)
    assert [b.version for b in result.built] == [1]  # v1 was recorded before v2 failed
    assert [name for name, _ in result.failures] == ["line"]
    (row,) = json.loads(json.dumps(result.to_json()))["lines"]
    assert row["status"] == "failed"
    assert [b["version"] for b in row["built"]] == [1]


def test_plan_text_shows_versions_to_publish_as_runs() -> None:
    plan = LinePlan(line="l", built=9, available=9, pending=0, unpublished=(1, 2, 3, 5, 7, 8, 9))
    assert plans_text(Plans(plans=(plan,))) == (
        "l: nothing to build (v9); to publish: v1-v3, v5, v7-v9"
    )


def test_only_this_machines_registry_gets_the_advice_to_start_it() -> None:
    from imagectl.adapters.registry_http import registry_hint  # noqa: PLC0415

    assert "scripts/engine up" in registry_hint("localhost:5000")
    assert "scripts/engine up" in registry_hint("127.0.0.1:5000")
    other = registry_hint("registry.example.com:5000")
    assert "scripts/engine up" not in other
    assert "registry.example.com:5000 runs and is reachable" in other


def test_an_error_says_what_was_done_before_it_in_text_and_json() -> None:
    error = RegistryError("the registry failed.", hint="Check it.")
    assert str(error) == "the registry failed. Check it."
    error.done = ("v1 of x was built and recorded; v2 was not recorded",)
    assert str(error).endswith(
        "Check it. So far: v1 of x was built and recorded; v2 was not recorded."
    )
    assert error.to_json()["done"] == ["v1 of x was built and recorded; v2 was not recorded"]


@pytest.mark.parametrize("fails", ["packages", "reference"])
def test_a_version_whose_recording_fails_keeps_its_tag_only_if_the_lock_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """Before the lock write (the package reader) the new tag is removed: no later run meets a
    tag the lock never knew. After it (the reference file) the version is recorded: its tag
    must stay, or the lock would name a version no tag shows."""
    from imagectl.app import recording  # noqa: PLC0415

    project, images, _ = setup(tmp_path)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ConfigError("cannot be written.", path="x")

    monkeypatch.setattr(recording, "store_packages" if fails == "packages" else "write_reference",
                        broken)  # fmt: skip
    result = build(project, all_versions=False)
    assert [name for name, _ in result.failures] == ["line"]
    recorded = [v.version for v in lock_of(project)]
    assert recorded == ([] if fails == "packages" else [1])
    assert (f"{REPO}:v1" in images.tags) == (fails == "reference")


def test_each_new_increment_is_rendered_once_per_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-build check renders the pending increment; the build and the reference written
    after it reuse that render (v2: v1's base digest is recorded, so its parent is foreseen)."""
    from imagectl.core import rendering, templates  # noqa: PLC0415

    project, _, _ = setup(tmp_path)
    build(project, all_versions=False)
    renders: list[str] = []
    real = templates.render_tracked

    def counted(folder: Path, template: Path, variables: dict[str, object]) -> object:
        renders.append(template.name)
        return real(folder, template, variables)

    monkeypatch.setattr(rendering, "render_tracked", counted)
    assert [b.version for b in build(project).built] == [2]
    assert renders == ["0002-two.Dockerfile.j2"]
