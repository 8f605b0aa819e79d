"""Replacing a file so that a reader, a crash or a full disk never leaves half of it: a temp
file beside it, written, flushed to disk, renamed over it, the folder flushed too. The one home
of that rule for every file imagectl must not lose (the lock, a merged layer, an SBOM); caches
that are rebuilt when lost skip the flushes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class ReplaceError(Exception):
    """The file could not be replaced; it is as it was, and no temp file is left."""

    def __init__(self, error: OSError, *, begun: bool) -> None:
        super().__init__(error.strerror or str(error))
        self.strerror = error.strerror or str(error)
        self.begun = begun  # False: not even the temp file could be made (folder, permissions)


def replace_durably(path: Path, write: Callable[[BinaryIO], object], *, mode: int = 0o644) -> None:
    """Write `path` anew through `write`, all of it or nothing. An existing file keeps its
    permissions; a new one gets `mode`."""
    folder = path.parent if str(path.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ReplaceError(exc, begun=False) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ReplaceError(exc, begun=True) from exc
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
