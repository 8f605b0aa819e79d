"""Rendering increment templates in Jinja2's sandbox, with strict variables (imported only when
a template has Jinja markup: see templates.py)."""

from __future__ import annotations

import bisect
import functools
import os
import re
import stat
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment

from imagectl.core.errors import TemplateError
from imagectl.core.templates import _LOADED, MAX_RENDERED_BYTES, decode_template, tracking


class IncrementsLoader(jinja2.BaseLoader):
    """Templates from increments/, read as the lock hashes them and refused when unsafe.

    The lock records a hash of each template's content: a template (or an included snippet)
    that is a symlink leading outside increments/ could change without the line's history
    showing it, so it is refused; a link within increments/ is followed. Anything but a regular
    file (a FIFO would block the read) is refused. Text is UTF-8; a byte-order mark is dropped
    and CRLF line ends become LF before rendering, so an editor's choice changes nothing.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        path = Path(self.root, *split_template_path(template))
        shown = Path("increments") / template
        try:
            info = path.stat()
        except OSError:
            raise jinja2.TemplateNotFound(template) from None
        if not path.resolve().is_relative_to(Path(self.root).resolve()):
            link = f"a symlink to {os.readlink(path)}" if path.is_symlink() else "a symlink"
            raise TemplateError(
                f"is {link}, leading outside increments/: the lock records a hash of a "
                "template's content, and a link's target can change without the line's history "
                "showing it.",
                hint="Copy the file into increments/ instead of linking it (links to files "
                "within increments/ are fine).",
                path=shown,
            )
        if not stat.S_ISREG(info.st_mode):
            raise TemplateError(
                "is not a regular file.", hint="A template is a text file.", path=shown
            )
        text = decode_template(path.read_bytes(), shown)
        mtime = info.st_mtime

        def uptodate() -> bool:
            try:
                return path.stat().st_mtime == mtime
            except OSError:
                return False

        return text, str(path), uptodate


def make_environment(increments_dir: Path) -> SandboxedEnvironment:
    """The one Jinja environment: sandboxed, StrictUndefined, includes rooted at increments/."""
    return _environment(str(increments_dir))


class _TrackingEnvironment(SandboxedEnvironment):
    """Notes the name of every template a render loads, compiled before or not."""

    def _load_template(self, name: str, globals: Any) -> jinja2.Template:
        for loaded in _LOADED.get():
            loaded.add(name)
        return super()._load_template(name, globals)


@functools.lru_cache(maxsize=8)
def _environment(increments_dir: str) -> SandboxedEnvironment:
    # One per process: compiled templates are reused; the loader re-checks files' mtimes.
    return _TrackingEnvironment(
        loader=IncrementsLoader(increments_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML
        trim_blocks=False,
    )


def _name_under(increments_dir: Path, template: Path) -> str:
    """The template's name for the loader; a template outside increments/ is refused."""
    if not template.is_relative_to(increments_dir):
        raise TemplateError(
            "is outside increments/ (a symlink leading out of it?); imagectl renders only "
            "templates under increments/.",
            hint="Copy the file into increments/ instead of linking it.",
            path=template,
        )
    return template.relative_to(increments_dir).as_posix()


def render_with_jinja(
    increments_dir: Path, template: Path, variables: Mapping[str, object]
) -> tuple[str, tuple[str, ...]]:
    """templates.render_tracked for a template with markup: Jinja's render, with the other
    templates it loaded."""
    name = _name_under(increments_dir, template)
    with tracking() as loaded:
        text = _render(increments_dir, name, variables)
    return text, tuple(sorted(loaded - {name}))


def _render(increments_dir: Path, name: str, variables: Mapping[str, object]) -> str:
    env = make_environment(increments_dir)
    shown = Path("increments") / name
    try:
        return _render_limited(env.get_template(name), variables, shown)
    except RecursionError as exc:
        # An include (or macro) that leads back to a template already being rendered.
        raise TemplateError(
            f"{_template_position(exc, increments_dir)}the template includes itself, directly "
            "or through other templates, without end.",
            hint="Remove the include or macro call that leads back to a template being rendered.",
            path=shown,
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        where = Path("increments") / exc.name if exc.name else shown
        raise TemplateError(
            f"line {exc.lineno}: template syntax error: {exc.message}.",
            hint="Fix the Jinja syntax.",
            path=where,
        ) from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"includes {exc.name!r}, which does not exist under increments/.",
            hint="Shared snippets live in increments/_shared/ and are included as "
            '"_shared/<file>".',
            path=shown,
        ) from exc
    except SecurityError as exc:
        raise TemplateError(
            f"{_template_position(exc, increments_dir)}the sandbox refused: {exc}.",
            hint="Templates may only use variables and filters, not Python internals.",
            path=shown,
        ) from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"{_template_position(exc, increments_dir)}undefined variable: {exc.message}.",
            hint="Define it under [vars] in the line's images/<line>.toml, or fix the name "
            "(imagectl sets line, version, parent, repository and base).",
            path=shown,
        ) from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{_template_position(exc, increments_dir)}{exc}.", path=shown) from exc


def _render_limited(template: jinja2.Template, variables: Mapping[str, object], shown: Path) -> str:
    """Render, stopping as soon as the text outgrows MAX_RENDERED_BYTES."""
    parts: list[str] = []
    size = 0  # characters so far: never more than the bytes they encode to
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > MAX_RENDERED_BYTES:
            break
        parts.append(chunk)
    text = "".join(parts)
    if size > MAX_RENDERED_BYTES or len(text.encode()) > MAX_RENDERED_BYTES:
        raise TemplateError(
            f"renders to more than {MAX_RENDERED_BYTES >> 20} MiB, the limit for one increment "
            "(MAX_RENDERED_BYTES).",
            hint="Check its loops; put large content in a folder increment's files and COPY "
            "it, or fetch it in a RUN step.",
            path=shown,
        )
    return text


def _template_position(exc: BaseException, increments_dir: Path) -> str:
    """'line N of FILE: ' from the innermost template frame Jinja left in the traceback."""
    root = str(increments_dir.resolve())
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = str(Path(frame.filename).resolve()) if frame.filename else ""
        if filename.startswith(root):
            rel = Path(filename).relative_to(root)
            return f"line {frame.lineno} of increments/{rel.as_posix()}: "
    return ""


# Invisible and never typed by hand: a private-use pair around a template line number.
_MARKER = re.compile("\ue000([0-9]+)\ue001")


def template_lines(
    increments_dir: Path, template: Path, variables: Mapping[str, object]
) -> tuple[int, ...] | None:
    """For each line of the rendered text (index i -> rendered line i+1), the line of `template`
    it came from; None when the map cannot be made.

    Renders a copy of the template with a marker before each newline of its literal text; lines
    from includes and macros of other files carry no marker and take the next one's line (the
    include or call statement). The map is only returned when the marked copy, markers removed,
    renders exactly what Jinja renders.
    """
    env = make_environment(increments_dir)
    # The map only improves an error message: failing to make one must never hide that error.
    try:
        name = template.relative_to(increments_dir).as_posix()
        if env.loader is None:
            return None
        source, _, _ = env.loader.get_source(env, name)  # the exact text Jinja compiles
        marked = _mark_source(env, source)
        if marked is None:
            return None
        output = env.from_string(marked).render(**variables)
        expected = render_with_jinja(increments_dir, template, variables)[0]
    except Exception:
        return None
    return _read_markers(output, expected)


def _marker(lineno: int) -> str:
    return f"\ue000{lineno}\ue001"


def _mark_source(env: SandboxedEnvironment, source: str) -> str | None:
    """The template rebuilt from its raw tokens, each newline of literal text marked with its line.

    Whitespace control needs no special case: the lexer already drops the whitespace before
    `{%-`, `{{-` and `{#-` from the data token, and puts the whitespace after `-%}`, `-}}` and
    `-#}` inside the closing tag's token, so a marker never stands where a newline is stripped.
    """
    parts: list[str] = []
    end_line = 1
    previous = ""
    for lineno, kind, value in env.lex(source):
        if kind == "name" and value == "extends" and previous == "block_begin":
            return None  # the parent's unmarked lines would borrow the child's line numbers
        if kind != "whitespace":
            previous = kind
        if kind == "data":  # literal text, also inside {% raw %}
            pieces = value.split("\n")
            marked = [piece + _marker(lineno + i) for i, piece in enumerate(pieces[:-1])]
            parts.append("\n".join([*marked, pieces[-1]]))
            end_line = lineno + value.count("\n")
        else:
            parts.append(value)
            end_line = lineno + value.rstrip().count("\n")  # a `-%}` swallows what follows
    # Output after the last marked newline (an include on the last line) takes the last line.
    return "".join(parts) + _marker(end_line)


def _read_markers(output: str, expected: str) -> tuple[int, ...] | None:
    """Each line's template line from the marked output, or None if it differs from `expected`."""
    text: list[str] = []
    positions: list[int] = []  # where each marker stood in the text without markers
    numbers: list[int] = []
    length = start = 0
    for match in _MARKER.finditer(output):
        chunk = output[start : match.start()]
        text.append(chunk)
        length += len(chunk)
        positions.append(length)
        numbers.append(int(match.group(1)))
        start = match.end()
    text.append(output[start:])
    if "".join(text) != expected:
        return None
    lines: list[int] = []
    offset = 0
    for line in expected.splitlines(keepends=True):
        # The marker before this line's newline, else the next one (a line from an include).
        index = bisect.bisect_left(positions, offset)
        if index == len(positions):
            return None
        lines.append(numbers[index])
        offset += len(line)
    return tuple(lines)
