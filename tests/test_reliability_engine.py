"""Crash safety, concurrency and credential hygiene on the real engine and registry.

Beyond test_build_engine.py and test_publish_engine.py: `build next --all` and `publish` killed
with SIGKILL at several points, then rerun; two publishes at once; and registry credentials in
docker's config that must never reach imagectl's output, the lockfile or any file it writes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagectl.core.errors import LockfileError

from .conftest import REGISTRY, docker, image_id, imagectl
from .engine_helpers import (
    assert_lock_matches_registry,
    busybox_repo,
    kill_at,
    kill_when_paused,
    layers,
    local_tags,
    package_sidecar,
    read_lock,
    remote,
    run_in,
    run_together,
)

pytestmark = pytest.mark.engine

MARKER = "SECRET-MARKER-123"


def dpkg_record(name: str, version: str) -> str:
    """A RUN that records a fake Debian package, so busybox versions have package deltas."""
    return (
        "RUN mkdir -p /var/lib/dpkg && printf 'Package: %s\\nStatus: install ok installed\\n"
        f"Version: %s\\nArchitecture: all\\n\\n' {name} {version} >> /var/lib/dpkg/status\n"
    )


def fresh_steps() -> dict[str, str]:
    """Three increments that each append a line to /applied and record one package; v2 takes
    two seconds.

    The nonce makes v1 (and so every later layer) new to the build cache, so each test really
    builds, and the kill lands where it is meant to.
    """
    return {
        "0001-one": f"# Write one\nRUN echo one >> /applied # {uuid.uuid4().hex}\n"
        + dpkg_record("one", "1"),
        "0002-two": "# Write two, slowly\nRUN sleep 2 && echo two >> /applied\n"
        + dpkg_record("two", "2"),
        "0003-three": "# Write three\nRUN echo three >> /applied\n" + dpkg_record("three", "3"),
    }


# What each version of fresh_steps() adds to the (empty) package set of busybox.
PACKAGE_DELTAS: dict[int, tuple[list[str], list[str]]] = {
    1: (["one 1 all"], []),
    2: (["two 2 all"], []),
    3: (["three 3 all"], []),
}


def assert_consistent(root: Path, repo_name: str) -> list[int]:
    """The lock parses, and every version it records is in the engine under its tag."""
    lock = read_lock(root, repo_name)  # raises LockfileError on a torn or corrupt lock
    versions = [v.version for v in lock.versions]
    assert versions == list(range(1, len(versions) + 1))
    for version in lock.versions:
        assert docker("image", "inspect", "--format", "{{.Id}}", version.image_id) == (
            version.image_id
        )
        assert image_id(version.tag) == version.image_id, version.tag
    return versions


@dataclass(frozen=True)
class KillPoint:
    """Where `build next --all` is killed, and the exact state that must be found there."""

    id: str
    marker: str = ""  # a line of stderr to kill on ({repo} is filled in) ...
    pause: str = ""  # ... or an IMAGECTL_PAUSE_AT point, killed on "imagectl: paused at <pause>"
    prebuilt: int = 0  # versions built by an undisturbed run before the run that is killed
    recorded: int = 0  # versions the lock records at the kill
    tagged: int = 0  # versions tagged at the kill (recorded + 1 inside the tag-to-lock window)
    packaged: int = 0  # versions the package sidecar has at the kill
    builder: str = "buildx"


KILL_POINTS = [
    # "building v1" is said before the build starts, which takes a second: nothing is done yet
    KillPoint("as-v1-starts", marker="line: building v1 "),
    # v2's RUN sleeps 2 s: the kill lands inside it, with v1 recorded and v2 not tagged
    KillPoint(
        "inside-the-run-of-v2", marker="sleep 2 && echo two", recorded=1, tagged=1, packaged=1
    ),
    KillPoint(
        "inside-the-run-of-v2-legacy-builder",
        marker="sleep 2 && echo two",
        recorded=1,
        tagged=1,
        packaged=1,
        builder="legacy",
    ),
    # The tag-to-lock window. Protections tested: the lock is written last (the kill finds the
    # tag and no lock entry); the rerun ADOPTS a tag that names exactly the image it rebuilds
    # (without adoption the rerun stops with a tag conflict, or re-tags, and fails below).
    KillPoint("after-tag-of-v1", pause="after-tag", tagged=1),
    KillPoint("after-tag-of-v2", pause="after-tag", prebuilt=1, recorded=1, tagged=2, packaged=1),
    KillPoint(
        "after-tag-of-v2-legacy-builder",
        pause="after-tag",
        prebuilt=1,
        recorded=1,
        tagged=2,
        packaged=1,
        builder="legacy",
    ),
    # Also tested here: packages are recorded BEFORE the lock, so a kill finds the sidecar
    # ahead of the lock, never a lock naming a version whose packages are missing (with the
    # order reversed the lock would record the version at this kill); the rerun replaces the
    # sidecar's entry rather than adding a second one.
    KillPoint("after-packages-of-v1", pause="after-packages", tagged=1, packaged=1),
    KillPoint(
        "after-packages-of-v2",
        pause="after-packages",
        prebuilt=1,
        recorded=1,
        tagged=2,
        packaged=2,
    ),
    KillPoint("as-v3-starts", marker="line: building v3 ", recorded=2, tagged=2, packaged=2),
]


def built_lines(stdout: str) -> list[str]:
    """The "line: built|adopted TAG" lines of `build next`, without the short image id."""
    return [
        line.rsplit(" (", 1)[0]
        for line in stdout.splitlines()
        if line.startswith(("line: built ", "line: adopted "))
    ]


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_sigkill_during_build_then_rerun_completes_without_reapplying(
    tmp_path: Path, repo_name: str, point: KillPoint
) -> None:
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    env = {"IMAGECTL_BUILDER": point.builder}
    for _ in range(point.prebuilt):
        assert imagectl(root, "build", "next", "-q", env=env).code == 0
    args = ("build", "next", "--all")
    if point.pause:
        kill_when_paused(root, args, point.pause, env)
    else:
        kill_at(root, args, point.marker.format(repo=repo_name), env)

    # exactly the state the kill point names: a tag in the window is there and unrecorded
    assert assert_consistent(root, repo_name) == list(range(1, point.recorded + 1))
    before = local_tags(repo_name)
    assert set(before) == {f"{repo_name}:v{n}" for n in range(1, point.tagged + 1)}
    assert sorted(package_sidecar(root)[1]) == list(range(1, point.packaged + 1))

    rerun = imagectl(root, "build", "next", "--all", env=env)
    assert rerun.code == 0, rerun.stderr
    # each pending version handled once: the one in the window adopted, the rest built
    assert built_lines(rerun.stdout) == [
        f"line: {'adopted' if n <= point.tagged else 'built'} {repo_name}:v{n}"
        for n in range(point.recorded + 1, 4)
    ]
    assert assert_consistent(root, repo_name) == [1, 2, 3]
    after = local_tags(repo_name)
    assert set(after) == {f"{repo_name}:v{n}" for n in (1, 2, 3)}
    for tag, image in before.items():
        assert after[tag] == image, f"{tag} was overwritten"
    lock = read_lock(root, repo_name)
    for version in lock.versions[1:]:
        assert version.parent == f"{repo_name}:v{version.version - 1}"
    for older, newer in ((1, 2), (2, 3)):
        parent = layers(f"{repo_name}:v{older}")
        assert layers(f"{repo_name}:v{newer}")[: len(parent)] == parent
    assert run_in(f"{repo_name}:v2", "cat", "/applied").split() == ["one", "two"]
    assert run_in(f"{repo_name}:v3", "cat", "/applied").split() == ["one", "two", "three"]
    # the sidecar agrees with the lock: one entry per recorded version, each its own delta
    assert package_sidecar(root) == ([], PACKAGE_DELTAS)
    again = imagectl(root, "build", "next", "--all")
    assert again.code == 0, again.stderr
    assert "up to date" in again.stdout
    assert local_tags(repo_name) == after


def test_sigkill_after_push_before_the_lock_records_it_then_rerun_records_it(
    tmp_path: Path, repo_name: str
) -> None:
    """Protection: publish looks a tag up before pushing, and a tag that already names the
    recorded image is recorded, not pushed again. Without the look-up the rerun says "pushing"
    and "pushed" for v1; without the same-image rule it stops with a tag conflict."""
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    kill_when_paused(root, ("publish",), "after-push")

    # inside the window: the registry has v1 (read back), the lock has no digest yet
    lock = read_lock(root, repo_name)
    assert [v.digest for v in lock.versions] == ["", "", ""]
    pushed = remote(f"{repo_name}:v1")
    assert pushed is not None
    assert pushed[1] == lock.versions[0].image_id
    assert remote(f"{repo_name}:v2") is None

    rerun = imagectl(root, "publish")
    assert rerun.code == 0, rerun.stderr
    assert f"pushing {repo_name}:v1" not in rerun.stderr
    assert f"pushing {repo_name}:v2" in rerun.stderr
    rows = rerun.stdout.splitlines()
    published = [line.split("@")[0] for line in rows if " pushed " in line or " recorded " in line]
    assert [line.split(" (")[0] for line in rows if " attached the SBOM " in line] == [
        f"line: attached the SBOM of v{n}" for n in (1, 2, 3)
    ]
    assert published == [
        f"line: recorded {repo_name}:v1",
        f"line: pushed {repo_name}:v2",
        f"line: pushed {repo_name}:v3",
    ]
    assert f"line: recorded {repo_name}:v1@{pushed[0]}" in rerun.stdout
    assert remote(f"{repo_name}:v1") == pushed
    assert_lock_matches_registry(root, repo_name, 3)
    third = imagectl(root, "publish")
    assert third.code == 0, third.stderr
    assert "nothing to publish" in third.stdout


def test_sigkill_as_the_push_of_v1_starts_then_rerun_publishes_the_rest(
    tmp_path: Path, repo_name: str
) -> None:
    """A kill while docker pushes v1 (the marker is said just before the push): whatever the
    push got done, the lock records nothing it did not read back, and a rerun completes."""
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    built = local_tags(repo_name)
    kill_at(root, ("publish",), f"pushing {repo_name}:v1")

    assert assert_consistent(root, repo_name) == [1, 2, 3]
    assert [v.digest for v in read_lock(root, repo_name).versions] == ["", "", ""]
    rerun = imagectl(root, "publish", "--json", "-q")
    assert rerun.code == 0, rerun.stderr
    actions = [(p["version"], p["action"]) for p in json.loads(rerun.stdout)["published"]]
    assert [version for version, _ in actions] == [1, 2, 3]
    assert actions[0][1] in ("pushed", "recorded")  # depends on how far the push got
    assert actions[1:] == [(2, "pushed"), (3, "pushed")]
    assert_lock_matches_registry(root, repo_name, 3)
    assert local_tags(repo_name) == built
    third = imagectl(root, "publish")
    assert third.code == 0, third.stderr
    assert "nothing to publish" in third.stdout


def test_two_publishes_at_once_never_corrupt_the_lock(tmp_path: Path, repo_name: str) -> None:
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    assert imagectl(root, "build", "next", "--all", "-q").code == 0
    command = [sys.executable, "-m", "imagectl", "-C", str(root), "publish", "-q"]
    reads = 0
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as a,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as b,
    ):
        # while both run, every read of the lock sees a whole file (old or new), never a torn one
        while a.poll() is None or b.poll() is None:
            try:
                read_lock(root, repo_name)
            except LockfileError as exc:  # the failure tested for
                raise AssertionError(f"a reader saw a corrupt lock: {exc}") from exc
            reads += 1
            time.sleep(0.01)
        out_a, err_a = a.communicate(timeout=300)
        out_b, err_b = b.communicate(timeout=300)
    assert reads > 0
    outcomes = [(a.returncode, out_a, err_a), (b.returncode, out_b, err_b)]
    assert any(code == 0 for code, _, _ in outcomes), outcomes
    for code, _out, err in outcomes:
        assert code in (0, 1), outcomes
        assert "Traceback" not in err
        if code == 1:
            assert "another imagectl build or publish is running" in err, err
            assert len(err.strip().splitlines()) == 1, err
    assert_lock_matches_registry(root, repo_name, 3)
    third = imagectl(root, "publish")
    assert third.code == 0, third.stderr
    assert "nothing to publish" in third.stdout


def slow_steps() -> dict[str, str]:
    """Two increments; v1 is new to the cache and its RUN takes three seconds."""
    return {
        "0001-one": "# Write one, slowly\n"
        f"RUN sleep 3 && echo one >> /applied # {uuid.uuid4().hex}\n",
        "0002-two": "# Write two\nRUN echo two >> /applied\n",
    }


def test_two_builds_at_once_in_one_repository_one_builds_the_other_is_busy_at_once(
    tmp_path: Path, repo_name: str
) -> None:
    """Protection: one build at a time per repository (the file lock .imagectl/build.lock),
    failing at once without --wait. Without it both would build v1: the loser would not exit 1
    with the busy error while the winner is still in its 3-second RUN."""
    root = busybox_repo(tmp_path, repo_name, slow_steps())
    first, second = run_together((root, ("build", "next")), (root, ("build", "next")))

    assert sorted((first.code, second.code)) == [0, 1], (first, second)
    winner, loser = (first, second) if first.code == 0 else (second, first)
    assert loser.stderr.startswith("imagectl: busy: another imagectl build or publish"), loser
    assert f"the lock is {root / '.imagectl' / 'build.lock'}" in loser.stderr
    assert len(loser.stderr.strip().splitlines()) == 1, loser.stderr  # one paragraph, no build
    assert loser.stdout == ""
    assert loser.seconds + 2 < winner.seconds, (loser.seconds, winner.seconds)  # did not wait
    assert built_lines(winner.stdout) == [f"line: built {repo_name}:v1"]
    assert [v.version for v in read_lock(root, repo_name).versions] == [1]
    assert set(local_tags(repo_name)) == {f"{repo_name}:v1"}


@pytest.mark.parametrize(
    ("args", "second_builds"),
    [(("build", "next"), True), (("build", "next", "--all"), False)],
    ids=["next-builds-the-next-one", "all-finds-nothing-left"],
)
def test_two_builds_at_once_with_wait_never_build_a_version_twice(
    tmp_path: Path, repo_name: str, args: tuple[str, ...], second_builds: bool
) -> None:
    """Protection: with --wait the second build reads the lock only once it holds the file
    lock. A build that planned from the lock it read before waiting would build v1 again: its
    output would say "adopted" (or it would stop on a tag conflict), and the checks below fail."""
    root = busybox_repo(tmp_path, repo_name, slow_steps())
    waiting = (*args, "--wait", "60")
    first, second = run_together((root, waiting), (root, waiting))

    assert (first.code, second.code) == (0, 0), (first, second)
    # the one that ran first built v1 (and v2 with --all); the other waited for it
    winner, loser = (first, second) if first.seconds < second.seconds else (second, first)
    everything = built_lines(winner.stdout) + built_lines(loser.stdout)
    assert sorted(everything) == [f"line: built {repo_name}:v1", f"line: built {repo_name}:v2"]
    assert "adopted" not in winner.stderr + loser.stderr
    if second_builds:
        assert built_lines(loser.stdout) == [f"line: built {repo_name}:v2"]
    else:
        assert built_lines(loser.stdout) == []
        assert "line: up to date, nothing to build" in loser.stdout
    lock = read_lock(root, repo_name)
    assert [v.version for v in lock.versions] == [1, 2]
    assert lock.versions[1].parent == f"{repo_name}:v1"
    tags = local_tags(repo_name)
    assert tags == {v.tag: v.image_id for v in lock.versions}  # one image per tag, as recorded
    assert run_in(f"{repo_name}:v2", "cat", "/applied").split() == ["one", "two"]


def test_two_publishes_of_different_images_to_one_tag_one_wins_the_other_refuses(
    tmp_path: Path, repo_name: str
) -> None:
    """Two image repositories whose lines share one registry repository, each with its own
    v1, published at the same moment.

    Protection: look-up-then-push serialized per registry repository on the host, and the
    look-up before each push. The registry (distribution) overwrites a tag silently, so without
    them both look-ups can find v1 free and the later push replaces the earlier one: then both
    "succeed", or one fails reading back the other's push, instead of a clean tag conflict.
    (A race: without the protection this fails often, not always.)
    """
    roots: dict[str, Path] = {}
    images: dict[str, str] = {}
    for who in ("a", "b"):
        steps = {"0001-who": f"# Say who\nRUN echo {who} {uuid.uuid4().hex} > /who\n"}
        roots[who] = busybox_repo(tmp_path / who, repo_name, steps)
        built = imagectl(roots[who], "build", "next", "-q")
        assert built.code == 0, built.stderr
        images[who] = image_id(f"{repo_name}:v1")
        # keep the image under another tag and free v1 for the other repository's build;
        # publish puts the recorded image back on v1 before pushing it
        docker("tag", images[who], f"{repo_name}:keep-{who}")
        docker("rmi", f"{repo_name}:v1")
    assert images["a"] != images["b"]
    locks = {who: (root / "lock" / "line.lock.toml").read_bytes() for who, root in roots.items()}

    outcomes = dict(
        zip(
            ("a", "b"),
            run_together((roots["a"], ("publish",)), (roots["b"], ("publish",))),
            strict=True,
        )
    )

    assert sorted(o.code for o in outcomes.values()) == [0, 1], outcomes
    winner = next(who for who, o in outcomes.items() if o.code == 0)
    loser = "b" if winner == "a" else "a"
    digest = read_lock(roots[winner], repo_name).versions[0].digest
    assert digest.startswith("sha256:")
    assert remote(f"{repo_name}:v1") == (digest, images[winner])  # the tag names the winner
    assert image_id(f"{repo_name}:v1") == images[winner]
    refused = outcomes[loser]
    assert "Traceback" not in refused.stderr
    assert f"pushing {repo_name}:v1" not in refused.stderr
    # a tag conflict naming the tag, the winner's digest and image, and the loser's image
    assert "\nimagectl: tag conflict: the registry already has " in refused.stderr, refused
    for named in (f"{repo_name}:v1 as {digest}", images[winner], images[loser]):
        assert named in refused.stderr, (named, refused.stderr)
    assert (roots[loser] / "lock" / "line.lock.toml").read_bytes() == locks[loser]


def test_registry_credentials_never_reach_output_lock_or_files(
    tmp_path: Path, repo_name: str
) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"user:{MARKER}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {REGISTRY: {"auth": auth}}}))
    env = {"DOCKER_CONFIG": str(config)}
    root = busybox_repo(tmp_path, repo_name, fresh_steps())
    secrets = (MARKER, auth, f"user:{MARKER}")

    outputs: list[str] = []
    for args in (
        ("build", "next"),
        ("build", "next", "--all", "--json"),
        ("publish",),
        ("publish", "--json"),
        ("history", "line"),
        ("history", "line", "--json"),
        ("plan", "--json"),
        ("squash",),
        ("resolve", f"{repo_name}:v1", "--json"),
    ):
        result = imagectl(root, *args, env=env)
        assert result.code == 0, f"{args}: {result.stderr}"
        outputs.append(f"$ imagectl {' '.join(args)}\n{result.stdout}\n{result.stderr}")
    # the runs did go through this docker config (buildx keeps its state beside it) ...
    assert (config / "buildx").is_dir()
    # ... and published with it
    assert_lock_matches_registry(root, repo_name, 3)

    for text in outputs:
        for secret in secrets:
            assert secret not in text, text
    written = [path for path in root.rglob("*") if path.is_file()]
    assert root / "lock" / "line.lock.toml" in written
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, path
    for version in read_lock(root, repo_name).versions:
        described = docker("image", "inspect", version.tag) + docker(
            "history", "--no-trunc", version.tag
        )
        for secret in secrets:
            assert secret not in described, version.tag
