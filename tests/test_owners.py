"""Owners of what imagectl leaves in the engine: a tag names this host's process exactly."""

from __future__ import annotations

import os
import subprocess

from imagectl.core.owners import owner_tag, tag_owner_gone


def test_a_tag_of_a_running_process_is_not_gone_and_one_of_an_ended_process_is() -> None:
    assert not tag_owner_gone(owner_tag(os.getpid()))
    ended = subprocess.Popen(["true"])
    tag = owner_tag(ended.pid)  # while it runs (or as a zombie, until waited for)
    ended.wait()
    assert tag_owner_gone(tag)


def test_a_tag_of_another_host_or_of_no_owner_is_never_taken_for_gone() -> None:
    host, pid, start = owner_tag(os.getpid()).rsplit("-", 2)
    assert not tag_owner_gone(f"another{host}-999999999-{start}")  # not this host's to tell
    assert not tag_owner_gone("pid12345")  # the old form, or anyone's tag
    assert tag_owner_gone(f"{host}-999999999-{start}")  # no such process here
    assert not tag_owner_gone(f"{host}-{pid}-{start}")
