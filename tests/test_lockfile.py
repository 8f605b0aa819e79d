"""Lockfile round-trips, golden text, comment preservation, atomic writes, validation."""

from __future__ import annotations

import os
import random
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import tomlkit
from tomlkit.items import AoT

from imagectl.core import lockfile, lockread
from imagectl.core.errors import LockfileError
from imagectl.core.lockfile import _fill_version_table, version_text
from imagectl.core.model import LOCK_SCHEMA, Lock, LockedVersion, RecordedTest

from .helpers import sample_lock

GOLDEN = Path(__file__).parent / "golden"


def read(path: Path) -> Lock:
    return lockfile.read_lock(
        path, line="line", repository="localhost:5000/t/line", base="localhost:5000/busybox:latest"
    )


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    lock = sample_lock(3)
    path = tmp_path / "line.lock.toml"
    assert lockfile.write_lock(path, lock) is True
    assert read(path) == lock


def test_text_matches_golden_file(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(2))
    golden = GOLDEN / "two-versions.lock.toml"
    if os.environ.get("IMAGECTL_UPDATE_GOLDEN"):
        golden.write_text(path.read_text())
    assert path.read_text() == golden.read_text()


def test_unchanged_lock_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(2))
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert lockfile.write_lock(path, sample_lock(2)) is False
    assert path.stat().st_mtime_ns == before - 10**9


def test_hand_written_comments_survive_an_appended_version(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    text = path.read_text().replace("[[versions]]", "# v1 was the first pod image\n[[versions]]")
    path.write_text(text)
    lockfile.write_lock(path, sample_lock(2))
    new = path.read_text()
    assert "# v1 was the first pod image" in new
    assert read(path) == sample_lock(2)
    assert new.index("# v1 was the first") < new.index("version = 2")


def test_publishing_updates_only_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lock = sample_lock(2)
    lockfile.write_lock(path, lock)
    before = path.read_text()
    published = lock.with_published(1, f"sha256:{'ab' * 32}")
    lockfile.write_lock(path, published)
    after = path.read_text()
    assert read(path) == published
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1
    assert changed[0][1].startswith("digest = ")


def test_publishing_writes_the_same_text_without_parsing_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish writes the lock once per version: after a write of imagectl's own text, the
    next one renders the new lock without parsing the file again, and gives the same text."""
    path, other = tmp_path / "line.lock.toml", tmp_path / "other.lock.toml"
    lock = sample_lock(3)
    lockfile.write_lock(path, lock)
    lockfile.write_lock(other, lock)
    first = lock.with_published(1, f"sha256:{'ab' * 32}")
    lockfile.write_lock(path, first)  # parsed: its text came from a build's append
    parsed: list[str] = []
    real = lockfile.lock_from_text

    def counting(text: str, where: Path) -> Lock:
        parsed.append(str(where))
        return real(text, where)

    monkeypatch.setattr(lockfile, "lock_from_text", counting)
    second = first.with_published(2, f"sha256:{'cd' * 32}")
    lockfile.write_lock(path, second)
    assert parsed == []
    lockfile.write_lock(other, first)  # not the text this process last wrote there: parsed
    lockfile.write_lock(other, second)
    assert path.read_text() == other.read_text()
    assert read(path) == second


def test_a_hand_edit_after_a_write_is_still_kept(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lock = sample_lock(2)
    lockfile.write_lock(path, lock)
    lockfile.write_lock(path, lock.with_published(1, f"sha256:{'ab' * 32}"))
    edited = path.read_text().replace("[[versions]]", "# kept by hand\n[[versions]]", 1)
    path.write_text(edited)
    lockfile.write_lock(
        path, lock.with_published(1, f"sha256:{'ab' * 32}").with_published(2, f"sha256:{'cd' * 32}")
    )
    assert "# kept by hand" in path.read_text()


def test_unwritable_folder_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    before = path.read_text()

    def refuse(**_: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("imagectl.core.lockfile.tempfile.mkstemp", refuse)
    with pytest.raises(LockfileError, match="Permission denied") as info:
        lockfile.write_lock(path, sample_lock(2))
    assert "lock/ folder is writable" in str(info.value)
    assert path.read_text() == before


def test_failed_rename_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    before = path.read_text()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("imagectl.core.files.os.replace", refuse)  # where the rename is made
    with pytest.raises(LockfileError, match="No space left"):
        lockfile.write_lock(path, sample_lock(2))
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.lock.toml"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema = 1\nline = [\n", "not valid TOML"),
        ("line = 'x'\n", "no integer 'schema'"),
        (f"schema = {LOCK_SCHEMA + 1}\nline='line'\nrepository='r'\nbase='b'\n", "newer"),
        ("schema = 1\nline='line'\nrepository='r'\nbase='b'\nversions = 3\n", "array of tables"),
        (
            "schema = 1\nline='line'\nrepository='r'\nbase='b'\n[[versions]]\nversion = 1\n",
            "has no 'tag'",
        ),
    ],
)
def test_broken_locks_are_refused_with_the_file_named(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "line.lock.toml"
    path.write_text(text)
    with pytest.raises(LockfileError, match=message) as info:
        read(path)
    assert str(path) in str(info.value)


def test_versions_must_count_up(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(2))
    path.write_text(path.read_text().replace("version = 2", "version = 5"))
    with pytest.raises(LockfileError, match="expected 2"):
        read(path)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    path.write_text(path.read_text().replace("layers = 2", 'layers = "two"'))
    with pytest.raises(LockfileError, match=r"versions\[0\]\.layers must be int"):
        read(path)


def test_missing_file_is_an_empty_lock(tmp_path: Path) -> None:
    lock = read(tmp_path / "absent.lock.toml")
    assert isinstance(lock, Lock)
    assert lock.versions == ()


def test_appending_versions_one_by_one_gives_the_golden_text(tmp_path: Path) -> None:
    path = tmp_path / "lock" / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    lockfile.write_lock(path, sample_lock(2))  # the append-only fast path
    assert path.read_text() == (GOLDEN / "two-versions.lock.toml").read_text()
    assert read(path) == sample_lock(2)


def lock_with_tests() -> Lock:
    lock = sample_lock(2)
    tests = (
        RecordedTest(
            name="increments/line/0001-step.test.sh", hash=f"sha256:{'a' * 64}", result="passed"
        ),
        RecordedTest(
            name="increments/line/0002-step/start-test.sh.j2",
            hash=f"sha256:{'b' * 64}",
            result="passed",
        ),
    )
    return replace(lock, versions=(lock.versions[0], replace(lock.versions[1], tests=tests)))


def test_tests_that_ran_round_trip_one_inline_table_each(tmp_path: Path) -> None:
    path = tmp_path / "lock" / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    lockfile.write_lock(path, lock_with_tests())  # the append-only path
    text = path.read_text()
    assert read(path) == lock_with_tests()
    assert text.count("tests = [") == 1  # left out where no test ran
    assert '    {name = "increments/line/0001-step.test.sh", hash = "sha256:' in text
    other = tmp_path / "other" / "line.lock.toml"
    lockfile.write_lock(other, lock_with_tests())  # the tomlkit path writes the same text
    assert other.read_text() == text
    assert read(path).versions[0].tests == ()  # older lockfiles (no tests) still read


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{name = "t.sh", hash = "sha256:12", result = "passed"}', r"tests\[0\]\.hash"),
        (
            '{name = "t.sh", hash = "sha256:' + "a" * 64 + '", result = "failed"}',
            "not a test record",
        ),
        ('{name = "t.sh"}', "not a test record"),
        ('"t.sh"', "not a test record"),
    ],
)
def test_a_hand_edited_test_record_is_refused(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "line.lock.toml"
    lockfile.write_lock(path, sample_lock(1))
    path.write_text(path.read_text() + f"tests = [{entry}]\n")
    with pytest.raises(LockfileError, match=message):
        read(path)


def test_an_appended_version_is_written_exactly_as_tomlkit_writes_it() -> None:
    """The build path appends a version without tomlkit; its text must be tomlkit's to the
    byte, for strings with every kind of character a summary or path may hold."""
    rng = random.Random(7)
    alphabet = [chr(i) for i in range(0x80)] + list("éü€😀\u2028\u0085")
    for n in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        version = LockedVersion(
            version=n + 1, tag="r:v1", increment="i", summary=text, increment_hash="h",
            dockerfile_hash="d", parent=f"p{text}", parent_digest="x", image_id="y", layers=2,
            size=3, builder="buildx", built_at="b", commit="c", images=(text, "a"),
            tests=(RecordedTest(name=text, hash="h", result="passed"),) if n % 2 else (),
            checkpoint=n % 3 == 0, skipped=n % 5 == 0, reason=text if n % 5 == 0 else "",
        )  # fmt: skip
        table = tomlkit.table()
        _fill_version_table(table, version)
        document = tomlkit.document()
        document.append("versions", AoT([table]))
        assert version_text(version) == tomlkit.dumps(document), repr(text)


def test_the_fast_reader_reads_what_imagectl_writes_as_tomllib_does() -> None:
    rng = random.Random(11)
    alphabet = [chr(i) for i in range(0x80)] + list("éü€😀\u2028")
    for _ in range(60):
        versions = []
        for number in range(1, 6):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
            versions.append(
                LockedVersion(
                    version=number,
                    tag="r:v1",
                    increment="i",
                    summary=text,
                    increment_hash="h",
                    dockerfile_hash="d",
                    parent=f"p{text}",
                    parent_digest="x",
                    image_id="y",
                    layers=2,
                    size=number * 3,
                    builder="buildx",
                    built_at="b",
                    commit="c",
                    images=(text,),
                    includes=(text,) if number % 2 else (),
                    tests=(RecordedTest(name=text, hash="h", result="passed"),) * (number % 3),
                    checkpoint=number == 3,
                    skipped=number == 4,
                    reason=text,
                )
            )
        written = lockfile.render_lock(Lock(line="l", repository="r", base="b", versions=()))
        whole = lockfile.render_lock(
            Lock(line="l", repository="r", base="b", versions=tuple(versions))
        )
        appended = written.rstrip("\n") + "\n\n" + "\n".join(map(version_text, versions))
        for text in (whole, appended):
            assert lockread.parse_generated(text) == tomllib.loads(text)


def _digest(rng: random.Random) -> str:
    return "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))


def _random_lock(rng: random.Random, alphabet: list[str]) -> Lock:
    """A lock of valid digests and random text everywhere text is free."""

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))

    versions = [
        LockedVersion(
            version=number,
            tag=text(),
            increment=text(),
            summary=text(),
            increment_hash=_digest(rng),
            dockerfile_hash=_digest(rng),
            instructions_hash=_digest(rng) if number % 2 else "",
            inputs_hash=_digest(rng) if number % 3 else "",
            includes=(text(), text()) if number % 2 else (),
            parent=text(),
            parent_digest=_digest(rng),
            images=(f"r{number}@{_digest(rng)}",) * (number % 2),
            image_id="" if number == 4 else _digest(rng),
            layers=number,
            size=number * 1000,
            builder=text(),
            engine=text(),
            built_at=text(),
            commit=text(),
            digest=_digest(rng) if number % 2 else "",
            checkpoint=number == 3,
            skipped=number == 4,
            reason=text() if number == 4 else "",
            foreign_digest=_digest(rng) if number == 4 else "",
            tests=(RecordedTest(name=text() or "t", hash=_digest(rng), result="passed"),)
            * (number % 3),
        )
        for number in range(1, 7)
    ]
    return Lock(
        line="l", repository="r", base="b", base_digest=_digest(rng),
        base_image_id=_digest(rng), versions=tuple(versions),
    )  # fmt: skip


def test_the_version_reader_reads_as_the_general_reader_does(tmp_path: Path) -> None:
    """What lockread takes it reads exactly as tomllib and the field checks do; it takes every
    lock whose text needs no escapes (so the fast path is the one `plan` meets)."""
    rng = random.Random(5)
    plain = [chr(i) for i in range(0x20, 0x7F) if chr(i) not in '"\\'] + list("éü€😀")
    odd = [*plain, '"', "\\", "\t", "\n", "\x7f"]
    taken = 0
    for alphabet in (plain,) * 30 + (odd,) * 30:
        lock = _random_lock(rng, alphabet)
        text = lockfile.render_lock(lock)
        general = lockfile._lock_from_document(tomllib.loads(text), tmp_path)
        assert general == lock
        assert lockfile.lock_from_text(text, tmp_path) == lock
        start = text.index("\n[[versions]]\n") + 1
        fast = lockread.read_generated_versions(text, start)
        if alphabet is plain:
            assert fast == lock.versions
        taken += fast is not None
    assert 30 <= taken < 60  # the odd texts have escapes in most locks


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\nsize = 6000\n", "\nsize = 6000 # hand-written\n"),  # a comment
        ("\nlayers = 6\n", "\nlayers = 06\n"),  # not an integer TOML takes
        ("\nversion = 6\n", "\nversion = 7\n"),  # a gap
        ('\nparent_digest = "sha256:', '\nparent_digest = "SHA256:'),  # no digest
        ('\ndigest = "sha256:', '\ndigest = "sha256:0'),  # 65 digits
        ('\nimages = ["r5@', '\nimages = ["r 5@'),  # not pinned
        ('\nimage_id = "sha256:', '\nimage_id = "'),  # no image id, not skipped
        ("\nlayers = 6\n", "\n"),  # a required field missing
        ("\nlayers = 6\n", '\nlayers = "6"\n'),  # of the wrong type
        ("\nchecked = ", "\nchecked = "),  # placeholder: replaced below
    ],
)
def test_the_version_reader_declines_what_the_general_reader_refuses(
    tmp_path: Path, old: str, new: str
) -> None:
    """An edit the fast reader does not take goes to the general reader, which refuses it
    (or reads it) as before: lockread never answers for a text it does not know."""
    lock = _random_lock(random.Random(1), [chr(i) for i in range(0x61, 0x7B)])
    text = lockfile.render_lock(lock)
    if old == "\nchecked = ":
        old, new = "\nskipped = true\n", "\nskipped = true\ncheckpoint = false\n"
    assert old in text
    edited = text.replace(old, new)
    start = edited.index("\n[[versions]]\n") + 1
    assert lockread.read_generated_versions(edited, start) is None
    try:
        expected: Lock | str = lockfile._lock_from_document(tomllib.loads(edited), tmp_path)
    except (LockfileError, tomllib.TOMLDecodeError) as exc:
        expected = str(exc)
    try:
        got: Lock | str = lockfile.lock_from_text(edited, tmp_path)
    except (LockfileError, tomllib.TOMLDecodeError) as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize(
    "edited",
    [
        "schema = 1 # a comment at the end of a line\n",
        "schema=1\n",
        'line = """a\nb"""\n',
        "line = 'literal'\n",
        'line = "a\\/b"\n',
        'line = "\\ud83d\\ude00"\n',
        'line = "\\U0001F600"\n',
        "size = 1_000\n",
        "size = +1\n",
        "size = 01\n",
        "ratio = 1.5\n",
        "a.b = 1\n",
        "[versions]\nversion = 1\n",
        'tests = [{name = "n", hash = "h", result = "passed"}]\n',
        'tests = [\n    {name = "n", hash = "h", result = "passed"}\n]\n',
        'line = "a"\nline = "b"\n',
        'images = ["a", 1]\n',
    ],
)
def test_anything_else_is_left_to_tomllib(edited: str) -> None:
    """The fast reader never answers differently from tomllib: what it does not know it hands
    over (None), so a hand-edited lock is read, or refused, exactly as before."""
    assert lockread.parse_generated(edited) is None


def test_lock_text_is_what_tomlkit_writes() -> None:
    """The whole lock written without tomlkit (a publish records a digest per tag) is byte for
    byte what tomlkit writes, control characters and quotes included."""
    rng = random.Random(3)
    alphabet = [chr(i) for i in range(0x100)] + list("é€😀\u2028")
    for _ in range(100):
        lock = _random_lock(rng, alphabet)
        assert lockfile.lock_text(lock) == lockfile.render_lock(lock)
        empty = Lock(line=lock.line, repository='r"x', base="b\\")
        assert lockfile.lock_text(empty) == lockfile.render_lock(empty)


def test_a_digest_is_recorded_without_tomlkit_unless_the_lock_was_hand_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "line.lock.toml"
    lock = _random_lock(random.Random(2), [chr(i) for i in range(0x61, 0x7B)])
    lockfile.write_lock(path, lock)
    published = replace(lock.versions[0], digest=_digest(random.Random(9)))
    recorded = replace(lock, versions=(published, *lock.versions[1:]))

    def no_tomlkit(*_args: object) -> str:
        raise AssertionError("tomlkit was used")

    with monkeypatch.context() as patched:
        patched.setattr(lockfile, "render_lock", no_tomlkit)
        assert lockfile.write_lock(path, recorded)
    assert lockfile.lock_from_text(path.read_text(), path) == recorded
    # A comment of the user's: tomlkit edits the text in place and keeps it.
    path.write_text(path.read_text().replace("\nlayers = 2\n", "\n# mine\nlayers = 2\n"))
    assert lockfile.write_lock(path, lock)
    assert "# mine\n" in path.read_text()
    assert lockfile.lock_from_text(path.read_text(), path) == lock
