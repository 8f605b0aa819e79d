"""Loading one line's whole state (config, increments, lock) and proving it consistent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagectl import lockfile
from imagectl.config import RepositoryLayout
from imagectl.increments import discover_increments
from imagectl.model import ImageLine, Increment, Lock
from imagectl.planner import check_drift, check_numbering
from imagectl.recipe import check_increment_body, compose_dockerfile, hash_text
from imagectl.templating import render_template


@dataclass(frozen=True, slots=True, kw_only=True)
class LineState:
    """A line as it is now: what is configured, what is on disk, what was built."""

    line: ImageLine
    increments: tuple[Increment, ...]
    lock: Lock
    lock_path: Path  # absolute


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedStep:
    body: str  # the increment's rendered instructions
    dockerfile: str  # FROM parent + body, what is built
    dockerfile_hash: str


def load_state(layout: RepositoryLayout, line: ImageLine, *, check: bool = True) -> LineState:
    """Read everything for `line`; with `check`, refuse drift between disk and lock."""
    increments = discover_increments(layout, line.name)
    lock_path = layout.lock_path(line.name)
    lock = lockfile.read_lock(lock_path, line=line.name, repository=line.repository, base=line.base)
    state = LineState(line=line, increments=increments, lock=lock, lock_path=lock_path)
    if check:
        check_numbering(line, increments)
        rendered = {
            version.version: render_step(
                layout,
                line,
                increments[version.version - 1],
                version=version.version,
                parent=version.parent,
            ).dockerfile_hash
            for version in lock.versions
            if version.version <= len(increments)
            and increments[version.version - 1].path.as_posix() == version.increment
            and increments[version.version - 1].source_hash == version.increment_hash
        }
        check_drift(line, lock, increments, rendered, lock_path.relative_to(layout.root).as_posix())
    return state


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
    """Render one increment for `version` on top of `parent` and compose its Dockerfile."""
    body = render_template(
        layout.increments_dir.resolve(),
        (layout.root / increment.template).resolve(),
        template_variables(line, version=version, parent=parent),
    )
    check_increment_body(body, increment.template)
    dockerfile = compose_dockerfile(
        parent=parent, body=body, line=line.name, version=version, increment=increment.path
    )
    return RenderedStep(body=body, dockerfile=dockerfile, dockerfile_hash=hash_text(dockerfile))
