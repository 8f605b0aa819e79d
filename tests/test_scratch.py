"""Checkpoint's scratch images are recorded while they exist: the next command removes those of
a killed checkpoint (its owner is gone), never those of a live one, and lists no images."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from unittest import mock

from imagectl.app.scratch import remove_scratch_left, scratch_recorded
from imagectl.core.config import RepositoryLayout
from imagectl.core.owners import owner_tag
from tests.fakes import FakeImages


def test_a_live_checkpoints_scratch_images_stay_and_its_record_goes_with_it(tmp_path: Path) -> None:
    layout = RepositoryLayout(root=tmp_path)
    images = FakeImages()
    images.add(layers=("l1",), tag="imagectl-checkpoint/x:me")
    with scratch_recorded(layout, ("imagectl-checkpoint/x:me", "imagectl-checkpoint/x:me-config")):
        assert remove_scratch_left(layout, images) == ()  # its owner (this process) is alive
        assert "imagectl-checkpoint/x:me" in images.tags
    assert list((layout.state_dir / "scratch").iterdir()) == []


def test_a_killed_checkpoints_scratch_images_are_removed_once(tmp_path: Path) -> None:
    layout = RepositoryLayout(root=tmp_path)
    images = FakeImages()
    images.add(layers=("l1",), tag="imagectl-checkpoint/x:gone")
    ended = subprocess.Popen(["sleep", "0.01"])
    with mock.patch("os.getpid", return_value=ended.pid):
        dead_owner = owner_tag(ended.pid)
        refs = ("imagectl-checkpoint/x:gone", "imagectl-checkpoint/x:c")
        manager = scratch_recorded(layout, refs)
        manager.__enter__()  # never left: as after a SIGKILL
    ended.wait()
    assert (layout.state_dir / "scratch" / f"{dead_owner}.txt").exists()
    removed = remove_scratch_left(layout, images)
    assert removed == ("scratch image imagectl-checkpoint/x:gone",)  # the other was never made
    assert "imagectl-checkpoint/x:gone" not in images.tags
    assert remove_scratch_left(layout, images) == ()
    assert os.listdir(layout.state_dir / "scratch") == []
