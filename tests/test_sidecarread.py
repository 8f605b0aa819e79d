"""The fast sidecar reader answers as tomllib does for every text imagectl writes, and declines
(None) what it does not know, which tomllib then reads or refuses."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from imagectl.core import sidecar
from imagectl.core.packages import PackageRecord, VersionDelta
from imagectl.core.sidecarread import parse_generated_packages

TRICKY = (
    "plain 1.0-1 amd64",
    'pip:quo"te 1.0 /opt/site-packages',
    "pip:back\\slash 2.0 /opt/site-packages",
    "pip:tab\there 1 /opt/site-packages",
    "conda:caf\u00e9 1.0 /opt/conda",
    "conda:nbsp\u00a0name 1.0 /opt/conda",
    "pip:ctl\x01 1.0 /opt/site-packages",
    "libc6 2.36-9+deb12u4 amd64",
)


def record() -> PackageRecord:
    return PackageRecord(
        base=tuple(sorted(TRICKY)),
        versions={
            1: VersionDelta(),
            2: VersionDelta(added=("zlib1g 1:1.2.13 amd64",), removed=("plain 1.0-1 amd64",)),
            3: VersionDelta(
                added=("pip:x 1 /s",), tracked=("pip",), baseline=("pip:y 2 /s", TRICKY[1])
            ),
        },
    )


def test_every_text_imagectl_writes_reads_as_tomllib_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "line.packages.toml"
    text = sidecar.write_packages(path, line='li"ne\u00e9', record=record())
    parsed = parse_generated_packages(text)
    assert parsed is not None
    assert parsed == tomllib.loads(text)
    appended = sidecar.append_packages(path, text, 4, VersionDelta(added=(TRICKY[2],)))
    assert parse_generated_packages(appended) == tomllib.loads(appended)
    assert sidecar.read_packages(path).versions[4].added == (TRICKY[2],)


def test_an_empty_record_reads_the_same(tmp_path: Path) -> None:
    text = sidecar.write_packages(tmp_path / "a.packages.toml", line="a", record=PackageRecord())
    assert parse_generated_packages(text) == tomllib.loads(text)


def generated(tmp_path: Path) -> str:
    return sidecar.write_packages(tmp_path / "l.packages.toml", line="l", record=record())


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("[base]\n", "[base]\n# a comment in a table\n"),  # valid TOML, not generated
        ("\n", "\r\n"),
        ('    "plain 1.0-1 amd64",\n', '    "plain 1.0-1 amd64", # note\n'),
        ("version = 2\n", "version = 2\nversion = 3\n"),  # duplicate key
        ("[base]\n", "[base]\npackages = []\n[base]\n"),
        ("version = 1\n", "version = 01\n"),
        ("version = 1\n", "version = +1\n"),
        ('    "plain 1.0-1 amd64",\n', '    "pl\x7fain",\n'),  # raw DEL: TOML refuses it
        ('    "plain 1.0-1 amd64",\n', '    "a\\/b",\n'),  # JSON's escape, not TOML's
        ('    "plain 1.0-1 amd64",\n', '    "\\ud83d\\ude00",\n'),  # surrogates
        ('    "plain 1.0-1 amd64",\n', '    "\\U0001F600",\n'),  # TOML's escape, not JSON's
        ('    "plain 1.0-1 amd64",\n', "    'literal',\n"),
        ("schema = 1\n", "schema = 1\nversions = []\n"),  # then [[versions]]: TOML refuses
        ("]\n", ""),  # an unclosed array
        ('kinds = ["deb", "pip", "conda"]', 'kinds = ["deb", 1]'),
        ('kinds = ["deb", "pip", "conda"]', 'kinds = {a = "b"}'),
        ('line = "l"', "line = true"),
    ],
)
def test_a_text_not_in_the_generated_form_is_declined_or_read_the_same(
    tmp_path: Path, old: str, new: str
) -> None:
    text = generated(tmp_path)
    assert old in text
    changed = text.replace(old, new, 1)
    parsed = parse_generated_packages(changed)
    try:
        expected = tomllib.loads(changed)
    except tomllib.TOMLDecodeError:
        assert parsed is None  # what TOML refuses, the fast reader never takes
        return
    assert parsed is None or parsed == expected


def test_a_hand_edited_sidecar_still_reads_through_tomllib(tmp_path: Path) -> None:
    path = tmp_path / "l.packages.toml"
    text = generated(tmp_path).replace("[base]\n", "[base]\n# edited by hand\n")
    path.write_text(text, encoding="utf-8")
    assert parse_generated_packages(text) is None
    assert sidecar.read_packages(path).base == tuple(sorted(TRICKY))
