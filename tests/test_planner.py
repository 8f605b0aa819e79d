"""Planning and drift detection: pure functions over frozen values."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from imagectl.core.errors import ConfigError, DriftError
from imagectl.core.model import ImageLine, Increment, Lock, RenderedHashes
from imagectl.core.planner import check_drift, check_numbering, next_step, plan_line

from .helpers import locked_version

LINE = ImageLine(
    name="line",
    config_path=Path("images/line.toml"),
    repository="localhost:5000/t/line",
    base="localhost:5000/busybox:latest",
)


def increment(number: int, *, name: str = "step", source_hash: str | None = None) -> Increment:
    path = Path(f"increments/line/{number:04d}-{name}.Dockerfile.j2")
    return Increment(
        number=number,
        name=f"{number:04d}-{name}",
        path=path,
        template=path,
        is_folder=False,
        source_hash=source_hash or f"sha256:{number:064x}",
        summary=f"step {number}",
    )


def lock_with(count: int, *, published: set[int] | None = None) -> Lock:
    versions = tuple(
        locked_version(n, digest=f"sha256:{n + 900:064x}" if n in (published or set()) else "")
        for n in range(1, count + 1)
    )
    return Lock(line="line", repository=LINE.repository, base=LINE.base, versions=versions)


INCREMENTS = tuple(increment(n) for n in range(1, 5))


def test_first_step_builds_v1_on_the_base() -> None:
    step = next_step(LINE, lock_with(0), INCREMENTS)
    assert step is not None
    assert (step.version, step.tag, step.parent_is_base) == (1, "localhost:5000/t/line:v1", True)
    assert step.parent == LINE.base


def test_base_is_pinned_by_its_recorded_digest() -> None:
    lock = Lock(
        line="line", repository=LINE.repository, base=LINE.base, base_digest=f"sha256:{'a' * 64}"
    )
    step = next_step(LINE, lock, INCREMENTS)
    assert step is not None
    assert step.parent == f"{LINE.base}@sha256:{'a' * 64}"


def test_next_builds_on_the_unpublished_head_by_tag() -> None:
    step = next_step(LINE, lock_with(2), INCREMENTS)
    assert step is not None
    assert step.version == 3
    assert step.increment == INCREMENTS[2]
    assert step.parent == "localhost:5000/t/line:v2"


def test_next_builds_on_the_published_head_by_digest() -> None:
    step = next_step(LINE, lock_with(2, published={2}), INCREMENTS)
    assert step is not None
    assert step.parent == f"localhost:5000/t/line:v2@sha256:{902:064x}"


def test_nothing_pending_means_no_step() -> None:
    assert next_step(LINE, lock_with(4), INCREMENTS) is None
    assert plan_line(LINE, lock_with(4), INCREMENTS, all_versions=True).steps == ()


def test_plan_all_chains_parents() -> None:
    plan = plan_line(LINE, lock_with(1), INCREMENTS, all_versions=True)
    assert [s.version for s in plan.steps] == [2, 3, 4]
    assert [s.parent for s in plan.steps] == [
        "localhost:5000/t/line:v1",
        "localhost:5000/t/line:v2",
        "localhost:5000/t/line:v3",
    ]
    assert plan_line(LINE, lock_with(1), INCREMENTS, all_versions=False).steps[0].version == 2


def test_gap_in_numbering_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"gap.*expected 0003"):
        check_numbering(LINE, (increment(1), increment(2), increment(4)))


def test_numbering_must_start_at_one() -> None:
    with pytest.raises(ConfigError, match="expected 0001"):
        check_numbering(LINE, (increment(2),))


def test_duplicate_numbers_are_refused() -> None:
    with pytest.raises(ConfigError, match="share number 0002"):
        check_numbering(LINE, (increment(1), increment(2, name="a"), increment(2, name="b")))


def test_edited_increment_is_drift_naming_it() -> None:
    edited = (increment(1), increment(2, source_hash="sha256:" + "f" * 64), *INCREMENTS[2:])
    with pytest.raises(DriftError, match="edited after v2") as info:
        check_drift(LINE, lock_with(2), edited, {}, "lock/line.lock.toml")
    assert "instead of editing 0002-step" in str(info.value)
    assert "increments/line/0002-step.Dockerfile.j2" in str(info.value)


def test_deleted_increment_is_drift() -> None:
    with pytest.raises(DriftError, match="no longer exists"):
        check_drift(LINE, lock_with(3), INCREMENTS[:2], {}, "lock/line.lock.toml")


def test_renamed_increment_is_drift() -> None:
    renamed = (increment(1), increment(2, name="other"), *INCREMENTS[2:])
    with pytest.raises(DriftError, match="renamed or renumbered"):
        check_drift(LINE, lock_with(2), renamed, {}, "lock/line.lock.toml")


def test_changed_rendering_is_drift_even_with_same_source() -> None:
    rendered = {
        1: hashes(locked_version(1).dockerfile_hash),
        2: hashes("sha256:" + "e" * 64),
    }
    with pytest.raises(DriftError, match="renders differently than when v2"):
        check_drift(LINE, lock_with(2), INCREMENTS, rendered, "lock/line.lock.toml")


def test_moved_repository_is_drift() -> None:
    moved = ImageLine(
        name="line",
        config_path=LINE.config_path,
        repository="localhost:5000/elsewhere",
        base=LINE.base,
    )
    with pytest.raises(DriftError, match="cannot move"):
        check_drift(moved, lock_with(1), INCREMENTS, {}, "lock/line.lock.toml")


def test_consistent_state_passes() -> None:
    rendered = {n: hashes(locked_version(n).dockerfile_hash) for n in (1, 2)}
    check_drift(LINE, lock_with(2), INCREMENTS, rendered, "lock/line.lock.toml")


def hashes(dockerfile: str, instructions: str = "") -> RenderedHashes:
    return RenderedHashes(dockerfile=dockerfile, instructions=instructions)


def test_comment_only_edit_of_a_built_increment_is_not_drift() -> None:
    recorded = replace(locked_version(2), instructions_hash="sha256:" + "1" * 64)
    lock = replace(lock_with(2), versions=(locked_version(1), recorded))
    edited = (increment(1), increment(2, source_hash="sha256:" + "f" * 64), *INCREMENTS[2:])
    same = {2: hashes("sha256:" + "e" * 64, recorded.instructions_hash)}
    check_drift(LINE, lock, edited, same, "lock/line.lock.toml")
    changed = {2: hashes("sha256:" + "e" * 64, "sha256:" + "2" * 64)}
    with pytest.raises(DriftError, match="changes what it instructs"):
        check_drift(LINE, lock, edited, changed, "lock/line.lock.toml")


def test_edit_of_a_version_recorded_without_instructions_is_drift() -> None:
    edited = (increment(1), increment(2, source_hash="sha256:" + "f" * 64), *INCREMENTS[2:])
    same = {2: hashes("sha256:" + "e" * 64, "")}
    with pytest.raises(DriftError, match="edited after v2"):
        check_drift(LINE, lock_with(2), edited, same, "lock/line.lock.toml")


def test_drift_hint_names_the_recorded_commit() -> None:
    recorded = replace(locked_version(2), commit="0123456789abcdef0123")
    lock = replace(lock_with(2), versions=(locked_version(1), recorded))
    with pytest.raises(DriftError) as info:
        check_drift(LINE, lock, INCREMENTS[:1], {}, "lock/line.lock.toml")
    assert "git checkout 0123456789ab -- increments/line/0002" in str(info.value)
