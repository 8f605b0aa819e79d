"""The git adapter: commits of increments, and what the CI job needs of git.

The questions every build asks (which commit last touched an increment, is it dirty, when was
that commit, which remote) are answered by one `git` process each through the one runner,
`_git`: GitPython costs ~50 ms to import and runs three processes to tell whether one path is
dirty. GitPython's object API makes the CI job's lock commit, reads what is staged, and reads
push results from its PushInfo flags, never from git's text.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from imagectl.adapters.process import last_line, run, run_together
from imagectl.core.errors import GitError

DEFAULT_AUTHOR = ("imagectl", "imagectl@localhost")

P = ParamSpec("P")
R = TypeVar("R")


def _serialized(
    method: Callable[Concatenate[GitRepository, P], R],
) -> Callable[Concatenate[GitRepository, P], R]:
    """One caller at a time. GitPython's objects are not thread-safe: `build next --jobs N`
    asks for increments' commits from N threads, and two of them talking to the one
    `git cat-file --batch-check` process, or opening the repository at the same moment,
    got wrong answers ("uncommitted") or waited for each other's reply forever."""

    @functools.wraps(method)
    def locked(self: GitRepository, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class GitRepository:
    """Git as seen from the image repository at `root`; outside git, increments are
    "uncommitted" (there is no commit to name). Safe to share between threads."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._repo: Any = None
        self._opened = False
        self._lock = threading.RLock()
        self._times: dict[str, int] = {}  # commit -> its committer time, as commit_of saw it

    def _open(self) -> Any:
        if not self._opened:
            self._opened = True
            import git  # noqa: PLC0415 - GitPython is slow to import; only load when used

            try:
                self._repo = git.Repo(self._root, search_parent_directories=True)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                self._repo = None
        return self._repo

    def _require(self) -> Any:
        repo = self._open()
        if repo is None:
            raise GitError(
                f"{self._root} is not inside a git repository.",
                hint="The CI job works on a clone of the image repository.",
            )
        return repo

    def _git(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        """The runner: one git command in the repository; a failure is a GitError with the
        command, exit code and stderr."""
        command = ("git", *args)
        try:
            done = run(command, cwd=self._root)
        except OSError as exc:
            raise GitError(f"git cannot be run ({type(exc).__name__}).", command=command) from exc
        if done.returncode not in ok:
            stderr = done.stderr.strip()
            raise GitError(
                f"`{' '.join(command)}` failed: {last_line(stderr)}",
                command=command,
                exit_code=done.returncode,
                stderr=stderr,
            )
        return done.stdout

    def _asked(self, *args: str) -> str | None:
        """What a read-only question answers; None outside git (or without git at all)."""
        try:
            return self._git(*args)
        except GitError:
            return None

    def _asked_together(self, *questions: tuple[str, ...]) -> list[str | None]:
        """Read-only questions asked at once; each answer as `_asked` gives it."""
        try:
            done = run_together([("git", *args) for args in questions], cwd=self._root)
        except OSError:
            return [None] * len(questions)
        return [answer.stdout if answer.returncode == 0 else None for answer in done]

    def commit_of(self, path: Path) -> str:
        target = path.as_posix()
        changed, last = self._asked_together(
            ("status", "--porcelain", "--untracked-files=all", "--", target),
            ("log", "-1", "--format=%H %ct", "--", target),
        )
        if changed is None or changed.strip():
            return "uncommitted"  # outside git, or changed since its last commit
        if not last or not last.strip():
            return "uncommitted"  # never committed (or no commit at all yet)
        commit, _, seconds = last.strip().partition(" ")
        self._times[commit] = int(seconds)
        return commit

    def commit_time(self, commit: str) -> str:
        seconds = self._times.get(commit)
        if seconds is None:
            seconds = int(self._git("log", "-1", "--format=%ct", commit, "--").strip())
        moment = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        return moment.isoformat(timespec="seconds") + "Z"

    def remote_url(self) -> str:
        found = self._asked("config", "--get-regexp", r"^remote\..*\.url$")
        urls = {}
        for line in (found or "").splitlines():
            key, _, url = line.partition(" ")
            urls[key.removeprefix("remote.").removesuffix(".url")] = url.strip()
        if not urls:
            return ""
        return urls.get("origin") or next(iter(urls.values()))

    def identity(self) -> str:
        """Who is working here, as git names them: "Name <email>"; "" when git has no
        user.name or user.email configured (or there is no git)."""
        name = (self._asked("config", "user.name") or "").strip()
        email = (self._asked("config", "user.email") or "").strip()
        return f"{name} <{email}>" if name and email else ""

    @_serialized
    def dirty_paths(self) -> tuple[str, ...]:
        """Tracked changes (staged or not) and untracked files that git does not ignore."""
        repo = self._require()
        paths = set(repo.untracked_files)
        paths |= {diff.a_path for diff in repo.index.diff(None)}
        if repo.head.is_valid():
            paths |= {diff.a_path for diff in repo.index.diff("HEAD")}
        return tuple(sorted(p for p in paths if not p.startswith(".imagectl/")))

    @_serialized
    def changed_paths(self, folder: str) -> tuple[str, ...]:
        prefix = folder.rstrip("/") + "/"
        return tuple(path for path in self.dirty_paths() if path.startswith(prefix))

    @_serialized
    def commit(self, paths: tuple[str, ...], message: str) -> str:
        import git  # noqa: PLC0415

        repo = self._require()
        repo.index.add(list(paths))
        author = self._author(git)
        commit = repo.index.commit(message, author=author, committer=author)
        return str(commit.hexsha)

    def _author(self, git: Any) -> Any:
        """The configured identity, or a fallback for CI machines where none is configured."""
        reader = self._require().config_reader()
        name = reader.get_value("user", "name", default="")
        email = reader.get_value("user", "email", default="")
        if name and email:
            return git.Actor(str(name), str(email))
        return git.Actor(*DEFAULT_AUTHOR)

    @_serialized
    def rev(self, ref: str) -> str:
        """The commit `ref` names, or "" when it names none (an unborn or unknown ref)."""
        try:
            return str(self._require().commit(ref).hexsha)
        except Exception:  # gitdb BadName and friends: no such ref
            return ""

    @_serialized
    def fetch(self, remote: str, branch: str) -> None:
        self._git("fetch", "-q", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}")

    @_serialized
    def push(self, remote: str, branch: str) -> bool:
        """Push HEAD to `branch`; False when rejected because the remote moved on."""
        import git  # noqa: PLC0415

        try:
            results = self._require().remote(remote).push(f"HEAD:refs/heads/{branch}")
        except (git.GitCommandError, ValueError) as exc:
            raise GitError(
                f"`git push {remote}` failed: {exc}",
                hint="Check the remote's URL and the job's push credentials.",
            ) from exc
        rejected = git.PushInfo.REJECTED | git.PushInfo.REMOTE_REJECTED
        if any(info.flags & rejected for info in results):
            return False
        failed = [info for info in results if info.flags & git.PushInfo.ERROR]
        if failed or not results:
            summary = "; ".join(str(info.summary).strip() for info in failed) or "no result"
            raise GitError(
                f"`git push {remote}` failed: {summary}",
                hint="Check the remote's URL and the job's push credentials.",
            )
        return True

    @_serialized
    def rebase_onto(self, upstream: str) -> bool:
        """Replay local commits onto `upstream`; on a conflict abort and return False."""
        import git  # noqa: PLC0415

        author = self._author(git)
        identity = ("-c", f"user.name={author.name}", "-c", f"user.email={author.email}")
        try:
            self._git(*identity, "rebase", "-q", upstream)
        except GitError:
            self._git("rebase", "--abort")
            return False
        return True

    @_serialized
    def reset_hard(self, ref: str) -> None:
        self._require().head.reset(ref, index=True, working_tree=True)
