"""A local cache of renders: the increment text that a given set of render inputs gave.

Proving that no built increment drifted means rendering every one of them again, which for
years of versions costs seconds on every command. The cache keys a render by everything that
goes into it (imagectl's version, the line's settings and vars, the increment's source hash,
version, parent, and every file under increments/_shared/), so a hit is as good as rendering.
It lives in .imagectl/ (not committed); losing it only costs time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from imagectl import __version__
from imagectl.core.config import RepositoryLayout
from imagectl.core.model import ImageLine, Increment

_CACHES: dict[Path, RenderCache] = {}
_GUARD = threading.Lock()


class _JsonTable:
    """One JSON object on disk, read on first use, written back only when it grew.

    Each entry is stored as [value, check], where check hashes the key and the value: an entry
    that was damaged or written by hand (garbage, a truncated file, a value for the wrong key)
    does not match its check and is never used; a cache miss renders again and replaces it.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list[str]] | None = None
        self._dirty = False

    def _loaded(self) -> dict[str, list[str]]:
        if self._entries is None:
            self._entries = {}
            # is_file: never open a FIFO or a folder left in its place
            with contextlib.suppress(OSError, ValueError, RecursionError):
                loaded = (
                    json.loads(self._path.read_text(encoding="utf-8"))
                    if self._path.is_file()
                    else None
                )
                if isinstance(loaded, dict):
                    self._entries = {
                        key: entry
                        for key, entry in loaded.items()
                        if isinstance(entry, list)
                        and len(entry) == 2
                        and all(isinstance(part, str) for part in entry)
                    }
        return self._entries

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._loaded().get(key)
        if entry is None or entry[1] != _check(key, entry[0]):
            return None
        return entry[0]

    def put(self, key: str, value: str) -> None:
        entry = [value, _check(key, value)]
        with self._lock:
            entries = self._loaded()
            if entries.get(key) != entry:
                entries[key] = entry
                self._dirty = True

    def save(self) -> None:
        """Write the table if it grew; a cache that cannot be written is simply not kept."""
        with self._lock:
            if not self._dirty or self._entries is None:
                return
            text = json.dumps(self._entries)
            self._dirty = False
        with contextlib.suppress(OSError):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self._path)


def _check(key: str, value: str) -> str:
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()[:16]


class RenderCache:
    """Dockerfile and instruction hashes (for the drift check, "<dockerfile> <instructions>")
    and increment texts (for the reference), kept
    apart so that the frequent drift check never loads the larger texts."""

    def __init__(self, layout: RepositoryLayout) -> None:
        self.hashes = _JsonTable(layout.state_dir / "render-hashes-v2.json")
        self.bodies = _JsonTable(layout.state_dir / "render-bodies.json")

    def key(
        self, line: ImageLine, increment: Increment, *, version: int, parent: str, shared: str
    ) -> str:
        """`shared` is shared_hash() taken for this check: snippets may change between checks."""
        inputs = (
            line_inputs(line),
            increment.path.as_posix(),
            increment.source_hash,
            str(version),
            parent,
            shared,
        )
        return hashlib.sha256("\0".join(inputs).encode()).hexdigest()

    def save(self) -> None:
        self.hashes.save()
        self.bodies.save()


@functools.lru_cache(maxsize=256)
def _line_inputs(name: str, repository: str, base: str, variables: str) -> str:
    return json.dumps([__version__, name, repository, base, variables])


_LAST_LINE: list[tuple[ImageLine, str]] = []  # the line asked last, for the next increment


def line_inputs(line: ImageLine) -> str:
    """Everything of the line that a render depends on, as one string."""
    # `plan` asks once per built increment: thousands of times for one line in a row.
    if _LAST_LINE and _LAST_LINE[0][0] is line:
        return _LAST_LINE[0][1]
    variables = json.dumps(line.vars, sort_keys=True, default=str)
    found = _line_inputs(line.name, line.repository, line.base, variables)
    _LAST_LINE[:] = [(line, found)]
    return found


def render_cache(layout: RepositoryLayout) -> RenderCache:
    """The process-wide cache of one repository."""
    root = layout.root.resolve()
    with _GUARD:
        if root not in _CACHES:
            _CACHES[root] = RenderCache(layout)
        return _CACHES[root]


def shared_hash(layout: RepositoryLayout) -> str:
    """One hash over every file under increments/_shared/."""
    folder = layout.shared_dir
    digest = hashlib.sha256()
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
