"""A layer folder read below a selection's roots only (the archive proof's keyrings): the
same change as the whole walk gives, the folders above a root's marks honoured, and nothing
outside the roots visited, so the cost is what the roots hold, not what the image weighs."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from imagectl.adapters.docker_layers import read_layer
from imagectl.core.aptkeys import KEYRINGS
from imagectl.core.layerfiles import merged_files

WHOLE_WALK = dataclasses.replace(KEYRINGS, roots=None)


def put(root: Path, name: str, data: bytes = b"x") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def whiteout(root: Path, name: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o600, 0)  # overlay's whiteout: a 0/0 character device


def test_the_rooted_read_is_the_whole_walk_s_change(tmp_path: Path) -> None:
    put(tmp_path, "etc/apt/trusted.gpg", b"legacy")
    put(tmp_path, "etc/apt/trusted.gpg.d/ubuntu.gpg", b"ubuntu")
    put(tmp_path, "etc/apt/trusted.gpg.d/notes.txt", b"not a keyring")
    put(tmp_path, "usr/share/keyrings/vendor.asc", b"vendor")
    put(tmp_path, "usr/share/keyrings/ubuntu-archive-removed-keys.gpg", b"retired")
    whiteout(tmp_path, "etc/apt/keyrings/old.gpg")
    opaque = tmp_path / "usr/share/keyrings"
    os.setxattr(opaque, "trusted.overlay.opaque", b"y")
    for index in range(50):
        put(tmp_path, f"usr/lib/python3/site-{index}/module.py")
    rooted = read_layer(tmp_path, KEYRINGS)
    assert rooted is not None
    assert rooted == read_layer(tmp_path, WHOLE_WALK)
    assert rooted.files == {
        "etc/apt/trusted.gpg": b"legacy",
        "etc/apt/trusted.gpg.d/ubuntu.gpg": b"ubuntu",
        "usr/share/keyrings/vendor.asc": b"vendor",
    }
    assert rooted.deleted == ("etc/apt/keyrings/old.gpg",)
    assert rooted.opaque == ("usr/share/keyrings",)


def test_nothing_outside_the_roots_is_visited(tmp_path: Path) -> None:
    put(tmp_path, "etc/apt/trusted.gpg.d/debian.gpg", b"debian")
    renamed = tmp_path / "opt" / "conda"
    renamed.mkdir(parents=True)
    # A folder the whole walk must give up on (its content stays in a lower layer): the
    # rooted read never reaches it.
    os.setxattr(renamed, "trusted.overlay.redirect", b"/opt/old-conda")
    assert read_layer(tmp_path, WHOLE_WALK) is None
    rooted = read_layer(tmp_path, KEYRINGS)
    assert rooted is not None
    assert rooted.files == {"etc/apt/trusted.gpg.d/debian.gpg": b"debian"}


def test_a_mark_on_a_folder_above_a_root_is_honoured(tmp_path: Path) -> None:
    put(tmp_path, "usr/share/keyrings/vendor.gpg", b"vendor")
    os.setxattr(tmp_path / "usr" / "share", "trusted.overlay.redirect", b"/usr/old-share")
    assert read_layer(tmp_path, KEYRINGS) is None


def test_a_folder_above_a_root_whited_out_or_replaced_hides_the_lower_keyrings(
    tmp_path: Path,
) -> None:
    lower = tmp_path / "lower"
    put(lower, "etc/apt/trusted.gpg.d/debian.gpg", b"debian")
    put(lower, "usr/share/keyrings/vendor.gpg", b"vendor")
    upper = tmp_path / "upper"
    whiteout(upper, "etc/apt")
    (upper / "usr").mkdir()
    (upper / "usr" / "share").symlink_to("/opt/share")
    changes = [read_layer(lower, KEYRINGS), read_layer(upper, KEYRINGS)]
    assert None not in changes
    assert changes[1] is not None
    assert changes[1].deleted == ("etc/apt", "usr/share")
    assert merged_files(c for c in changes if c is not None) == {}
