"""The git adapter shared by the threads of `build next --jobs N` (real git, no engine)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from imagectl.adapters.git_repo import GitRepository

from .helpers import git_commit_all, git_init, write

THREADS = 4
TRIALS = 25


def test_threads_asking_a_fresh_repository_at_once_all_get_the_commit(tmp_path: Path) -> None:
    """Before the adapter serialized its callers, 4 threads starting together on a fresh
    GitRepository got "uncommitted" for about half of the answers and hung in about one trial
    in five, waiting for a reply of the shared `git cat-file` process that another thread had
    read (what stalled `build next --all --jobs 2`)."""
    root = tmp_path / "repo"
    for index in range(THREADS):
        write(root / "increments" / f"{index:04d}-step.Dockerfile.j2", f"RUN echo {index}\n")
    git_init(root)
    write(root / "later.txt", "a second commit, so that commits differ per path\n")
    git_commit_all(root, "later")
    expected = subprocess.run(
        ["git", "rev-list", "-1", "HEAD~1"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    for _ in range(TRIALS):
        repository = GitRepository(root)
        start = threading.Barrier(THREADS)
        answers: dict[int, str] = {}

        def ask(index: int, repository: GitRepository = repository) -> None:
            start.wait()  # noqa: B023 - each trial's own barrier, waited for before the next
            path = Path("increments") / f"{index:04d}-step.Dockerfile.j2"
            answers[index] = repository.commit_of(path)  # noqa: B023

        threads = [
            threading.Thread(target=ask, args=(index,), daemon=True) for index in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "a thread hung in git"
        assert answers == dict.fromkeys(range(THREADS), expected)
