"""restore-check's use case and command against in-memory fakes of the engine: which layers
are read, the refusals (an unknown REF, a successor not built on REF, a bad backup, layers
that cannot be read one by one), exit codes, and --write (atomic; nothing on a conflict)."""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import pytest

from imagectl.app import restoring
from imagectl.app.project import Project, open_project
from imagectl.app.restoring import restore_check
from imagectl.cli import with_warnings
from imagectl.commands.restore import restore_check as restore_command
from imagectl.core.artifacts import Descriptor, blob_digest
from imagectl.core.errors import BackupError, EngineError, PlanError, RegistryError
from imagectl.core.layerfiles import FileSelection, LayerChange
from imagectl.core.lockfile import write_lock
from imagectl.core.ports import ImageInfo, RemoteLayers

from .conftest import imagectl
from .fakes import FakeImages, FakeRegistry
from .helpers import make_line, sample_lock
from .layer_tars import file, folder, layer, members, whiteout

V1, V2 = f"sha256:{301:064x}", f"sha256:{302:064x}"
REF = "localhost:5000/t/line:v1"


@dataclass
class LayeredImages(FakeImages):
    """Images whose files and layers the test gives; it records what was read."""

    files: dict[str, dict[str, bytes]] = field(default_factory=dict)
    changes: dict[str, tuple[LayerChange, ...] | None] = field(default_factory=dict)
    asked_above: list[int] = field(default_factory=list)

    def read_files(self, image: str, wanted: FileSelection) -> dict[str, bytes]:
        return {p: d for p, d in self.files.get(image, {}).items() if wanted.match(p)}

    def layer_changes(
        self, image: str, wanted: FileSelection, *, above: int
    ) -> tuple[LayerChange, ...] | None:
        self.asked_above.append(above)
        found = self.changes.get(image)
        if found is None:
            return None
        return tuple(
            LayerChange(
                deleted=change.deleted,
                opaque=change.opaque,
                files={p: d for p, d in change.files.items() if wanted.match(p)},
                links={p: t for p, t in change.links.items() if wanted.match(p)},
                meta={p: m for p, m in change.meta.items() if wanted.match(p)},
                dirs=tuple(d for d in change.dirs if wanted.match(d)),
            )
            for change in found
        )  # as the store reads them: the selected files only


def project(tmp_path: Path, images: LayeredImages) -> Project:
    layout = make_line(
        tmp_path / "repo",
        "line",
        repository="localhost:5000/t/line",
        base="localhost:5000/busybox:latest",
        increments={"0001-step": "RUN true\n", "0002-step": "RUN true\n"},
    )
    write_lock(layout.lock_path("line"), sample_lock(2))
    return open_project(layout.root, images=images)


def engine(*, v2_layers: tuple[str, ...] = ("base", "one", "fix")) -> LayeredImages:
    images = LayeredImages()
    images.images[V1] = ImageInfo(image_id=V1, layers=("base", "one"), size=1)
    images.images[V2] = ImageInfo(image_id=V2, layers=v2_layers, size=1)
    images.files[V1] = {"start": b"old start", "etc/app.conf": b"REF"}
    plain = (0o644, 0, 0)  # as the registry's layer tars have them (tests/layer_tars)
    images.changes[V1] = (
        LayerChange(
            files={"start": b"old start", "etc/app.conf": b"base's"},
            meta={"start": plain, "etc/app.conf": plain},
            dirs=("srv",),
        ),
        LayerChange(files={"etc/app.conf": b"REF"}, meta={"etc/app.conf": plain}, dirs=("etc",)),
    )
    images.changes[V2] = (
        LayerChange(
            files={"start": b"fixed start", "etc/app.conf": b"fix"},
            dirs=("srv", "srv/www"),  # the fix made srv/www
        ),
    )
    return images


def args(
    backup: Path, write: Path | None = None, read_from: str | None = None
) -> argparse.Namespace:
    return argparse.Namespace(backup=backup, on=REF, write=write, json=True, read_from=read_from)


def test_safe_after_merge_reads_only_the_added_layers_and_writes_the_merged_layer(
    tmp_path: Path,
) -> None:
    images = engine()
    backup = tmp_path / "backup.tar"
    backup.write_bytes(
        layer(folder("home/u"), file("home/u/a", "mine"), file("start", "old start"))
    )
    merged = tmp_path / "out" / "merged.tar"
    merged.parent.mkdir()
    outcome = restore_command(args(backup, merged), project(tmp_path, images))
    assert outcome.code == 0
    # the successor's layers above v1's two, then v1's own for its files at the backup's paths
    assert images.asked_above == [2, 0]
    data = with_warnings(outcome.result.to_json(), ())
    assert data["verdict"] == "safe after merge"
    assert data["successor"]["version"] == 2
    assert data["successor"]["added_layers"] == 1
    assert data["written"] == str(merged)
    assert set(data) >= {"backup", "on", "line", "version", "paths", "conflicts", "merges"}
    json.dumps(data)  # the JSON contract: serialisable as it is
    assert set(members(merged.read_bytes())) == {"home/u", "home/u/a"}
    assert [p.name for p in merged.parent.iterdir()] == ["merged.tar"]  # no temporary left
    assert "dropped start: stale copy; the fix changed it" in outcome.text


def test_a_conflict_writes_nothing_and_exits_3(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("etc/app.conf", "user's")))
    merged = tmp_path / "merged.tar"
    merged.write_bytes(b"an older merge, kept as it is")
    outcome = restore_command(args(backup, merged), project(tmp_path, engine()))
    assert outcome.code == 3
    assert outcome.result.to_json()["written"] is None
    assert merged.read_bytes() == b"an older merge, kept as it is"
    assert "conflict etc/app.conf" in outcome.text


def test_a_whiteout_of_the_fix_is_a_conflict(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(whiteout("start")))
    outcome = restore_command(args(backup), project(tmp_path, engine()))
    assert outcome.code == 3


def test_refused_exits_1(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(folder("opt", **{"SCHILY.xattr.trusted.overlay.redirect": "/x"})))
    merged = tmp_path / "merged.tar"
    outcome = restore_command(args(backup, merged), project(tmp_path, engine()))
    assert outcome.code == 1
    assert outcome.result.to_json()["refusals"] == [{"path": "opt", "mark": "overlay.redirect"}]
    assert not merged.exists()


def test_a_ref_no_lock_knows(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    with pytest.raises(PlanError, match="no image line built"):
        restore_check(project(tmp_path, engine()), backup, on="localhost:5000/t/line:v9")


def test_a_successor_not_built_on_refs_layers(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    images = engine(v2_layers=("base", "other", "fix"))
    merged = tmp_path / "merged.tar"
    with pytest.raises(PlanError, match="is not built on"):
        restore_check(project(tmp_path, images), backup, on=REF, write=merged)
    assert images.asked_above == []  # nothing read
    assert not merged.exists()


def test_layers_that_cannot_be_read_one_by_one(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    images = engine()
    images.changes[V2] = None
    with pytest.raises(EngineError, match="cannot be read one by one"):
        restore_check(project(tmp_path, images), backup, on=REF, source="engine")
    # unpublished, the registry cannot serve them either: publish first, in one paragraph
    merged = tmp_path / "merged.tar"
    with pytest.raises(EngineError) as raised:
        restore_check(project(tmp_path, images), backup, on=REF, write=merged)
    assert "v1 and localhost:5000/t/line:v2 are not published" in raised.value.message
    assert "imagectl publish line" in raised.value.hint
    assert not merged.exists()


def test_a_bad_backup_is_refused_before_the_engine_is_asked(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("../../etc/cron.d/x", "evil")))
    images = engine()
    merged = tmp_path / "merged.tar"
    with pytest.raises(BackupError, match="escapes the root"):
        restore_check(project(tmp_path, images), backup, on=REF, write=merged)
    assert images.calls == []
    assert not merged.exists()
    with pytest.raises(BackupError, match="cannot be read"):
        restore_check(project(tmp_path, images), tmp_path / "missing.tar", on=REF)
    with pytest.raises(BackupError, match="names the backup itself"):
        restore_check(project(tmp_path, images), backup, on=REF, write=backup)


def test_the_cli_says_a_bad_backup_in_json_with_exit_1(tmp_path: Path) -> None:
    images = engine()
    root = project(tmp_path, images).root
    backup = tmp_path / "backup.tar"
    backup.write_bytes(b"not a tar at all\n" * 100)
    done = imagectl(root, "restore-check", str(backup), "--on", REF, "--json")
    assert done.code == 1
    error = json.loads(done.stdout)
    assert error["kind"] == "backup error"
    assert error["error"].startswith("is not a layer tar")
    assert error["path"] == str(backup)
    assert error["warnings"] == []


def test_a_ref_that_is_the_newest_version_has_nothing_to_merge(tmp_path: Path) -> None:
    images = engine(v2_layers=("base", "one"))  # v2 has v1's layers and no more
    images.changes[V2] = None  # and they could not be read one by one: never asked
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("start", "edited"), file("home/u/a", "mine")))
    report = restore_check(project(tmp_path, images), backup, on=REF)
    assert images.asked_above == [0]  # only REF's own layers, for its files
    assert str(report.check.verdict) == "safe"
    assert {p.path: str(p.cls) for p in report.check.paths} == {
        "start": "user only",
        "home/u/a": "user only",
    }


def test_what_a_person_reads(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("start", "old start"), file("etc/app.conf", "user's")))
    outcome = restore_command(args(backup), project(tmp_path, engine()))
    assert outcome.text.splitlines() == [
        f"{backup}: taken on v1 of line, restored on localhost:5000/t/line:v2: conflicts: a "
        "person decides each conflict below; nothing was written",
        "  1 stale copy, 1 conflict (of 2 paths; 1 layer(s) of the successor read from the "
        "engine's store)",
        "  dropped start: stale copy; the fix changed it",
        "  conflict etc/app.conf: both changed it: the fix changed it, and the backup's copy is "
        "neither REF's nor the successor's",
        f"    backup: {outcome.result.to_json()['conflicts'][0]['backup']}; successor: "
        f"{outcome.result.to_json()['conflicts'][0]['successor']}",
    ]


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("start", "old start"), file("home/u/a", "mine")))
    out = tmp_path / "out"
    out.mkdir()
    merged = out / "merged.tar"
    merged.write_bytes(b"the merge of yesterday")

    def half(source: object, target: IO[bytes], **_: object) -> None:
        target.write(b"half a tar")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(restoring, "write_layer_tar", half)
    with pytest.raises(BackupError, match="cannot be written"):
        restore_check(project(tmp_path, engine()), backup, on=REF, write=merged)
    assert merged.read_bytes() == b"the merge of yesterday"
    assert [p.name for p in out.iterdir()] == ["merged.tar"]


# -- the registry as the source: the published versions' blobs -------------------------------

D1, D2 = f"sha256:{401:064x}", f"sha256:{402:064x}"  # the manifest digests publish recorded
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def blob(data: bytes, media_type: str = GZIP) -> tuple[Descriptor, bytes]:
    stored = gzip.compress(data) if media_type.endswith("gzip") else data
    return Descriptor(media_type=media_type, digest=blob_digest(stored), size=len(stored)), stored


def registry(
    *, fix_type: str = GZIP, v2_ids: tuple[str, ...] = ("base", "one", "fix")
) -> FakeRegistry:
    """v1 and v2 as the registry stores them: the same files as `engine()`'s, in layer tars."""
    base = blob(layer(file("start", "old start"), file("etc/app.conf", "base's"), folder("srv")))
    one = blob(layer(folder("etc"), file("etc/app.conf", "REF")))
    fix = blob(
        layer(file("start", "fixed start"), file("etc/app.conf", "fix"), folder("srv"),
              folder("srv/www")),
        fix_type,
    )  # fmt: skip
    found = FakeRegistry()
    found.blobs = {d.digest: data for d, data in (base, one, fix)}
    found.layered[f"localhost:5000/t/line:v1@{D1}"] = RemoteLayers(
        digest=D1, image_id=V1, blobs=(base[0], one[0]), diff_ids=("base", "one")
    )
    found.layered[f"localhost:5000/t/line:v2@{D2}"] = RemoteLayers(
        digest=D2, image_id=V2, blobs=(base[0], one[0], fix[0]), diff_ids=v2_ids
    )
    return found


def published(tmp_path: Path, images: LayeredImages, remote: FakeRegistry) -> Project:
    """The project with v1 and v2 published (their digests in the lock)."""
    opened = project(tmp_path, images)
    lock = sample_lock(2)
    versions = tuple(replace(v, digest=d) for v, d in zip(lock.versions, (D1, D2), strict=True))
    write_lock(opened.layout.lock_path("line"), replace(lock, versions=versions))
    return open_project(opened.root, images=images, registry=remote)


BACKUPS = {
    "stale start, own file": layer(
        folder("home/u"), file("home/u/a", "mine"), file("start", "old start")
    ),
    "both changed the config": layer(file("etc/app.conf", "user's")),
    "a whiteout of the fix": layer(whiteout("start")),
    "a whiteout over a folder the fix made": layer(whiteout("srv")),
    "REF's config copied up": layer(file("etc/app.conf", "REF")),  # v1's top layer's, not base's
    "the successor's config": layer(file("etc/app.conf", "fix"), file("etc/other", "x")),
}


@pytest.mark.parametrize("name", sorted(BACKUPS))
def test_the_registry_gives_what_the_engine_gives(tmp_path: Path, name: str) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(BACKUPS[name])
    remote = registry()
    from_engine = restore_check(published(tmp_path / "e", engine(), remote), backup, on=REF)
    images = engine()
    from_registry = restore_check(
        published(tmp_path / "r", images, remote), backup, on=REF, source="registry"
    )
    assert (from_engine.read_from, from_registry.read_from) == ("engine", "registry")
    assert from_registry.check == from_engine.check
    assert from_registry.added_layers == from_engine.added_layers == 1
    assert images.calls == []  # the engine was never asked
    # of the successor only the fix's blob; REF's two for its files at the backup's paths
    # (none when the backup has no file)
    base, one, fix = remote.layered[f"localhost:5000/t/line:v2@{D2}"].blobs
    of_ref = [] if name == "a whiteout of the fix" else [base.digest, one.digest]
    if name == "a whiteout over a folder the fix made":
        assert [c.successor for c in from_registry.check.conflicts] == ["srv/www/"]
    if name == "REF's config copied up":  # REF's top layer's content, not its base's
        assert from_registry.check.dropped == {"etc/app.conf"}
    assert sorted(remote.blob_reads) == sorted([fix.digest, *of_ref])


def test_auto_reads_the_registry_when_the_engine_cannot_read_the_layers(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(BACKUPS["stale start, own file"])
    images = engine()
    images.changes[V2] = None  # a remote engine, another driver, a metacopy layer
    outcome = restore_command(args(backup), published(tmp_path, images, registry()))
    assert outcome.result.to_json()["successor"]["read_from"] == "registry"
    assert "1 layer(s) of the successor read from the registry" in outcome.text
    assert outcome.result.to_json()["verdict"] == "safe after merge"


def test_auto_reads_the_registry_rather_than_pulling_a_version_the_engine_lacks(
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(BACKUPS["stale start, own file"])
    images = engine()
    del images.images[V2]
    report = restore_check(published(tmp_path, images, registry()), backup, on=REF)
    assert report.read_from == "registry"
    assert not any(call.startswith("pull") for call in images.calls)


def test_from_registry_refuses_unpublished_versions(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    merged = tmp_path / "merged.tar"
    remote = registry()
    images = engine()
    opened = open_project(project(tmp_path, images).root, images=images, registry=remote)
    with pytest.raises(EngineError, match="are not published"):
        restore_command(args(backup, merged, read_from="registry"), opened)
    assert (images.calls, remote.blob_reads) == ([], [])
    assert not merged.exists()


def test_a_zstd_layer_is_refused_before_any_blob_is_read(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(BACKUPS["stale start, own file"])
    remote = registry(fix_type="application/vnd.oci.image.layer.v1.tar+zstd")
    merged = tmp_path / "merged.tar"
    with pytest.raises(RegistryError, match=r"layer 3 of .*:v2 is stored as .*\+zstd"):
        restore_check(
            published(tmp_path, engine(), remote), backup, on=REF, write=merged, source="registry"
        )
    assert remote.blob_reads == []
    assert not merged.exists()


def test_from_registry_a_successor_not_built_on_refs_layers(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    remote = registry(v2_ids=("base", "other", "fix"))
    with pytest.raises(PlanError, match="is not built on"):
        restore_check(published(tmp_path, engine(), remote), backup, on=REF, source="registry")
    assert remote.blob_reads == []


def test_from_registry_a_version_the_registry_lost(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    remote = registry()
    del remote.layered[f"localhost:5000/t/line:v2@{D2}"]
    with pytest.raises(RegistryError, match=r"no longer serves .*:v2@"):
        restore_check(published(tmp_path, engine(), remote), backup, on=REF, source="registry")


def test_an_unpublished_version_the_engine_lacks_is_named(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    images = engine()
    del images.images[V2]
    with pytest.raises(EngineError, match=r"the engine has no image of .*:v2"):
        restore_check(project(tmp_path, images), backup, on=REF)


def test_from_registry_an_image_other_than_the_lock_records(tmp_path: Path) -> None:
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    remote = registry()
    key = f"localhost:5000/t/line:v2@{D2}"
    remote.layered[key] = replace(remote.layered[key], image_id=f"sha256:{999:064x}")
    with pytest.raises(RegistryError, match="they are not the same image"):
        restore_check(published(tmp_path, engine(), remote), backup, on=REF, source="registry")
    assert remote.blob_reads == []


def test_the_cli_from_registry_on_an_unpublished_line_exits_1_in_one_paragraph(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, engine()).root
    backup = tmp_path / "backup.tar"
    backup.write_bytes(layer(file("a", "b")))
    merged = tmp_path / "merged.tar"
    done = imagectl(
        root, "restore-check", str(backup), "--on", REF, "--from", "registry", "--write",
        str(merged),
    )  # fmt: skip
    assert done.code == 1
    assert done.stdout == ""
    (paragraph,) = done.stderr.strip().splitlines()
    assert "are not published" in paragraph
    assert "imagectl publish line" in paragraph
    assert not merged.exists()
