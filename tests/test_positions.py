"""Where a pending version stands (number, tag, parent): one pure rule, tested on plain values."""

from __future__ import annotations

from pathlib import Path

from imagectl.core.model import ImageLine, Increment, Lock, LockedVersion
from imagectl.core.positions import pending_positions, position_after

from .helpers import locked_version

REPO = "localhost:5000/t/line"
BASE = "localhost:5000/busybox:latest"
BASE_DIGEST = f"sha256:{'b' * 64}"
LINE = ImageLine(name="line", config_path=Path("images/line.toml"), repository=REPO, base=BASE)


def increment(number: int) -> Increment:
    path = Path(f"increments/line/{number:04d}-step.Dockerfile.j2")
    return Increment(
        number=number, name=f"{number:04d}-step", path=path, template=path, is_folder=False,
        source_hash=f"sha256:{number:064x}", summary=f"step {number}",
    )  # fmt: skip


INCREMENTS = tuple(increment(n) for n in range(1, 5))


def lock_of(*versions: LockedVersion, base_digest: str = "") -> Lock:
    return Lock(line="line", repository=REPO, base=BASE, base_digest=base_digest, versions=versions)


def published(version: int) -> LockedVersion:
    return locked_version(version, digest=f"sha256:{version + 900:064x}")


def skipped(version: int) -> LockedVersion:
    return locked_version(version, increment="", skipped=True, reason="burned", image_id="")


def where(lock: Lock) -> list[tuple[int, int, str, bool]]:
    """(increment, version, parent, parent_is_base) of every pending increment."""
    return [
        (i.number, p.version, p.parent, p.parent_is_base)
        for i, p in pending_positions(LINE, lock, INCREMENTS)
    ]


def test_a_new_line_starts_on_the_base_pinned_by_its_recorded_digest() -> None:
    assert where(lock_of(base_digest=BASE_DIGEST)) == [
        (1, 1, f"{BASE}@{BASE_DIGEST}", True),
        (2, 2, f"{REPO}:v1", False),
        (3, 3, f"{REPO}:v2", False),
        (4, 4, f"{REPO}:v3", False),
    ]
    assert where(lock_of())[0] == (1, 1, BASE, True)  # the build resolves its digest


def test_the_first_pending_version_builds_on_a_published_head_by_digest() -> None:
    assert where(lock_of(locked_version(1), published(2))) == [
        (3, 3, f"{REPO}:v2@sha256:{902:064x}", False),
        (4, 4, f"{REPO}:v3", False),  # v3 is built just before: unpublished, by tag
    ]


def test_after_a_skip_the_number_is_burned_and_the_parent_is_the_version_before() -> None:
    assert where(lock_of(published(1), skipped(2))) == [
        (2, 3, f"{REPO}:v1@sha256:{901:064x}", False),
        (3, 4, f"{REPO}:v3", False),
        (4, 5, f"{REPO}:v4", False),
    ]


def test_a_skipped_v1_leaves_v2_on_the_base() -> None:
    assert where(lock_of(skipped(1), base_digest=BASE_DIGEST))[0] == (
        1, 2, f"{BASE}@{BASE_DIGEST}", True,
    )  # fmt: skip


def test_a_checkpoint_takes_a_number_and_is_the_next_parent() -> None:
    checkpoint = locked_version(2, increment="", checkpoint=True)
    assert where(lock_of(locked_version(1), checkpoint))[0] == (2, 3, f"{REPO}:v2", False)


def test_nothing_pending_means_no_position() -> None:
    lock = lock_of(*(locked_version(n) for n in range(1, 5)))
    assert pending_positions(LINE, lock, INCREMENTS) == ()


def test_a_back_port_stands_after_every_pending_increment() -> None:
    after = position_after(LINE, lock_of(locked_version(1)), INCREMENTS)
    assert (after.version, after.parent, after.parent_is_base) == (5, f"{REPO}:v4", False)
    built = lock_of(*(locked_version(n) for n in range(1, 4)), published(4), skipped(5))
    after = position_after(LINE, built, INCREMENTS)
    assert (after.version, after.tag, after.parent) == (
        6, f"{REPO}:v6", f"{REPO}:v4@sha256:{904:064x}",
    )  # fmt: skip
    after = position_after(LINE, lock_of(base_digest=BASE_DIGEST), ())
    assert (after.version, after.parent, after.parent_is_base) == (1, f"{BASE}@{BASE_DIGEST}", True)
