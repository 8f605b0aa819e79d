"""The CI publish job: build what is pending, publish it, commit the lockfiles, push; retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from imagectl.errors import GitError, ImagectlError, TagConflictError
from imagectl.ports import Say
from imagectl.project import Project
from imagectl.workflows import build_next, publish


class CiGit(Protocol):
    def dirty_paths(self) -> tuple[str, ...]: ...
    def changed_paths(self, folder: str) -> tuple[str, ...]: ...
    def commit(self, paths: tuple[str, ...], message: str) -> str: ...
    def rev(self, ref: str) -> str: ...
    def fetch(self, remote: str, branch: str) -> None: ...
    def push(self, remote: str, branch: str) -> bool: ...
    def rebase_onto(self, upstream: str) -> bool: ...
    def reset_hard(self, ref: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    tags: tuple[str, ...]  # built or published by this job, as named in the commit
    commit: str  # the lock commit pushed, "" when there was nothing to commit
    attempts: int

    def to_json(self) -> dict[str, object]:
        return {"tags": list(self.tags), "commit": self.commit, "attempts": self.attempts}


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
    git: CiGit | None = None,
) -> JobResult:
    """Build, publish, commit and push; when someone else pushed first, fetch and re-check."""
    if git is None:
        from imagectl.git_repo import GitRepository  # noqa: PLC0415

        git = GitRepository(project.root)
    dirty = git.dirty_paths()
    if dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise GitError(
            f"the working tree is not clean ({shown}); the CI job publishes committed state only.",
            hint="Commit or remove those changes, or run the job on a fresh clone.",
        )
    upstream = f"{remote}/{branch}"
    for attempt in range(1, attempts + 1):
        say(f"ci: attempt {attempt} of {attempts}")
        # Read afresh each time: a reset to upstream may have brought other line files.
        project = project.reopened()
        result = _attempt(project, git, remote=remote, branch=branch, say=say, output=output)
        if result is not None:
            return JobResult(tags=result[0], commit=result[1], attempts=attempt)
    raise GitError(
        f"gave up after {attempts} attempts: {upstream} kept moving while this job ran.",
        hint="Serialize publish jobs (one CI concurrency group) and run the job again; "
        "everything published so far is recorded in the registry and is adopted on the rerun.",
    )


def _attempt(
    project: Project, git: CiGit, *, remote: str, branch: str, say: Say, output: Say
) -> tuple[tuple[str, ...], str] | None:
    """One try: build, publish, commit, push. (tags, pushed commit or "") when done; None when
    upstream moved on and the job must check again."""
    upstream = f"{remote}/{branch}"
    try:
        tags = _build_and_publish(project, say=say, output=output)
    except TagConflictError:
        # Someone may have published these versions and pushed their lock meanwhile.
        if not _remote_moved(git, remote, branch):
            raise
        say(f"ci: {upstream} moved on; taking its lockfiles and checking again")
        git.reset_hard(upstream)
        return None
    changed = git.changed_paths("lock")
    if changed:
        git.commit(changed, commit_message(tags))
    if git.rev("HEAD") == git.rev(upstream):
        say("ci: nothing new to commit")
        return tags, ""
    if git.push(remote, branch):
        head = git.rev("HEAD")
        say(f"ci: pushed {head[:12]} to {remote} {branch}")
        return tags, head
    say(f"ci: push rejected, {upstream} moved on; fetching and checking again")
    git.fetch(remote, branch)
    if not git.rebase_onto(upstream):
        say("ci: our lock commit conflicts with theirs; taking theirs and checking again")
        git.reset_hard(upstream)
    return None


def _build_and_publish(project: Project, *, say: Say, output: Say) -> tuple[str, ...]:
    built = build_next(project, [], all_versions=True, wait=600.0, say=say, output=output)
    _raise_failures(built.failures, say=say)
    result = publish(project, [], wait=600.0, say=say, output=output)
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
