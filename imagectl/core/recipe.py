"""Composing the Dockerfile of one build step from a rendered increment, and its rules.

An increment holds instructions for one new stage on top of its parent. It may start with
parser directives (`# escape=`...), which must stay the very first lines of the Dockerfile, and
it may define helper stages (`FROM <image> AS build`) before its own stage, which must then be
the last one and start `FROM {{ parent }}`. Every image it names (a helper's FROM,
`COPY --from=<image>`, `RUN --mount=from=<image>`) is pinned by digest when it is built.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dockerfile

from imagectl.core.errors import TemplateError

DIRECTIVE = re.compile(r"^#\s*(syntax|escape|check)\s*=\s*(\S*)\s*$", re.IGNORECASE)
STAGE_NAME = re.compile(r"^[a-z][a-z0-9._-]*$")
# Describes a line of the rendered increment for an error ("line 7 of increments/x.j2").
Where = Callable[[int], str]


def rendered_line(line: int) -> str:
    return f"line {line} of the rendered increment"


@dataclass(frozen=True, slots=True, kw_only=True)
class IncrementRecipe:
    """A rendered increment, checked: what goes at the top, what goes after FROM."""

    directives: tuple[str, ...]  # parser directive lines, as written
    body: str  # the rendered increment without its directives
    body_start: int  # the line of the rendered increment where `body` starts
    own_from: bool  # it starts its own stage (helper stages before it)
    images: tuple[str, ...]  # images it names besides its parent, as written
    stages: tuple[str, ...]  # its helper stages' names
    escape: str  # the escape character its instructions are written with


@dataclass(frozen=True, slots=True, kw_only=True)
class ComposedDockerfile:
    """The Dockerfile a version is built from, and where its increment's lines are."""

    text: str
    body_offset: int  # Dockerfile line = rendered increment line + body_offset (after directives)
    directive_lines: int


def split_directives(text: str) -> tuple[tuple[str, ...], str]:
    """Parser directives are only directives as the very first lines (BuildKit's rule)."""
    lines = text.splitlines(keepends=True)
    count = 0
    while count < len(lines) and DIRECTIVE.match(lines[count].strip()):
        count += 1
    return tuple(line.rstrip("\n") for line in lines[:count]), "".join(lines[count:])


def escape_of(directives: tuple[str, ...]) -> str:
    for line in directives:
        match = DIRECTIVE.match(line.strip())
        if match and match.group(1).lower() == "escape" and match.group(2):
            return match.group(2)
    return "\\"


def check_increment(text: str, template: Path, *, parent: str, where: Where) -> IncrementRecipe:
    """Refuse a rendered increment that does not parse, is empty or breaks the FROM rules."""
    directives, body = split_directives(text)
    if not any(line.strip() and not line.lstrip().startswith("#") for line in body.splitlines()):
        raise TemplateError(
            "renders to no instructions.",
            hint="An increment adds at least one instruction (RUN, COPY, ENV, ...); a file of "
            "macros belongs in increments/_shared/ and is imported from an increment.",
            path=template,
        )
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise TemplateError(
            f"the rendered increment is not a valid Dockerfile fragment ({exc}).",
            hint=f"Fix the instructions; `imagectl render` shows what {template.name} renders to.",
            path=template,
        ) from exc
    froms = [c for c in commands if c.cmd.upper() == "FROM"]
    stages: list[str] = []
    images: list[str] = []
    if froms:
        _check_stage_order(commands, froms, template, parent=parent, where=where)
        for command in froms[:-1]:
            name = _stage_name(command, template, where)
            source = command.value[0]
            if source.lower() != "scratch" and source not in stages:
                images.append(_pinnable(source, command, template, where))
            stages.append(name)
    for command in commands:
        for source in _named_sources(command):
            if source not in stages and not source.isdigit() and source not in images:
                images.append(_pinnable(source, command, template, where))
    return IncrementRecipe(
        directives=directives,
        body=body,
        body_start=len(directives) + 1,
        own_from=bool(froms),
        images=tuple(images),
        stages=tuple(stages),
        escape=escape_of(directives),
    )


def _check_stage_order(
    commands: list[dockerfile.Command],
    froms: list[dockerfile.Command],
    template: Path,
    *,
    parent: str,
    where: Where,
) -> None:
    first = commands[0]
    if first.cmd.upper() != "FROM":
        raise TemplateError(
            f"{where(first.start_line)}: {first.cmd.upper()} stands before the first FROM. An "
            "increment with helper stages starts with one; every instruction belongs to a stage.",
            hint="Move it into a stage (an ARG too: declare it after that stage's FROM).",
            path=template,
        )
    last = froms[-1]
    if last.value[0] != parent or len(last.value) not in (1, 3) or last.flags:
        raise TemplateError(
            f"{where(last.start_line)}: the last stage starts `{last.original.strip()}`; an "
            f"increment's own stage must be the last one and start FROM its parent ({parent}).",
            hint="Write it as `FROM {{ parent }}` after the helper stages (imagectl pins the "
            "parent); helper stages come first, each `FROM <image> AS <name>`.",
            path=template,
        )


def _stage_name(command: dockerfile.Command, template: Path, where: Where) -> str:
    value = command.value
    if len(value) != 3 or value[1].upper() != "AS" or not STAGE_NAME.match(value[2]):
        raise TemplateError(
            f"{where(command.start_line)}: the helper stage `{command.original.strip()}` has no "
            "valid name.",
            hint="Name every helper stage: `FROM <image> AS <name>` (lowercase letters, digits, "
            "'.', '_', '-'), and refer to it by that name.",
            path=template,
        )
    return str(value[2])


def _named_sources(command: dockerfile.Command) -> list[str]:
    """Stages or images a COPY/ADD --from or a RUN --mount from= reads."""
    found = []
    for flag in command.flags:
        if flag.startswith("--from=") and command.cmd.upper() in ("COPY", "ADD"):
            found.append(flag.removeprefix("--from="))
        elif flag.startswith("--mount="):
            for option in flag.removeprefix("--mount=").split(","):
                key, _, value = option.partition("=")
                if key.strip() == "from" and value:
                    found.append(value.strip())
    return found


def _pinnable(source: str, command: dockerfile.Command, template: Path, where: Where) -> str:
    if "$" in source:
        raise TemplateError(
            f"{where(command.start_line)}: `{command.original.strip()}` names an image through a "
            "build variable, which cannot be pinned.",
            hint="Name the image in the template (a [vars] value rendered with {{ }} is fine).",
            path=template,
        )
    return source


def compose_dockerfile(
    *,
    parent: str,
    recipe: IncrementRecipe,
    line: str,
    version: int,
    increment: Path,
    pins: Mapping[str, str] | None = None,
) -> ComposedDockerfile:
    """The full Dockerfile that builds `version`: directives, a header, FROM, the increment.

    `pins` maps an image the increment names to its reference with digest; the Dockerfile that
    is built names the pinned ones, the one that is hashed for drift does not.
    """
    header = (
        f"# Generated by imagectl: line {line}, version v{version}, "
        f"increment {increment.as_posix()}\n"
    )
    body = recipe.body if recipe.body.endswith("\n") else recipe.body + "\n"
    if pins:
        body = pin_images(body, pins, directives=recipe.directives)
    top = "".join(f"{line}\n" for line in recipe.directives)
    own = "" if recipe.own_from else f"FROM {parent}\n"
    offset = 1 + (0 if recipe.own_from else 1)
    return ComposedDockerfile(
        text=f"{top}{header}{own}{body}",
        body_offset=offset,
        directive_lines=len(recipe.directives),
    )


def increment_line(composed: ComposedDockerfile, dockerfile_line: int) -> int | None:
    """The line of the rendered increment that a line of the composed Dockerfile came from."""
    if dockerfile_line <= composed.directive_lines:
        return dockerfile_line
    line = dockerfile_line - composed.body_offset
    return line if line > composed.directive_lines else None


def pin_images(body: str, pins: Mapping[str, str], *, directives: tuple[str, ...] = ()) -> str:
    """Name each pinned image by digest wherever the body's FROM, --from or from= names it."""
    return rewrite_references(body, pins, directives=directives)


def rewrite_references(
    body: str, names: Mapping[str, str], *, directives: tuple[str, ...] = ()
) -> str:
    """Replace each image or stage name of `names` where FROM, AS, --from or from= uses it."""
    lines = body.splitlines(keepends=True)
    shift = len(directives)  # parsed with its directives, which may change the escape character
    for command in dockerfile.parse_string("".join(f"{d}\n" for d in directives) + body):
        upper = command.cmd.upper()
        if upper not in ("FROM", "COPY", "ADD", "RUN"):
            continue
        for index in range(command.start_line - 1 - shift, command.end_line - shift):
            lines[index] = _rewrite_line(lines[index], names, is_from=upper == "FROM")
    return "".join(lines)


def _rewrite_line(text: str, names: Mapping[str, str], *, is_from: bool) -> str:
    for name, new in names.items():
        quoted = re.escape(name)
        if is_from:
            text = re.sub(rf"(?i)^(\s*FROM\s+(?:--\S+\s+)*){quoted}(?=\s|$)", rf"\g<1>{new}", text)
            text = re.sub(rf"(?i)(\sAS\s+){quoted}(?=\s|$)", rf"\g<1>{new}", text)
        text = re.sub(rf"(--from=){quoted}(?=[\s,]|$)", rf"\g<1>{new}", text)
        text = re.sub(rf"(--mount=\S*?\bfrom=){quoted}(?=[\s,]|$)", rf"\g<1>{new}", text)
    return text


def instructions_hash(text: str) -> str:
    """A hash of what a Dockerfile instructs: comments, blank lines and indentation left out.

    Heredoc bodies are kept exactly (they are file contents); a continuation joined with or
    without a space stays distinct, as it does for BuildKit.
    """
    directives, _ = split_directives(text)
    escape = escape_of(directives)
    physical = text.splitlines()
    parts: list[object] = [[d.strip().lower().replace(" ", "") for d in directives]]
    for command in dockerfile.parse_string(text):
        if command.heredocs:
            parts.append([command.cmd.upper(), command.flags, command.value, command.heredocs])
            continue
        span = physical[command.start_line - 1 : command.end_line]
        parts.append([command.cmd.upper(), _joined(span, escape)])
    return hash_text(json.dumps(parts, default=str))


def _joined(span: list[str], escape: str) -> str:
    """One instruction's physical lines as one logical line, indentation-insensitive."""
    pieces: list[str] = []
    gap = False
    for raw in span:
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        continued = stripped.endswith(escape)
        content = stripped.removesuffix(escape) if continued else stripped
        if pieces:
            pieces.append(" " if gap or raw[:1].isspace() else "")
        pieces.append(content.strip())
        gap = continued and content != content.rstrip()
    first, *rest = re.split(r"\s+", "".join(pieces), maxsplit=1)
    return f"{first.upper()} {rest[0] if rest else ''}"


def hash_text(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"
