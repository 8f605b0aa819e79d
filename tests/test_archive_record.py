"""The input archive's record, the line settings that govern it, its lock fields and the
Dockerfile of an offline rebuild: pure, no engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imagectl.core.archive import (
    ArchivedFile,
    ArchivedImage,
    ArchiveFormatError,
    InputArchive,
    archive_from_json,
    archive_tag,
    distinct_files,
)
from imagectl.core.config import RepositoryLayout, load_lines
from imagectl.core.errors import ConfigError, LockfileError
from imagectl.core.lockfile import read_lock, write_lock
from imagectl.core.model import Lock
from imagectl.core.offline import SETTINGS_TARGET, offline_dockerfile, replayed_files

from .helpers import locked_version, write

GOOD = 'repository = "localhost:5000/pods/x"\nbase = "localhost:5000/busybox:latest"\n'
SHA = "ab" * 32


def _archive(**changes: object) -> InputArchive:
    fields: dict[str, object] = {
        "line": "x",
        "version": 3,
        "image_id": "sha256:" + "cd" * 32,
        "files": (
            ArchivedFile(
                url="http://deb.example/pool/a_1_all.deb",
                sha256=SHA,
                size=10,
                kind="deb",
                verified=True,
                package="a=1/all",
            ),
            ArchivedFile(
                url="http://deb.example/dists/s/InRelease",
                sha256="ef" * 32,
                size=5,
                kind="index",
                verified=True,
            ),
        ),
        "images": (ArchivedImage(ref="localhost:5000/busybox@sha256:" + "12" * 32, role="base"),),
        "missing": (),
    }
    fields.update(changes)
    return InputArchive(**fields)  # type: ignore[arg-type]


def test_a_record_reads_back_equal_and_its_bytes_do_not_change() -> None:
    archive = _archive()
    data = archive.config_bytes()
    assert archive_from_json(data) == archive
    assert archive_from_json(data).config_bytes() == data
    assert json.loads(data)["complete"] is True


def test_missing_inputs_make_an_archive_incomplete() -> None:
    archive = _archive(missing=("https://pypi.org:443: https CONNECT (not captured)",))
    assert (archive.complete, archive.state) == (False, "incomplete")
    assert json.loads(archive.config_bytes())["complete"] is False


@pytest.mark.parametrize(
    "broken",
    [
        b"not json",
        b'{"format": 2}',
        b'{"format": 1, "line": "x"}',
        json.dumps(
            {
                **json.loads(_archive().config_bytes()),
                "files": [{"url": "u", "sha256": "x", "size": 1, "kind": "deb"}],
            }
        ).encode(),
        json.dumps(
            {**json.loads(_archive().config_bytes()), "images": [{"ref": "r", "role": "other"}]}
        ).encode(),
    ],
)
def test_a_record_imagectl_did_not_write_is_refused(broken: bytes) -> None:
    with pytest.raises(ArchiveFormatError):
        archive_from_json(broken)


def test_the_same_content_under_two_urls_is_one_file_of_the_artifact() -> None:
    twice = _archive().files[0]
    other = ArchivedFile(url="http://deb.example/by-hash/SHA256/ab", sha256=SHA, size=10,
                         kind="index")  # fmt: skip
    assert distinct_files(_archive(files=(twice, other))) == (twice,)


def test_archives_live_in_their_own_repository_beside_the_images() -> None:
    assert archive_tag("localhost:5000/pods/noble", 7) == "localhost:5000/pods/noble-inputs:v7"


def _line(tmp_path: Path, extra: str) -> RepositoryLayout:
    write(tmp_path / "images" / "x.toml", GOOD + extra)
    return RepositoryLayout(root=tmp_path)


def test_an_archive_is_kept_unless_the_line_says_otherwise(tmp_path: Path) -> None:
    (line,) = load_lines(_line(tmp_path, ""))
    assert (line.archive, line.archive_complete) == (True, False)
    (strict,) = load_lines(_line(tmp_path, '[archive]\nrequire = "complete"\n'))
    assert (strict.archive, strict.archive_complete) == (True, True)
    (off,) = load_lines(_line(tmp_path, "[archive]\nenabled = false\n"))
    assert off.archive is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("archive = 3\n", r"\[archive\] must be a table"),
        ("[archive]\nkeep = true\n", r"\[archive\] must be a table"),
        ('[archive]\nenabled = "no"\n', "is not true or false"),
        ('[archive]\nrequire = "all"\n', 'is not "complete"'),
        ('[archive]\nenabled = false\nrequire = "complete"\n', "does not keep"),
    ],
)
def test_bad_archive_settings_name_the_file(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_lines(_line(tmp_path, extra))
    assert "images/x.toml" in str(info.value)


def test_the_lock_keeps_the_archive_fields_and_refuses_a_bad_state(tmp_path: Path) -> None:
    path = tmp_path / "x.lock.toml"
    version = locked_version(1)
    from dataclasses import replace  # noqa: PLC0415

    recorded = replace(
        version, archive_state="incomplete", archive_files=4, archive_missing=1,
        archive="sha256:" + "9" * 64,
    )  # fmt: skip
    lock = Lock(line="x", repository="localhost:5000/pods/x", base="b", versions=(recorded,))
    write_lock(path, lock)
    text = path.read_text()
    assert 'archive_state = "incomplete"' in text
    back = read_lock(path, line="x", repository="localhost:5000/pods/x", base="b")
    assert back.versions[0] == recorded
    path.write_text(text.replace('"incomplete"', '"half"'))
    with pytest.raises(LockfileError, match="archive_state"):
        read_lock(path, line="x", repository="localhost:5000/pods/x", base="b")


def test_a_version_without_an_archive_writes_no_archive_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.lock.toml"
    lock = Lock(line="x", repository="r", base="b", versions=(locked_version(1),))
    write_lock(path, lock)
    assert "archive" not in path.read_text()


def test_every_run_of_an_offline_rebuild_mounts_the_settings_and_nothing_else_changes() -> None:
    text = (
        "FROM base@sha256:" + "1" * 64 + "\n"
        "RUN apt-get update && \\\n    apt-get install -y a\n"
        "COPY x /x\n"
        "run --network=default <<EOF\necho hi\nEOF\n"
        'RUN ["ls", "/"]\n'
    )
    out = offline_dockerfile(text, context="ctx")
    mount = f"--mount=type=bind,from=ctx,source=apt.conf,target={SETTINGS_TARGET} "
    assert out.count(mount) == 3
    assert out.replace(mount, "") == text
    assert f"run {mount}--network=default <<EOF" in out


def test_an_index_fetched_by_hash_is_also_served_by_its_path_and_nothing_else_is_added(
    tmp_path: Path,
) -> None:
    """Told to accept an expired signature, apt asks for an index by its path, not by hash:
    the replay serves it the bytes the signed Release names for that path, never others."""
    from .aptrepo import Package, key_home, make_key, make_repo  # noqa: PLC0415

    with key_home() as home:
        repo = make_repo(tmp_path / "repo", [Package(name="a", version="1")], key=make_key(home))
    base = "http://mirror.test/repo"
    stored = tmp_path / "store"
    stored.mkdir()
    files = {}
    for path in (
        "dists/stable/InRelease",
        repo.by_hash("Packages.xz"),
        repo.deb_path(repo.packages[0]),
    ):
        data = (repo.root / path).read_bytes()
        target = stored / hashlib.sha256(data).hexdigest()
        target.write_bytes(data)
        files[f"{base}/{path}"] = target
    served = replayed_files(files)
    plain = f"{base}/{repo.index_dir()}Packages.xz"
    assert served[plain] == files[f"{base}/{repo.by_hash('Packages.xz')}"]
    assert f"{base}/{repo.index_dir()}Packages.gz" not in served  # not archived: not invented
    assert {url: path for url, path in served.items() if url != plain} == files
