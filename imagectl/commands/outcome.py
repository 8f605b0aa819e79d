"""What a command hands back to the CLI: its result, what a person sees, and the exit code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from imagectl.commands.exits import EXIT_OK
from imagectl.core.errors import ImagectlError


class JsonResult(Protocol):
    def to_json(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command prints and exits with."""

    result: JsonResult  # printed as JSON with --json
    text: str  # what a person sees otherwise
    code: int = EXIT_OK
    errors: tuple[ImagectlError, ...] = ()  # per-line failures: stderr for people, in the JSON
    # Said on stderr beside the text (stdout stays what scripts read); the JSON has its own.
    warnings: tuple[str, ...] = ()
