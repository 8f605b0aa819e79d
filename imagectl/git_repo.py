"""The git adapter: which commit an increment comes from (GitPython behind the Git protocol)."""

from __future__ import annotations

from pathlib import Path

from imagectl.errors import GitError


class GitRepository:
    """Git as seen from the image repository at `root`; outside git, commits are ""."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._repo: object | None = None
        self._opened = False

    def _open(self) -> object | None:
        if not self._opened:
            self._opened = True
            import git  # noqa: PLC0415 - GitPython is slow to import; only load when used

            try:
                self._repo = git.Repo(self._root, search_parent_directories=True)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError):
                self._repo = None
        return self._repo

    def commit_of(self, path: Path) -> str:
        import git  # noqa: PLC0415

        repo = self._open()
        if not isinstance(repo, git.Repo):
            return ""
        target = str((self._root / path).resolve())
        try:
            if repo.git.status("--porcelain", "--", target):
                return "uncommitted"
            if not repo.head.is_valid():
                return "uncommitted"
            return str(repo.git.log("-1", "--format=%H", "--", target)).strip() or "uncommitted"
        except git.GitCommandError as exc:
            raise GitError(f"git failed: {exc.stderr.strip() or exc}", path=path) from exc
