"""Answers read from the locks alone: a line's lock, its history, what a reference resolves to.
No engine and no build code: these are the commands people run many times a day."""

from __future__ import annotations

from imagectl.app.project import Project
from imagectl.app.results.lookup import DigestAnswer, History, PackageAnswer
from imagectl.core import lockfile
from imagectl.core.errors import PlanError
from imagectl.core.model import ImageLine, Lock
from imagectl.core.references import repository_of
from imagectl.core.resolver import HEX, Resolution, resolve_ref


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


def query_package(project: Project, name: str, *, kind: str, version: str) -> PackageAnswer:
    """Every version of every line that has the package, from the locks and package records."""
    from imagectl.core import sidecar  # noqa: PLC0415 (not for resolve)
    from imagectl.core.query import PackageQuery, find_package  # noqa: PLC0415
    from imagectl.core.versionorder import Constraint, parse_constraint  # noqa: PLC0415

    constraint = parse_constraint(version) if version else Constraint()
    query = PackageQuery(name=name, kind=kind, constraint=constraint)
    records = (
        (
            line_lock(project, line),
            sidecar.read_packages(sidecar.packages_path(project.layout.lock_path(line.name))),
        )
        for line in project.lines
    )
    found = find_package(query, records)
    return PackageAnswer(name=name, kind=kind, constraint=str(constraint), found=found)


def query_digest(project: Project, digest: str) -> DigestAnswer:
    """The versions of every line (and the bases) that `digest` names: a registry digest or an
    image id, whole or its first 12 hex digits or more."""
    from imagectl.core.query import find_digest  # noqa: PLC0415 (not for resolve)

    if HEX.match(digest.strip()) is None:
        raise PlanError(
            f"{digest!r} is not a digest.",
            hint="Give sha256:<64 hex digits>, or at least its first 12 hex digits "
            "(a registry digest or an image id).",
        )
    hits = find_digest(digest, [line_lock(project, line) for line in project.lines])
    if not hits:
        raise PlanError(
            f"no lockfile in lock/ records {digest!r} as a version's registry digest or "
            "image id, or as a line's base.",
            hint="Check the digest (`docker inspect`, `imagectl history LINE --json`); a "
            "digest of an image imagectl did not build is not in any lock.",
        )
    return DigestAnswer(digest=digest.strip(), hits=hits)
