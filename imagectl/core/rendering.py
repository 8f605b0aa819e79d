"""One increment rendered where it stands (its version and parent): the template with the
line's variables, checked, composed into the Dockerfile that is built and hashed; the hash of
everything a render read, so a built increment's drift is decided without rendering it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from imagectl.core.config import RepositoryLayout
from imagectl.core.model import ImageLine, Increment, RenderedHashes
from imagectl.core.recipe import (
    ComposedDockerfile,
    IncrementRecipe,
    Where,
    check_increment,
    compose_dockerfile,
    hash_text,
    instructions_hash,
    rendered_line,
)
from imagectl.core.rendercache import line_inputs, render_cache, shared_hash
from imagectl.core.templates import (
    describe_line,
    render_tracked,
    template_lines,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedStep:
    """An increment rendered for one version, with its hashes."""

    text: str  # the increment as rendered, directives included
    recipe: IncrementRecipe  # the same, checked and split
    composed: ComposedDockerfile  # directives, header, FROM parent, body: what is hashed
    template: Path  # relative to the repository root, for errors
    where: Where  # names the template line a rendered line came from
    parent: str
    version: int
    line: str
    increment: Path  # relative to the repository root
    includes: tuple[str, ...] = ()  # the snippets the render loaded (names under increments/)
    inputs: str = ""  # inputs_hash() of this render; "" when answered from the render cache

    def pinned(self, pins: Mapping[str, str]) -> ComposedDockerfile:
        """The Dockerfile that is built: the images the increment names, by digest."""
        return compose_dockerfile(
            parent=self.parent,
            recipe=self.recipe,
            line=self.line,
            version=self.version,
            increment=self.increment,
            pins=pins,
        )

    @property
    def dockerfile(self) -> str:
        return self.composed.text

    @property
    def dockerfile_hash(self) -> str:
        return hash_text(self.composed.text)

    @property
    def instructions_hash(self) -> str:
        return instructions_hash(self.composed.text)

    @property
    def hashes(self) -> RenderedHashes:
        return RenderedHashes(dockerfile=self.dockerfile_hash, instructions=self.instructions_hash)


def template_variables(line: ImageLine, *, version: int, parent: str) -> dict[str, object]:
    return {
        **line.vars,
        "line": line.name,
        "version": version,
        "parent": parent,
        "repository": line.repository,
        "base": line.base,
    }


def render_step(
    layout: RepositoryLayout, line: ImageLine, increment: Increment, *, version: int, parent: str
) -> RenderedStep:
    """Render one increment for `version` on top of `parent`, check it, compose its Dockerfile."""
    variables = template_variables(line, version=version, parent=parent)
    increments_dir = layout.increments_dir.resolve()
    template = (layout.root / increment.template).resolve()
    text, includes = render_tracked(increments_dir, template, variables)
    step = _checked(
        line,
        increment,
        text,
        version=version,
        parent=parent,
        where=where_of(increments_dir, template, increment.template, variables),
    )
    inputs = inputs_hash(layout, line, increment, version=version, parent=parent, includes=includes)
    # Kept for the reference Dockerfile written after the build, which then reads it back
    # instead of rendering the new increment a second time (saved with the cache).
    cache = render_cache(layout)
    key = cache.key(line, increment, version=version, parent=parent, shared=shared_hash(layout))
    cache.bodies.put(key, text)
    cache.hashes.put(key, f"{step.dockerfile_hash} {step.instructions_hash}")
    return replace(step, includes=includes, inputs=inputs)


def inputs_hash(
    layout: RepositoryLayout,
    line: ImageLine,
    increment: Increment,
    *,
    version: int,
    parent: str,
    includes: tuple[str, ...],
) -> str:
    """One hash over everything a render of `increment` depends on: its files (the source
    hash), the line's settings and vars, version and parent, and each snippet it loaded (a
    missing one as missing). Equal hashes mean an equal render, so a built increment whose
    recorded hash still holds needs no render to prove it did not drift."""
    digest = hashlib.sha256(b"imagectl inputs 1\0")
    for part in (line_inputs(line), increment.source_hash, str(version), parent):
        digest.update(part.encode() + b"\0")
    for name in includes:
        digest.update(f"{name}\0{_snippet_digest(layout.increments_dir / name)}\0".encode())
    return f"sha256:{digest.hexdigest()}"


_SNIPPETS: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime) -> digest


def _snippet_digest(path: Path) -> str:
    """A snippet's content hash, remembered per file version within the process."""
    try:
        info = path.stat()
    except OSError:
        return "missing"
    key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
    found = _SNIPPETS.get(key)
    if found is None:
        try:
            found = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            found = "unreadable"
        _SNIPPETS[key] = found
    return found


def where_of(
    increments_dir: Path, template: Path, shown: Path, variables: dict[str, object]
) -> Where:
    """Names the template line of a rendered line; the map is only made when an error needs it."""

    def describe(rendered: int) -> str:
        return describe_line(shown, template_lines(increments_dir, template, variables), rendered)

    return describe


def _checked(
    line: ImageLine, increment: Increment, text: str, *, version: int, parent: str, where: Where
) -> RenderedStep:
    recipe = check_increment(text, increment.template, parent=parent, where=where)
    composed = compose_dockerfile(
        parent=parent, recipe=recipe, line=line.name, version=version, increment=increment.path
    )
    return RenderedStep(
        text=text,
        recipe=recipe,
        composed=composed,
        template=increment.template,
        where=where,
        parent=parent,
        version=version,
        line=line.name,
        increment=increment.path,
    )


def cached_render(
    layout: RepositoryLayout,
    line: ImageLine,
    increment: Increment,
    *,
    version: int,
    parent: str,
    shared: str,
) -> RenderedStep:
    """render_step, answered from the render cache when every input is unchanged."""
    cache = render_cache(layout)
    key = cache.key(line, increment, version=version, parent=parent, shared=shared)
    text = cache.bodies.get(key)
    if text is None:
        step = render_step(layout, line, increment, version=version, parent=parent)
        cache.bodies.put(key, step.text)
        cache.hashes.put(key, f"{step.dockerfile_hash} {step.instructions_hash}")
        return step
    return _checked(line, increment, text, version=version, parent=parent, where=rendered_line)
