"""The CI publish job: build what is pending, publish it, commit the lockfiles, push; retry.

A job may be one shard of a CI matrix (`--lines GLOB`, one line per job): it builds, publishes
and commits only its lines' files in lock/, so shards of other lines never touch the same file
and a rejected push rebases cleanly onto theirs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from imagectl.app.project import Project
from imagectl.app.publishing import publish
from imagectl.app.results.publish import JobResult
from imagectl.app.workflows import build_next
from imagectl.core.config import match_lines
from imagectl.core.errors import GitError, ImagectlError, TagConflictError
from imagectl.core.linestate import lock_files
from imagectl.core.ports import CiGit, Say


def _backoff(attempt: int) -> None:
    """A short random pause before the next try, so that shards rejected by the same push do
    not all come back at the same moment."""
    time.sleep(random.uniform(0, min(attempt, 4)))  # noqa: S311 - jitter, not a secret


def commit_message(tags: tuple[str, ...]) -> str:
    if not tags:
        return "imagectl: update lockfiles"
    listing = "\n".join(f"- {tag}" for tag in tags)
    return f"imagectl: publish {len(tags)} new tag{'s' if len(tags) != 1 else ''}\n\n{listing}\n"


def run_publish_job(
    project: Project,
    *,
    remote: str,
    branch: str,
    attempts: int,
    say: Say,
    output: Say,
    lines: str = "*",
    git: CiGit | None = None,
    backoff: Callable[[int], None] = _backoff,
) -> JobResult:
    """Build, publish, commit and push the lines matching the glob `lines`; when someone else
    pushed first, fetch, rebase and re-check."""
    if git is None:
        git = project.adapters.ci_git()
    dirty = git.dirty_paths()
    if dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise GitError(
            f"the working tree is not clean ({shown}); the CI job publishes committed state only.",
            hint="Commit or remove those changes, or run the job on a fresh clone.",
        )
    upstream = f"{remote}/{branch}"
    match_lines(project.lines, lines)  # a glob that matches no line fails before any work
    tags: dict[str, None] = {}  # every tag any attempt built or published, in order
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            backoff(attempt - 1)
        # Read afresh each time: a rebase or reset onto upstream may have changed line files.
        project = project.reopened()
        names = tuple(line.name for line in match_lines(project.lines, lines))
        say(f"ci: attempt {attempt} of {attempts} ({', '.join(names)})")
        pushed, done = _attempt(
            project, git, names, remote=remote, branch=branch, say=say, output=output
        )
        tags.update(dict.fromkeys(done))
        if pushed is not None:
            return JobResult(lines=names, tags=tuple(tags), commit=pushed, attempts=attempt)
    raise GitError(
        f"gave up after {attempts} attempts: {upstream} kept moving while this job ran.",
        hint="Run the job again (with more --attempts when many shards push at once; one "
        "CI concurrency group per line keeps jobs of one line apart); everything published so "
        "far is recorded in the registry and is adopted on the rerun.",
    )


def _attempt(
    project: Project,
    git: CiGit,
    names: tuple[str, ...],
    *,
    remote: str,
    branch: str,
    say: Say,
    output: Say,
) -> tuple[str | None, tuple[str, ...]]:
    """One try: build, publish, commit, push. Returns the commit pushed ("" for none, None when
    upstream moved on and the job must check again) and the tags built or published."""
    upstream = f"{remote}/{branch}"
    try:
        tags = _build_and_publish(project, names, say=say, output=output)
    except TagConflictError:
        # Someone may have published these versions and pushed their lock meanwhile.
        if not _remote_moved(git, remote, branch):
            raise
        say(f"ci: {upstream} moved on; taking its lockfiles and checking again")
        git.reset_hard(upstream)
        return None, ()
    changed = _line_files(project, names, git.changed_paths("lock"))
    if changed:
        git.commit(changed, commit_message(tags))
    if git.rev("HEAD") == git.rev(upstream):
        say("ci: nothing new to commit")
        return "", tags
    if git.push(remote, branch):
        head = git.rev("HEAD")
        say(f"ci: pushed {head[:12]} to {remote} {branch}")
        return head, tags
    say(f"ci: push rejected, {upstream} moved on; fetching and checking again")
    git.fetch(remote, branch)
    if not git.rebase_onto(upstream):
        say("ci: our lock commit conflicts with theirs; taking theirs and checking again")
        git.reset_hard(upstream)
    return None, tags


def _line_files(
    project: Project, names: tuple[str, ...], changed: tuple[str, ...]
) -> tuple[str, ...]:
    """The changed paths that belong to the job's lines: a shard commits its own files only."""
    own = {
        path.relative_to(project.root).as_posix()
        for name in names
        for path in lock_files(project.layout, name)
    }
    return tuple(path for path in changed if path in own)


def _build_and_publish(
    project: Project, names: tuple[str, ...], *, say: Say, output: Say
) -> tuple[str, ...]:
    built = build_next(project, names, all_versions=True, wait=600.0, say=say, output=output)
    _raise_failures(built.failures, say=say)
    result = publish(project, names, wait=600.0, say=say, output=output)
    _raise_failures(result.failures, say=say)
    tags = [b.tag for b in built.built]
    tags += [p.tag for p in result.published if p.tag not in tags]
    return tuple(tags)


def _raise_failures(failures: tuple[tuple[str, ImagectlError], ...], *, say: Say) -> None:
    """Stop the job on any line's failure; a tag conflict first, since it may mean we are behind."""
    for line, error in failures:
        say(f"ci: {line}: {error}")
    if failures:
        errors = [error for _, error in failures]
        raise next((e for e in errors if isinstance(e, TagConflictError)), errors[0])


def _remote_moved(git: CiGit, remote: str, branch: str) -> bool:
    before = git.rev(f"{remote}/{branch}")
    git.fetch(remote, branch)
    return git.rev(f"{remote}/{branch}") != before or git.rev("HEAD") != before
