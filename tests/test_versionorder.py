"""Version ordering: dpkg's rule, checked against dpkg itself, and PEP 440."""

from __future__ import annotations

import functools
import shutil
import subprocess

import pytest

from imagectl.core.errors import PlanError
from imagectl.core.versionorder import (
    NotComparableError,
    compare,
    compare_debian,
    parse_constraint,
)

# Pairs that trip naive comparisons: epochs, ~ (before everything, even the end), + and
# letters, numeric runs (3.10 after 3.4), leading zeros, revisions, backports.
DEBIAN_PAIRS = [
    ("3.0.13-0ubuntu3.1", "3.0.13-0ubuntu3.4"),
    ("3.0.13-0ubuntu3.10", "3.0.13-0ubuntu3.4"),
    ("1:0.1", "9.9"),
    ("0:1.0", "1.0"),
    ("1.0~rc1", "1.0"),
    ("1~", "1"),
    ("1~~", "1~"),
    ("1.2+dfsg-1", "1.2-1"),
    ("1.2~dfsg-1", "1.2-1"),
    ("1.0a", "1.0+"),
    ("1.0-1~bpo12+1", "1.0-1"),
    ("2.0-1", "2.0-01"),
    ("1.0", "1.0-0"),
    ("2.36.1-8+deb12u1", "2.36.1-8"),
    ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
    ("1:2.3-1", "2:0.1-1"),
    ("10", "9"),
    ("1.0.0", "1.0"),
    ("a", "B"),
    ("1.0-1ubuntu0.24.04.1", "1.0-1ubuntu0.22.04.3"),
]


def sign(number: int) -> int:
    return (number > 0) - (number < 0)


@pytest.mark.parametrize(("left", "right"), DEBIAN_PAIRS)
def test_debian_order_is_dpkgs(left: str, right: str) -> None:
    if shutil.which("dpkg") is None:  # the suite runs on Debian: dpkg is there
        pytest.fail("dpkg is not installed: the check against dpkg itself cannot run")
    expected = 0
    for op, value in (("lt", -1), ("gt", 1)):
        done = subprocess.run(["dpkg", "--compare-versions", left, op, right], check=False)
        if done.returncode == 0:
            expected = value
    assert sign(compare_debian(left, right)) == expected
    assert sign(compare_debian(right, left)) == -expected


def test_debian_order_sorts_a_release_history() -> None:
    given = ["3.0.13-0ubuntu3.4", "3.0.13-0ubuntu3", "3.0.13-0ubuntu3.1", "3.0.13-0ubuntu3.10"]
    ordered = sorted(given, key=functools.cmp_to_key(compare_debian))
    assert ordered == [
        "3.0.13-0ubuntu3",
        "3.0.13-0ubuntu3.1",
        "3.0.13-0ubuntu3.4",
        "3.0.13-0ubuntu3.10",
    ]


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.0rc1", "1.0", -1),
        ("1.0.post1", "1.0", 1),
        ("1.0", "1.0.0", 0),
        ("2.0.dev1", "2.0a1", -1),
        ("1!1.0", "2.0", 1),
        ("1.10", "1.9", 1),
    ],
)
def test_pip_and_conda_order_is_pep_440(left: str, right: str, expected: int) -> None:
    assert sign(compare("pip", left, right)) == expected
    assert sign(compare("conda", left, right)) == expected


def test_a_version_pep_440_does_not_know_is_not_compared() -> None:
    with pytest.raises(NotComparableError):
        compare("conda", "1.1.1w-weird_build", "1.0")


@pytest.mark.parametrize(
    ("text", "version", "holds"),
    [
        ("<3.0.13-0ubuntu3.4", "3.0.13-0ubuntu3.1", True),
        ("<3.0.13-0ubuntu3.4", "3.0.13-0ubuntu3.10", False),
        ("3.0.13-0ubuntu3.4", "3.0.13-0ubuntu3.4", True),  # no operator: ==
        ("=2.0-1", "2.0-01", True),
        (">=1.0,<2.0", "1.5-1", True),
        (">=1.0,<2.0", "2.0~rc1", True),
        (">=1.0,<2.0", "1:1.5", False),
        ("!=1.0-1", "1.0-1", False),
    ],
)
def test_constraints_hold_by_the_kinds_order(text: str, version: str, holds: bool) -> None:
    assert parse_constraint(text).holds("deb", version) is holds


def test_a_constraint_says_how_to_write_one() -> None:
    with pytest.raises(PlanError) as caught:
        parse_constraint("<3.0, >")
    assert "is not a version constraint" in str(caught.value)
    assert "operators < <= = == != >= >" in str(caught.value)
