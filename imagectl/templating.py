"""Rendering increment templates in Jinja2's sandbox, with strict variables."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Mapping
from pathlib import Path

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from imagectl.errors import TemplateError


def make_environment(increments_dir: Path) -> SandboxedEnvironment:
    """The one Jinja environment: sandboxed, StrictUndefined, includes rooted at increments/."""
    return _environment(str(increments_dir))


@functools.lru_cache(maxsize=8)
def _environment(increments_dir: str) -> SandboxedEnvironment:
    # One per process: compiled templates are reused; the loader re-checks files' mtimes.
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(increments_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfiles, not HTML
        trim_blocks=False,
    )


def render_template(increments_dir: Path, template: Path, variables: Mapping[str, object]) -> str:
    """Render `template` (a path under increments_dir); errors name the file and line."""
    env = make_environment(increments_dir)
    name = template.relative_to(increments_dir).as_posix()
    shown = Path("increments") / name
    try:
        return env.get_template(name).render(**variables)
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


def _template_position(exc: BaseException, increments_dir: Path) -> str:
    """'line N of FILE: ' from the innermost template frame Jinja left in the traceback."""
    root = str(increments_dir.resolve())
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = str(Path(frame.filename).resolve()) if frame.filename else ""
        if filename.startswith(root):
            rel = Path(filename).relative_to(root)
            return f"line {frame.lineno} of increments/{rel.as_posix()}: "
    return ""
