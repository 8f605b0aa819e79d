"""An image layer read from its blob as it streams (core/layerblobs): the same LayerChange the
overlay2 store gives for that layer (docker_layers.read_layer), only the selected members'
data kept, a hard link's data fetched from its target, damaged blobs refused; and the files
of an image merged from its layers (core/layerfiles.merged_files)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from imagectl.adapters.docker_layers import read_layer
from imagectl.core.errors import RegistryError
from imagectl.core.layerblobs import layer_change, readable
from imagectl.core.layerfiles import FileSelection, LayerChange, merged_files, merged_view

from .layer_tars import file, folder, hardlink, layer, opaque, symlink, whiteout

EVERYTHING = FileSelection(match=lambda _p: True, globs=("*",))


class Blob:
    """A blob opened as the registry adapter opens one; counts the passes over it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[IO[bytes]]:
        self.opened += 1
        yield io.BufferedReader(_Unseekable(self.data))


class _Unseekable(io.RawIOBase):
    """A network stream: read forward only (tarfile's stream mode must not seek)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._data.readinto(buffer)


def only(*paths: str) -> FileSelection:
    return FileSelection(match=frozenset(paths).__contains__, globs=())


def test_a_gzip_layer_s_whiteouts_opaque_folders_files_and_symlinks() -> None:
    data = layer(
        folder("etc"),
        file("etc/app.conf", "fix", mode=0o600, uid=0, gid=42),
        file("./etc/other", "not selected"),
        whiteout("etc/old"),
        opaque("srv"),
        symlink("etc/pager", "/usr/bin/less"),
        file("etc/.wh..wh.plnk", ""),  # aufs' own file: no change of a path
    )
    wanted = only("etc/app.conf", "etc/pager")
    change = layer_change(Blob(gzip.compress(data)), wanted, name="t")
    assert change == LayerChange(
        deleted=("etc/old",),
        opaque=("srv",),
        files={"etc/app.conf": b"fix"},
        links={"etc/pager": "/usr/bin/less"},
        meta={"etc/app.conf": (0o600, 0, 42)},
    )
    assert layer_change(Blob(data), wanted, name="t") == change  # a plain tar the same


def test_a_hard_link_whose_target_was_not_selected_is_read_in_a_second_pass() -> None:
    blob = Blob(gzip.compress(layer(file("etc/oom", "900"), hardlink("etc/oom.link", "etc/oom"))))
    change = layer_change(blob, only("etc/oom.link"), name="t")
    assert change.files == {"etc/oom.link": b"900"}
    assert blob.opened == 2
    blob = Blob(layer(file("etc/oom", "900"), hardlink("etc/oom.link", "./etc/oom")))
    change = layer_change(blob, only("etc/oom", "etc/oom.link"), name="t")
    assert change.files == {"etc/oom": b"900", "etc/oom.link": b"900"}
    assert blob.opened == 1  # the target's data was kept already


def test_the_blob_reader_matches_the_overlay2_store(tmp_path: Path) -> None:
    """The same layer as an overlay2 `diff` folder (0/0 character device whiteouts, a hard
    link as a second name of one inode) and as the tar docker pushes for it."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.conf").write_text("fix")
    os.chmod(tmp_path / "etc" / "app.conf", 0o640)
    os.chown(tmp_path / "etc" / "app.conf", 0, 42)
    os.link(tmp_path / "etc" / "app.conf", tmp_path / "etc" / "app.link")
    (tmp_path / "etc" / "pager").symlink_to("/usr/bin/less")
    os.mknod(tmp_path / "etc" / "old", 0o020000, os.makedev(0, 0))
    stored = read_layer(tmp_path, EVERYTHING)
    blob = layer(
        folder("etc"),
        file("etc/app.conf", "fix", mode=0o640, gid=42),
        hardlink("etc/app.link", "etc/app.conf", mode=0o640, gid=42),
        symlink("etc/pager", "/usr/bin/less"),
        whiteout("etc/old"),
    )
    assert layer_change(Blob(blob), EVERYTHING, name="t") == stored
    assert stored is not None
    assert stored.meta["etc/app.link"] == (0o640, 0, 42)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not a tar at all" * 64, "is not a complete tar"),
        (gzip.compress(layer(file("a", "x" * 4096)))[:-200], "is not a complete tar"),
        (layer(file("../etc/cron.d/x", "evil")), "escapes the root"),
        (layer(hardlink("b", "a")), "not a file earlier in it"),
    ],
)
def test_a_damaged_layer_is_a_registry_error(data: bytes, says: str) -> None:
    with pytest.raises(RegistryError, match=says):
        layer_change(Blob(data), only("b", "a"), name="3 of repo:v2")


def test_only_plain_and_gzip_layers_are_read() -> None:
    assert readable("application/vnd.oci.image.layer.v1.tar+gzip")
    assert readable("application/vnd.docker.image.rootfs.diff.tar.gzip")
    assert readable("application/vnd.oci.image.layer.v1.tar")
    assert not readable("application/vnd.oci.image.layer.v1.tar+zstd")
    assert not readable("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")


def test_merged_view_keeps_the_mode_and_owner_of_the_layer_that_wrote_the_file() -> None:
    files, meta = merged_view(
        (
            LayerChange(
                files={"a": b"1", "b": b"2"}, meta={"a": (0o644, 0, 0), "b": (0o644, 0, 0)}
            ),
            LayerChange(files={"a": b"1"}, meta={"a": (0o600, 1000, 1000)}),  # a chmod, chown
            LayerChange(files={"b": b"3"}),  # a reader that does not say: unknown
        )
    )
    assert files == {"a": b"1", "b": b"3"}
    assert meta == {"a": (0o600, 1000, 1000)}


def test_merged_files_a_file_below_a_symlink_an_upper_layer_put_there_is_gone() -> None:
    merged = merged_files(
        (
            LayerChange(files={"etc/a": b"1", "etc/b": b"2", "srv/x": b"3", "opt/y": b"4"}),
            LayerChange(links={"etc/a": "/elsewhere"}, deleted=("opt",), opaque=("srv",)),
            LayerChange(files={"srv/z": b"5"}),
        )
    )
    assert merged == {"etc/b": b"2", "srv/z": b"5"}


def test_a_tar_that_leaves_out_a_member_s_folders_has_them_all_the_same() -> None:
    """Unpacking makes them, as the overlay2 store's layer folder has them."""
    data = layer(file("opt/tool/plugins/x", "1"), whiteout("srv/old"))
    wanted = only("opt", "opt/tool/plugins", "srv", "etc")
    assert layer_change(Blob(data), wanted, name="t").dirs == ("opt", "opt/tool/plugins", "srv")
