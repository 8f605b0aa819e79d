"""publish stores each published version's input archive and records its digest; audit checks
the registry still has it under its tag; a capture that could not happen (an engine on another
host) is recorded as incomplete, saying why (fakes; tests/test_archive_engine.py does it all on
the real engine and registry)."""

from __future__ import annotations

from pathlib import Path

from imagectl.app import publishing
from imagectl.app.archiving import read_record
from imagectl.core import lockfile
from imagectl.core.archive import archive_from_json, archive_tag
from imagectl.core.errors import RegistryError

from .test_decisions import BASE, REPO, build, lock_of, setup


def quiet(_text: str) -> None:
    pass


def test_publish_stores_each_archive_once_with_the_base_copied_and_records_it(
    tmp_path: Path,
) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    assert [v.archive_state for v in lock_of(project)] == ["complete", "complete"]
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert [a.version for a in result.archives] == [1, 2]
    for version, stored in zip(lock_of(project), result.archives, strict=True):
        assert version.archive == stored.digest
        tag = archive_tag(REPO, version.version)
        config, _layers = registry.read_archive(tag) or (b"", ())
        assert archive_from_json(config) == read_record(project.layout, "line", version.version)
    # v1 was built on the base: it is kept in the archive's repository, by digest
    lock = lockfile.read_lock(
        project.layout.lock_path("line"), line="line", repository=REPO, base=BASE
    )
    assert registry.copied == {f"{REPO}-inputs@{lock.base_digest}"}
    again = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert again.archives == ()
    assert publishing.audit(project, []).problems == ()


def test_a_refused_archive_is_reported_the_versions_stay_published_and_unrecorded(
    tmp_path: Path,
) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    registry.archives[archive_tag(REPO, 2)] = b'{"someone": "else"}'  # the tag is taken
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert [p.version for p in result.published] == [1, 2]
    assert [a.version for a in result.archives] == [1]  # the other one still stored
    ((line, error),) = result.failures
    assert (line, type(error)) == ("line", RegistryError)
    assert [bool(v.archive) for v in lock_of(project)] == [True, False]
    findings = publishing.audit(project, []).findings
    assert [f.archive for f in findings] == ["ok", "unstored"]


def test_audit_finds_an_archive_gone(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    del registry.archives[archive_tag(REPO, 1)]
    assert [f.archive for f in publishing.audit(project, []).findings] == ["missing", "ok"]


def test_an_engine_on_another_host_records_incomplete_archives_saying_why(
    tmp_path: Path,
) -> None:
    project, images, _ = setup(tmp_path)
    images.capture_host = None
    build(project)
    assert [v.archive_state for v in lock_of(project)] == ["incomplete", "incomplete"]
    record = read_record(project.layout, "line", 1)
    assert record is not None
    assert "the engine runs on another host" in record.missing[0]


def test_a_line_without_an_archive_records_none_and_publishes_none(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    config = project.layout.images_dir / "line.toml"
    config.write_text(config.read_text() + "\n[archive]\nenabled = false\n")
    project = project.reopened()
    build(project)
    assert [v.archive_state for v in lock_of(project)] == ["", ""]
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert result.archives == ()
    assert registry.archives == {}
    path = project.layout.lock_path("line")
    assert "archive" not in path.read_text()
