"""The CI job as a matrix: one shard per line on real git (a bare remote), the real engine and
the real registry, started at the same moment."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagectl.core import lockfile

from .conftest import BUSYBOX, ROOT, docker, imagectl
from .engine_helpers import STEPS, remote
from .helpers import git_init, make_line

pytestmark = pytest.mark.engine

REGISTRY_LOG = Path("/var/log/imagectl/registry.log")  # scripts/engine's registry access log
LINES = ("alpha", "beta")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def line_repos(repo_name: str) -> Iterator[dict[str, str]]:
    """One image repository per line under the test's unique name; their tags removed after."""
    repos = {line: f"{repo_name}-{line}" for line in LINES}
    yield repos
    for repository in repos.values():
        tags = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository)
        for tag in tags.split():
            docker("rmi", "--no-prune", tag, check=False)


def two_line_remote(tmp_path: Path, repos: dict[str, str]) -> Path:
    source = tmp_path / "source"
    for line, repository in repos.items():
        steps = {stem: text.replace("/applied", f"/{line}") for stem, text in STEPS.items()}
        make_line(source, line, repository=repository, base=BUSYBOX, increments=steps)
    git_init(source)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    return bare


def shard(checkout: Path, line: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(ROOT / "ci" / "publish"), "--lines", line, "--json", "--quiet"],
        cwd=checkout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def manifest_puts(log: str, repository: str) -> list[str]:
    """The tags the registry accepted a manifest for (one PUT per push), from its access log."""
    path = repository.split("/", 1)[1]
    pattern = rf'"PUT /v2/{re.escape(path)}/manifests/([^ ]+) HTTP/[0-9.]+" 201 '
    return re.findall(pattern, log)


def test_two_shards_on_different_lines_at_once_both_land(
    tmp_path: Path, line_repos: dict[str, str]
) -> None:
    """Two matrix jobs, one per line, started at the same moment from the same commit. The one
    that pushes second is rejected (its clone does not have the other's lock commit), rebases
    its own commit onto it (the files are disjoint) and pushes again: both commits arrive, both
    lines are published, and no tag is pushed twice."""
    bare = two_line_remote(tmp_path, line_repos)
    checkouts = {line: tmp_path / f"runner-{line}" for line in LINES}
    for checkout in checkouts.values():
        git(tmp_path, "clone", "-q", str(bare), str(checkout))
    log_start = REGISTRY_LOG.stat().st_size
    jobs = {line: shard(checkout, line) for line, checkout in checkouts.items()}
    finished = {line: job.communicate(timeout=600) for line, job in jobs.items()}
    for line, job in jobs.items():
        assert job.returncode == 0, finished[line][1]
    results = {line: json.loads(out) for line, (out, _) in finished.items()}
    errs = {line: err for line, (_, err) in finished.items()}

    # each shard worked on its own line only, and one of them had to rebase onto the other
    for line in LINES:
        assert results[line]["lines"] == [line]
        assert results[line]["tags"] == [f"{line_repos[line]}:v{n}" for n in (1, 2, 3)]
    attempts = sorted(results[line]["attempts"] for line in LINES)
    assert attempts[0] == 1
    assert attempts[1] >= 2
    assert sum("push rejected" in err for err in errs.values()) == 1, errs

    # both lock commits arrived, each touching only its line's files in lock/
    subjects = git(bare, "log", "--format=%s", "main").splitlines()
    assert subjects.count("imagectl: publish 3 new tags") == 2, subjects
    assert subjects[-1] == "init"
    for commit in git(bare, "log", "--format=%H", "main", "-2").splitlines():
        files = git(bare, "show", "--name-only", "--format=", commit).splitlines()
        owners = {Path(file).name.split(".", 1)[0] for file in files}
        assert len(owners) == 1, files
        assert all(file.startswith("lock/") for file in files), files

    # the merged result: every version of both lines recorded with the digest the registry has
    merged = tmp_path / "merged"
    git(tmp_path, "clone", "-q", str(bare), str(merged))
    for line, repository in line_repos.items():
        lock = lockfile.read_lock(
            merged / "lock" / f"{line}.lock.toml", line=line, repository=repository, base=BUSYBOX
        )
        assert [v.version for v in lock.versions] == [1, 2, 3]
        for version in lock.versions:
            assert remote(version.tag) == (version.digest, version.image_id), version.tag
    squash = imagectl(merged, "squash", "--check")
    assert squash.code == 0, squash.stdout + squash.stderr

    # no tag was pushed twice: neither as imagectl reports it, nor as the registry saw it
    with REGISTRY_LOG.open("rb") as handle:
        handle.seek(log_start)
        log = handle.read().decode(errors="replace")
    for line, repository in line_repos.items():
        pushing = re.findall(
            rf"pushing {re.escape(repository)}:(v\d+)$", "\n".join(errs.values()), re.M
        )
        assert sorted(pushing) == ["v1", "v2", "v3"], errs[line]
        puts = manifest_puts(log, repository)
        assert sorted(t for t in puts if re.fullmatch(r"v\d+", t)) == ["v1", "v2", "v3"]
        # and each version's SBOM once: its artifact by digest, its referrers tag's index
        sboms = [t for t in puts if t.startswith("sha256:")]
        referrers = [t for t in puts if t.startswith("sha256-")]
        assert len(sboms) == len(set(sboms)) == len(referrers) == len(set(referrers)) == 3
