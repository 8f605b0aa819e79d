"""Increment templates without Jinja: their text, and a render that loads Jinja (templating.py,
~30 ms of imports) only when a template has Jinja markup; plain text renders to itself."""

from __future__ import annotations

import contextlib
import contextvars
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from imagectl.core.errors import TemplateError

# An increment renders to one stage of a Dockerfile: one larger than this is a mistake (a loop
# that does not end where it should, a file pasted in), refused before it reaches the engine.
MAX_RENDERED_BYTES = 10 * 1024 * 1024


# The templates a render loads (its own, every include and import, also one that is missing):
# what its text depends on besides the variables. Per render, so threads never mix them up.
# The sets that note every template loaded now: one per render_tracked or tracking() around it.
_LOADED: contextvars.ContextVar[tuple[set[str], ...]] = contextvars.ContextVar("loaded", default=())


@contextlib.contextmanager
def tracking() -> Iterator[set[str]]:
    """The names (under increments/) of every template rendered or loaded within."""
    loaded: set[str] = set()
    token = _LOADED.set((*_LOADED.get(), loaded))
    try:
        yield loaded
    finally:
        _LOADED.reset(token)


def decode_template(raw: bytes, shown: Path) -> str:
    """A template's text: UTF-8 without a byte-order mark, with LF line ends."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TemplateError(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}, offset {exc.start}).",
            hint="Save it as UTF-8 (a byte-order mark is allowed); templates are read as UTF-8.",
            path=shown,
        ) from exc
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


# What makes a text a Jinja template (the default delimiters; no line statements are set), or
# changes its text on the way through Jinja's lexer (a lone CR becomes LF).
_JINJA_MARKUP = ("{{", "{%", "{#", "\r")


def render_template(increments_dir: Path, template: Path, variables: Mapping[str, object]) -> str:
    """Render `template` (a path under increments_dir); errors name the file and line."""
    return render_tracked(increments_dir, template, variables)[0]


def render_tracked(
    increments_dir: Path, template: Path, variables: Mapping[str, object]
) -> tuple[str, tuple[str, ...]]:
    """The rendered text, and the names (under increments/) of every other template the render
    loaded: the snippets it includes or imports, directly or through others."""
    plain = _plain_text(increments_dir, template)
    if plain is not None:
        return plain, ()
    from imagectl.core import templating  # noqa: PLC0415

    return templating.render_with_jinja(increments_dir, template, variables)


def _plain_text(increments_dir: Path, template: Path) -> str | None:
    """The text of a regular file under increments/ without Jinja markup (what Jinja would
    render it to, keeping its trailing newline); None for anything else, which Jinja renders
    or refuses with its own messages."""
    try:
        if not template.is_relative_to(increments_dir) or not template.resolve().is_relative_to(
            increments_dir.resolve()
        ):
            return None
        info = template.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RENDERED_BYTES:
            return None
        raw = template.read_bytes()
    except OSError:
        return None
    text = decode_template(raw, Path("increments") / template.relative_to(increments_dir))
    if any(markup in text for markup in _JINJA_MARKUP):
        return None
    name = template.relative_to(increments_dir).as_posix()
    for loaded in _LOADED.get():
        loaded.add(name)
    return text


def template_lines(
    increments_dir: Path, template: Path, variables: Mapping[str, object]
) -> tuple[int, ...] | None:
    """For each rendered line, the line of `template` it came from (see templating.py)."""
    from imagectl.core import templating  # noqa: PLC0415

    return templating.template_lines(increments_dir, template, variables)


def describe_line(template_display: Path, lines: tuple[int, ...] | None, rendered_line: int) -> str:
    """'line 7 of increments/x/0003-y.Dockerfile.j2', or the rendered line when it is unknown."""
    if lines is not None and 1 <= rendered_line <= len(lines):
        return f"line {lines[rendered_line - 1]} of {template_display.as_posix()}"
    return f"line {rendered_line} of the rendered increment"
