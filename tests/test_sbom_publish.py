"""publish attaches each published version's SBOM as a referrer and records its digest; audit
checks that the registry still has it and lists it (fakes; tests/test_sbom_engine.py does the
same on the real registry)."""

from __future__ import annotations

from pathlib import Path

from imagectl.app import publishing
from imagectl.app.sboms import version_sbom
from imagectl.core import lockfile, sidecar
from imagectl.core.artifacts import Artifact
from imagectl.core.errors import RegistryError
from imagectl.core.references import pinned, repository_of

from .test_decisions import BASE, REPO, build, lock_of, setup


def quiet(_text: str) -> None:
    pass


def test_publish_attaches_each_versions_sbom_once(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    assert sidecar.packages_path(project.layout.lock_path("line")).exists()
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert [(s.version, s.digest[:7]) for s in result.sboms] == [(1, "sha256:"), (2, "sha256:")]
    for version, attached in zip(lock_of(project), result.sboms, strict=True):
        assert version.sbom == attached.digest  # recorded in the lock
        subject = pinned(repository_of(version.tag), version.digest)
        (listed,) = registry.referrers(subject)
        assert listed.digest == version.sbom
        assert listed.artifact_type == "application/spdx+json"
        # what is attached is what `imagectl sbom` prints for that version
        made = version_sbom(project, "line", version.version)
        assert registry.artifacts[version.sbom].data == made.data
        assert version.digest in made.data.decode()  # bound to the registry digest
    again = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert again.sboms == ()
    assert all(len(listed) == 1 for listed in registry.referred.values())


def test_a_version_published_before_sboms_gets_one_on_the_next_publish(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    path = project.layout.lock_path("line")
    lock = lockfile.read_lock(path, line="line", repository=REPO, base=BASE)
    lockfile.write_lock(path, lock.with_sbom(1, ""))  # as a lock written before SBOMs
    registry.referred.clear()
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert [s.version for s in result.sboms] == [1]
    assert lock_of(project)[0].sbom == result.sboms[0].digest


def test_a_version_without_a_package_record_is_published_without_an_sbom(
    tmp_path: Path,
) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    sidecar.packages_path(project.layout.lock_path("line")).unlink()
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert len(result.published) == 2
    assert result.sboms == ()
    assert registry.referred == {}
    assert all(not v.sbom for v in lock_of(project))


def test_audit_finds_an_sbom_gone_or_no_longer_listed(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert publishing.audit(project, []).problems == ()
    first, second = lock_of(project)
    # v1's referrers index lost its entry; v2's SBOM itself is gone from the registry
    registry.referred[pinned(repository_of(first.tag), first.digest)].clear()
    real_exists = registry.exists
    registry.exists = lambda ref: None if ref.endswith(second.sbom) else real_exists(ref)  # type: ignore[method-assign]
    report = publishing.audit(project, [])
    assert [(f.version, f.status, f.sbom) for f in report.problems] == [
        (1, "ok", "unlisted"),
        (2, "ok", "missing"),
    ]


def test_an_sbom_the_registry_refuses_keeps_the_others(tmp_path: Path) -> None:
    project, _, registry = setup(tmp_path)
    build(project)
    real_attach = registry.attach

    def attach(subject: str, artifact: Artifact) -> str:
        if artifact.title.endswith("-v2.spdx.json"):
            raise RegistryError("the registry refused the artifact (HTTP 500).")
        return real_attach(subject, artifact)

    registry.attach = attach  # type: ignore[method-assign]
    result = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert [line for line, _ in result.failures] == ["line"]
    first, second = lock_of(project)
    assert first.digest  # both images published and recorded
    assert second.digest
    assert first.sbom  # stored beside the refused one: recorded
    assert not second.sbom  # refused: the next publish attaches it
    registry.attach = real_attach  # type: ignore[method-assign]
    again = publishing.publish(project, [], wait=0, say=quiet, output=quiet)
    assert [s.version for s in again.sboms] == [2]
