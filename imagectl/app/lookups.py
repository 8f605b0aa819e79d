"""Answers read from the locks alone: a line's lock, its history, what a reference resolves to.
No engine and no build code: these are the commands people run many times a day."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagectl.app.project import Project
from imagectl.app.results.lookup import History
from imagectl.core import lockfile
from imagectl.core.errors import PlanError
from imagectl.core.model import ImageLine, Lock
from imagectl.core.references import repository_of
from imagectl.core.resolver import Resolution, resolve_ref

if TYPE_CHECKING:
    pass


def line_lock(project: Project, line: ImageLine) -> Lock:
    return lockfile.read_lock(
        project.layout.lock_path(line.name),
        line=line.name,
        repository=line.repository,
        base=line.base,
    )


def resolve(project: Project, ref: str) -> Resolution:
    """The newest version of the line that built `ref`, from the lockfiles; a digest no lock
    knows is looked up in the registry to say which tag, if any, was overwritten with it."""
    # A repo:vN or repo@digest reference can only come from the line of that repository:
    # read just its lock (an image id needs them all).
    named = repository_of(ref) if "/" in ref else ""
    candidates = [line for line in project.lines if line.repository == named] or list(project.lines)
    locks = [line_lock(project, line) for line in candidates]
    try:
        return resolve_ref(ref, locks)
    except PlanError:
        if "@sha256:" in ref and named:
            from imagectl.app.skips import unknown_digest  # noqa: PLC0415 (the registry: rare)

            raise unknown_digest(ref, locks, registry=project.adapters.registry) from None
        raise


def read_history(project: Project, name: str) -> History:
    """A line's lock and package deltas (no drift check: history must work on a drifted tree)."""
    from imagectl.core import sidecar  # noqa: PLC0415 (not for resolve)

    line = project.line(name)
    record = sidecar.read_packages(sidecar.packages_path(project.layout.lock_path(line.name)))
    packages = {version: delta.diff() for version, delta in record.versions.items()}
    return History(lock=line_lock(project, line), packages=packages)
