"""File locks: one build or publish at a time per repository, one pusher per image repository
on this host."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl.app.scratch import remove_scratch_left
from imagectl.core.config import RepositoryLayout

if TYPE_CHECKING:
    from imagectl.app.project import Project
    from imagectl.core.ports import Say
from imagectl.core.errors import BusyError

HOST_LOCK_WAIT = 900.0  # s; a push of a large image may take minutes
POLL = 0.05  # s between tries while another process holds a lock


@contextlib.contextmanager
def held(path: Path, *, wait: float, busy: BusyError) -> Iterator[None]:
    """Hold the lock file `path` (flock: the kernel drops it when its holder dies, even by
    SIGKILL), waiting up to `wait` seconds; raise `busy` when it stays taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy from None
                time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def repository_lock(
    layout: RepositoryLayout, *, wait: float
) -> contextlib.AbstractContextManager[None]:
    """One build, publish or checkpoint at a time per image repository (the git checkout)."""
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    path = layout.state_dir / "build.lock"
    return held(
        path,
        wait=wait,
        busy=BusyError(
            "another imagectl build or publish is running in this repository.",
            hint=f"Wait for it to finish (or pass --wait SECONDS); the lock is {path}.",
        ),
    )


def publish_lock(
    repository: str, *, wait: float = HOST_LOCK_WAIT
) -> contextlib.AbstractContextManager[None]:
    """Serialize look-up-then-push per image repository among publishers on this host.

    A registry such as distribution overwrites a tag silently, so the check before a push is
    only safe while no other publisher can push between the check and the push.
    """
    folder = Path(tempfile.gettempdir()) / "imagectl-publish-locks"
    folder.mkdir(mode=0o1777, exist_ok=True)
    name = hashlib.sha256(repository.encode()).hexdigest()[:24]
    return held(
        folder / f"{name}.lock",
        wait=wait,
        busy=BusyError(
            f"another publisher has been pushing to {repository} for {wait:.0f} s.",
            hint="Wait for it to finish, then run again.",
        ),
    )


@contextlib.contextmanager
def locked_and_swept(project: Project, *, wait: float, say: Say) -> Iterator[None]:
    """The repository's lock, and then the containers of imagectl processes that were killed
    (a SIGKILL skips every `finally`) removed: no rerun leaves them behind."""
    with repository_lock(project.layout, wait=wait):
        images = project.adapters.images
        for what in images.remove_leftovers() + remove_scratch_left(project.layout, images):
            say(f"imagectl: removed a leftover {what}: the process that made it is gone")
        yield
