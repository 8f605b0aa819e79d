"""Warnings: said to a person as they happen, and collected for the command's `--json` result
(every result object has a `warnings` list). One collector per process, since a CLI process
runs one command. `build next --jobs N` warns from several threads: list.append is atomic in
CPython, and the collections are opened and closed by the main thread alone, so no lock (and
no `threading` import on the path of history and resolve)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagectl.core.ports import Say

_COLLECTED: list[list[Notice]] = []  # the open collections, innermost last


@dataclass(frozen=True, slots=True)
class Notice:
    """A warning about one image line."""

    line: str  # the image line it is about
    text: str

    def __str__(self) -> str:
        return f"{self.line}: {self.text}"


def warn(say: Say, line: str, text: str) -> None:
    """Say `line: warning: text`, and keep it for the JSON result."""
    say(f"{line}: warning: {text}")
    for collected in tuple(_COLLECTED):
        collected.append(Notice(line, text))


@contextlib.contextmanager
def collecting() -> Iterator[list[Notice]]:
    """Every warning given while inside, in order."""
    collected: list[Notice] = []
    _COLLECTED.append(collected)
    try:
        yield collected
    finally:
        _COLLECTED.remove(collected)
