"""Withdrawn versions: the checks of a withdrawal, what resolve answers around one, and the
lockfile fields that record it (pure and on files; the engine tests are in
test_withdraw_engine.py)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from imagectl.app import lookups
from imagectl.app.project import Project, open_project
from imagectl.core import lockfile
from imagectl.core.errors import ConfigError
from imagectl.core.history import history_notes
from imagectl.core.linerenders import reference_text
from imagectl.core.linestate import load_state
from imagectl.core.lockread import read_generated_versions
from imagectl.core.model import Lock
from imagectl.core.ports import RemoteImage
from imagectl.core.resolver import newest_on, resolve_ref
from imagectl.core.withdrawals import chain_from, newest_kept, parents, taken_back, withdrawn

from . import test_decisions as decisions
from .conftest import imagectl
from .fakes import FakeBuilder, FakeGit, FakeImages, FakeRegistry
from .helpers import git_init, locked_version, make_line, sample_lock, write

REPO = "localhost:5000/t/line"
WHO = "Pat <pat@example.org>"
AT = "2026-12-04T08:00:00Z"


def line_lock(count: int, *, published: int) -> Lock:
    lock = sample_lock(count)
    versions = tuple(
        replace(v, digest=f"sha256:{v.version + 900:064x}") if v.version <= published else v
        for v in lock.versions
    )
    return replace(lock, versions=versions)


def withdraw(lock: Lock, number: int, reason: str = "sshd does not start") -> Lock:
    return withdrawn(lock, number, reason=reason, by=WHO, at=AT)


def resolved(lock: Lock, number: int) -> tuple[int, tuple[int, ...], tuple[str, ...]]:
    found = newest_on(lock, lock.versions[number - 1], query=f"{REPO}:v{number}")
    return found.newest.version, tuple(v.version for v in found.withdrawn_skipped), found.warnings


def test_older_versions_resolve_past_a_withdrawn_head_to_the_newest_kept_one() -> None:
    lock = line_lock(7, published=7)
    assert resolved(lock, 3)[0] == 7  # before: the newest
    lock = withdraw(lock, 7)
    for number in (1, 3, 6):
        newest, passed, warnings = resolved(lock, number)
        assert (newest, passed) == (6, (7,))
        assert warnings == ("v7 of line is withdrawn (sshd does not start): passed over",)
    as_json = resolve_ref(f"{REPO}:v3", (lock,)).to_json()
    assert as_json["newest"] == 6
    assert as_json["withdrawn_skipped"] == [
        {"version": 7, "tag": f"{REPO}:v7", "reason": "sshd does not start"}
    ]


def test_a_backup_on_the_withdrawn_version_itself_stays_on_it_with_a_warning() -> None:
    lock = withdraw(line_lock(7, published=7), 7)
    newest, passed, warnings = resolved(lock, 7)
    assert (newest, passed) == (7, ())
    assert "no version built on it is kept" in warnings[-1]
    assert resolve_ref(f"{REPO}:v7", (lock,)).to_json()["withdrawn"] is True


def test_a_fix_built_on_the_withdrawn_version_takes_the_pods_once_published() -> None:
    lock = withdraw(line_lock(7, published=7), 7)
    fixed = lock.with_version(locked_version(8, parent=f"{REPO}:v7@sha256:{907:064x}"))
    assert resolved(fixed, 3)[0] == 6  # v8 is not published yet: the registry serves v6
    assert resolved(fixed, 7)[0] == 7  # and no registry serves v8 yet: v7 with a warning
    published = fixed.with_published(8, f"sha256:{908:064x}")
    for number in (3, 6, 7):
        assert resolved(published, number)[:2] == (8, ())


def test_a_version_built_on_the_newest_kept_one_forks_the_chain() -> None:
    lock = withdraw(line_lock(7, published=7), 7)
    forked = lock.with_version(
        locked_version(8, parent=f"{REPO}:v6@sha256:{906:064x}", digest=f"sha256:{908:064x}")
    )
    assert parents(forked)[8] == 6
    assert [v.version for v in chain_from(forked, forked.versions[6])] == [7]
    assert resolved(forked, 3)[:2] == (8, ())
    # v8 lacks v7's layers: a backup taken on v7 cannot be laid over it
    newest, _, warnings = resolved(forked, 7)
    assert newest == 7
    assert warnings


def test_parents_follow_the_recorded_tag_and_pass_over_skipped_versions() -> None:
    lock = sample_lock(3)
    skipped = locked_version(4, skipped=True, image_id="", parent="", parent_digest="")
    lock = lock.with_version(skipped).with_version(locked_version(5, parent=f"{REPO}:v3"))
    assert parents(lock) == {1: None, 2: 1, 3: 2, 5: 3}
    assert newest_kept(withdraw(lock, 5)).version == 3  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("number", "reason", "message"),
    [
        (9, "broken", "has no v9"),
        (0, "broken", "has no v0"),
        (4, "broken", "was skipped"),
        (2, "  \n ", "--reason is empty"),
        (3, "again", "withdrawn already"),
    ],
)
def test_a_withdrawal_that_cannot_be_is_refused(number: int, reason: str, message: str) -> None:
    lock = sample_lock(3).with_version(
        locked_version(4, skipped=True, image_id="", parent="", parent_digest="")
    )
    lock = withdraw(lock, 3)
    with pytest.raises(ConfigError, match=message):
        withdraw(lock, number, reason)


def test_undo_takes_the_withdrawal_back_and_refuses_a_version_not_withdrawn() -> None:
    lock = sample_lock(3)
    back = taken_back(withdraw(lock, 2), 2)
    assert back == lock
    with pytest.raises(ConfigError, match="not withdrawn"):
        taken_back(lock, 2)


@pytest.mark.parametrize("reason", ["sshd does not start", 'quotes " and \\ and\ttab'])
def test_a_withdrawal_is_written_read_back_and_written_the_same_by_both_writers(
    tmp_path: Path, reason: str
) -> None:
    path = tmp_path / "line.lock.toml"
    lock = sample_lock(3)
    lockfile.write_lock(path, lock)
    marked = withdraw(lock, 2, reason)
    assert lockfile.write_lock(path, marked)
    text = path.read_text()
    assert 'withdrawn = true\nwithdrawn_reason = "' in text
    read = lockfile.read_lock(path, line="line", repository=REPO, base=lock.base)
    assert read == marked
    assert text == lockfile.lock_text(marked) == lockfile.render_lock(marked)
    fast = read_generated_versions(text, text.index("[[versions]]"))
    if '"' not in reason:  # the fast reader takes plain strings; the general one the rest
        assert fast == marked.versions
    lockfile.write_lock(path, taken_back(marked, 2))
    assert "withdrawn" not in path.read_text()


def cli_repo(root: Path, lock: Lock) -> Path:
    make_line(root, "line", repository=REPO, base=lock.base, increments={})
    lockfile.write_lock(root / "lock" / "line.lock.toml", lock)
    git_init(root)
    for key, value in (("user.name", "Pat"), ("user.email", "pat@example.org")):
        subprocess.run(["git", "config", key, value], cwd=root, check=True)
    return root


def test_withdraw_on_the_command_line_records_who_why_and_resolve_says_so(
    tmp_path: Path,
) -> None:
    root = cli_repo(tmp_path / "repo", line_lock(4, published=4))
    done = imagectl(root, "withdraw", "line", "v4", "--reason", "oom fix missing", "--json")
    assert done.code == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["version"], record["by"], record["oldest_resolves_to"]) == (
        4,
        WHO,
        3,
    )
    assert "head of line" in record["warnings"][0]
    text = (root / "lock" / "line.lock.toml").read_text()
    assert 'withdrawn_by = "Pat <pat@example.org>"' in text
    found = imagectl(root, "resolve", f"{REPO}:v2")
    assert found.stdout.strip() == f"{REPO}:v3@sha256:{903:064x}"
    assert "v4 of line is withdrawn (oom fix missing): passed over" in found.stderr
    history = imagectl(root, "history", "line")
    assert "v4 withdrawn by Pat <pat@example.org>" in history.stdout
    assert "oom fix missing" in history.stdout
    rows = json.loads(imagectl(root, "history", "line", "--json").stdout)
    assert [row["withdrawn"] for row in rows] == [False, False, False, True]
    assert rows[3]["withdrawn_reason"] == "oom fix missing"
    back = imagectl(root, "withdraw", "line", "4", "--undo")
    assert back.code == 0, back.stderr
    assert imagectl(root, "resolve", f"{REPO}:v2").stdout.strip().startswith(f"{REPO}:v4@")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("line", "9", "--reason", "x"), "has no v9"),
        (("line", "2"), "--reason is empty"),
        (("line", "2", "--undo"), "is not withdrawn"),
        (("nosuch", "2", "--reason", "x"), "nosuch"),
        (("line", "4", "--reason", "x"), "was skipped"),
    ],
)
def test_bad_withdraw_input_is_one_clear_error_and_leaves_the_lock(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    skipped = locked_version(4, skipped=True, image_id="", parent="", parent_digest="")
    root = cli_repo(tmp_path / "repo", line_lock(3, published=3).with_version(skipped))
    path = root / "lock" / "line.lock.toml"
    before = path.read_bytes()
    done = imagectl(root, "withdraw", *args)
    assert done.code == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == before


def test_withdraw_without_a_git_identity_records_nothing(tmp_path: Path) -> None:
    root = cli_repo(tmp_path / "repo", line_lock(3, published=3))
    for key in ("user.name", "user.email"):
        subprocess.run(["git", "config", "--unset", key], cwd=root, check=True)
    path = root / "lock" / "line.lock.toml"
    before = path.read_bytes()
    empty = tmp_path / "home"
    empty.mkdir()
    done = imagectl(
        root,
        "withdraw",
        "line",
        "2",
        "--reason",
        "x",
        env={"HOME": str(empty), "GIT_CONFIG_NOSYSTEM": "1", "XDG_CONFIG_HOME": str(empty)},
    )
    assert done.code == 1
    assert "user.name" in done.stderr
    assert path.read_bytes() == before


def fork_setup(tmp_path: Path, *, build_on: str) -> Project:
    """A line of three increments (the third shows its parent) on the fakes, v1 and v2 built,
    v2 withdrawn; its line file says [withdraw] build_on = `build_on`."""
    root = tmp_path / "repo"
    steps = {"0001-one": "# One\nRUN echo one\n", "0002-two": "# Two\nRUN echo two\n"}
    make_line(root, "line", repository=REPO, base=decisions.BASE, increments=steps)
    images = FakeImages()
    images.add(layers=("sha256:base-layer",), tag=decisions.BASE, digest=decisions.BASE_DIGEST)
    registry = FakeRegistry(images=images)
    registry.tags[decisions.BASE] = RemoteImage(
        digest=decisions.BASE_DIGEST, config_digest=images.tags[decisions.BASE]
    )
    project = open_project(
        root, builder=FakeBuilder(images), images=images, registry=registry, git=FakeGit()
    )
    assert not decisions.build(project).failures
    path = project.layout.lock_path("line")
    lock = lockfile.read_lock(path, line="line", repository=REPO, base=decisions.BASE)
    lockfile.write_lock(path, withdraw(lock, 2, "breaks sshd"))
    with (root / "images" / "line.toml").open("a") as handle:
        handle.write(f'[withdraw]\nbuild_on = "{build_on}"\n')
    write(root / "increments" / "line" / "0003-fix.Dockerfile.j2", f"# Fix\n{SHOWS}\n")
    return open_project(
        root, builder=FakeBuilder(images), images=images, registry=registry, git=FakeGit()
    )


SHOWS = 'RUN echo "parent={{ parent }}"'


def shown(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith('RUN echo "parent=')]


@pytest.mark.parametrize(("build_on", "parent"), [("head", 2), ("kept", 1)])
def test_the_next_version_builds_on_the_head_or_with_build_on_kept_on_the_newest_kept(
    tmp_path: Path, build_on: str, parent: int
) -> None:
    project = fork_setup(tmp_path, build_on=build_on)
    layout = project.layout
    planned = shown(reference_text(layout, load_state(layout, project.line("line"))))
    assert not decisions.build(project).failures  # v3
    builder = project.adapters.builder
    assert isinstance(builder, FakeBuilder)
    assert shown(builder.built[-1]) == planned == [f'RUN echo "parent={REPO}:v{parent}"']
    lock = lockfile.read_lock(
        layout.lock_path("line"), line="line", repository=REPO, base=decisions.BASE
    )
    assert parents(lock)[3] == parent
    reference = reference_text(layout, load_state(layout, project.line("line")))
    assert (f"FROM v{parent} AS v3" in reference) is True
    assert ("the chain forks here" in reference) is (build_on == "kept")
    # a pod on v1 lands on v3 either way; one on the withdrawn v2 only when v3 has its layers
    assert resolved(lock, 1)[0] == 3
    assert resolved(lock, 2)[0] == (3 if build_on == "head" else 2)
    history = lookups.read_history(project, "line")
    notes = history_notes(history.lock)
    assert any("built on v1, not on v2" in note for note in notes) is (build_on == "kept")


def test_build_on_kept_with_every_version_withdrawn_is_refused_before_building(
    tmp_path: Path,
) -> None:
    project = fork_setup(tmp_path, build_on="kept")
    path = project.layout.lock_path("line")
    lock = lockfile.read_lock(path, line="line", repository=REPO, base=decisions.BASE)
    lockfile.write_lock(path, withdraw(lock, 1, "also broken"))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="every version of line is withdrawn"):
        decisions.build(project)
    assert path.read_bytes() == before


def test_a_bad_withdraw_table_in_a_line_file_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_line(root, "line", repository=REPO, base=decisions.BASE, increments={})
    with (root / "images" / "line.toml").open("a") as handle:
        handle.write('[withdraw]\nbuild_on = "newest"\n')
    done = imagectl(root, "plan")
    assert done.code == 1
    assert "images/line.toml" in done.stderr
    assert "build_on = 'newest' is neither" in done.stderr
