"""The git adapter (GitPython): commits of increments, and what the CI job needs of git."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagectl.errors import GitError

DEFAULT_AUTHOR = ("imagectl", "imagectl@localhost")
REJECTED = (
    "rejected",
    "non-fast-forward",
    "fetch first",
    "failed to push some refs",
    "cannot lock ref",
    "stale info",
)


class GitRepository:
    """Git as seen from the image repository at `root`; outside git, increments are
    "uncommitted" (there is no commit to name)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._repo: Any = None
        self._opened = False

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

    def _git(self, *args: str) -> str:
        import git  # noqa: PLC0415

        try:
            return str(self._require().git.execute(["git", *args]))
        except git.GitCommandError as exc:
            stderr = str(exc.stderr or "").strip()
            raise GitError(f"`git {' '.join(args)}` failed: {stderr or exc}") from exc

    def commit_of(self, path: Path) -> str:
        repo = self._open()
        if repo is None:
            return "uncommitted"
        target = str((self._root / path).resolve())
        if self._git("status", "--porcelain", "--", target).strip():
            return "uncommitted"
        if not repo.head.is_valid():
            return "uncommitted"
        return self._git("log", "-1", "--format=%H", "--", target).strip() or "uncommitted"

    def dirty_paths(self) -> tuple[str, ...]:
        """Tracked changes and untracked files that git does not ignore."""
        status = self._git("status", "--porcelain", "--untracked-files=all")
        paths = (line[3:] for line in status.splitlines() if line.strip())
        return tuple(path for path in paths if not path.startswith(".imagectl/"))

    def changed_paths(self, folder: str) -> tuple[str, ...]:
        status = self._git("status", "--porcelain", "--untracked-files=all", "--", folder)
        return tuple(line[3:] for line in status.splitlines() if line.strip())

    def commit(self, paths: tuple[str, ...], message: str) -> str:
        self._git("add", "--", *paths)
        self._git(*self._identity(), "commit", "-q", "-m", message, "--", *paths)
        return self.rev("HEAD")

    def _identity(self) -> list[str]:
        """A fallback author for CI machines where none is configured."""
        if self._configured("user.name") and self._configured("user.email"):
            return []
        return ["-c", f"user.name={DEFAULT_AUTHOR[0]}", "-c", f"user.email={DEFAULT_AUTHOR[1]}"]

    def _configured(self, key: str) -> bool:
        import git  # noqa: PLC0415

        try:
            return bool(self._require().git.config("--get", key).strip())
        except git.GitCommandError:
            return False

    def rev(self, ref: str) -> str:
        return self._git("rev-parse", "--verify", "-q", ref).strip()

    def fetch(self, remote: str, branch: str) -> None:
        self._git("fetch", "-q", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}")

    def push(self, remote: str, branch: str) -> bool:
        """Push HEAD to `branch`; False when rejected because the remote moved on."""
        import git  # noqa: PLC0415

        try:
            self._require().git.execute(["git", "push", "-q", remote, f"HEAD:refs/heads/{branch}"])
        except git.GitCommandError as exc:
            stderr = str(exc.stderr or "")
            if any(marker in stderr.lower() for marker in REJECTED):
                return False
            raise GitError(
                f"`git push {remote}` failed: {stderr.strip() or exc}",
                hint="Check the remote's URL and the job's push credentials.",
            ) from exc
        return True

    def rebase_onto(self, upstream: str) -> bool:
        """Replay local commits onto `upstream`; on a conflict abort and return False."""
        import git  # noqa: PLC0415

        try:
            self._require().git.execute(["git", *self._identity(), "rebase", "-q", upstream])
        except git.GitCommandError:
            self._git("rebase", "--abort")
            return False
        return True

    def reset_hard(self, ref: str) -> None:
        self._git("reset", "-q", "--hard", ref)
