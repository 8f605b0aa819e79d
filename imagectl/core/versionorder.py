"""Ordering package versions as each packaging tool does (pure): dpkg's rule for debs, PEP 440
for pip and conda, and the `--version` constraints of `imagectl query package`.

Debian's rule is dpkg's own (`dpkg --compare-versions`, lib/dpkg/version.c): the epoch as a
number, then the upstream version and the revision, each compared in runs of non-digits (`~`
before everything, even the end; letters before other characters) and runs of digits (as
numbers). PEP 440 is `packaging.version`, the PyPA's implementation that pip itself uses.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from imagectl.core.errors import PlanError

OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
}
CLAUSE = re.compile(r"^\s*(<=|>=|==|!=|<|>|=)?\s*([^<>=!\s]\S*)\s*$")


class NotComparableError(ValueError):
    """A version the kind's ordering does not know (not PEP 440, for pip or conda)."""


def compare(kind: str, left: str, right: str) -> int:
    """<0, 0 or >0 as `left` sorts before, with or after `right` for a package of `kind`."""
    if kind == "deb":
        return compare_debian(left, right)
    return _compare_pep440(left, right)


def compare_debian(left: str, right: str) -> int:
    left_epoch, left_upstream, left_revision = _debian_parts(left)
    right_epoch, right_upstream, right_revision = _debian_parts(right)
    if left_epoch != right_epoch:
        return left_epoch - right_epoch
    return _verrevcmp(left_upstream, right_upstream) or _verrevcmp(left_revision, right_revision)


def _debian_parts(version: str) -> tuple[int, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def _order(char: str) -> int:
    """dpkg's weight of one character of a non-digit run ("" is the end of the string)."""
    if not char or "0" <= char <= "9":
        return 0
    if char == "~":
        return -1
    if char.isascii() and char.isalpha():
        return ord(char)
    return ord(char) + 256


def _verrevcmp(left: str, right: str) -> int:
    i = j = 0
    while i < len(left) or j < len(right):
        while (i < len(left) and not _digit(left, i)) or (j < len(right) and not _digit(right, j)):
            weight_left = _order(left[i] if i < len(left) else "")
            weight_right = _order(right[j] if j < len(right) else "")
            if weight_left != weight_right:
                return weight_left - weight_right
            i, j = i + 1, j + 1
        while i < len(left) and left[i] == "0":
            i += 1
        while j < len(right) and right[j] == "0":
            j += 1
        first_difference = 0
        while _digit(left, i) and _digit(right, j):
            first_difference = first_difference or ord(left[i]) - ord(right[j])
            i, j = i + 1, j + 1
        if _digit(left, i):
            return 1
        if _digit(right, j):
            return -1
        if first_difference:
            return first_difference
    return 0


def _digit(text: str, index: int) -> bool:
    return index < len(text) and "0" <= text[index] <= "9"


def _compare_pep440(left: str, right: str) -> int:
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415 (pip and conda only)

    try:
        a, b = Version(left), Version(right)
    except InvalidVersion as exc:
        raise NotComparableError(str(exc)) from None
    return (a > b) - (a < b)


@dataclass(frozen=True, slots=True)
class Clause:
    op: str
    version: str

    def holds(self, kind: str, version: str) -> bool:
        return OPERATORS[self.op](compare(kind, version, self.version), 0)

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True, slots=True)
class Constraint:
    """Comma-separated clauses that must all hold (`>=3.0.13-0ubuntu3,<3.0.13-0ubuntu3.4`); a
    clause without an operator is `==`. No clause: any version."""

    clauses: tuple[Clause, ...] = ()

    def holds(self, kind: str, version: str) -> bool:
        """Raises NotComparableError for a version the kind's ordering does not know."""
        return all(clause.holds(kind, version) for clause in self.clauses)

    def __str__(self) -> str:
        return ",".join(map(str, self.clauses))


def parse_constraint(text: str) -> Constraint:
    clauses = []
    for part in text.split(","):
        found = CLAUSE.match(part)
        if found is None:
            raise PlanError(
                f"--version {text!r} is not a version constraint.",
                hint="Give comma-separated clauses such as '<3.0.13-0ubuntu3.4' or "
                "'>=2.1,!=2.3' (operators < <= = == != >= >; none means ==).",
            )
        clauses.append(Clause(op=found.group(1) or "==", version=found.group(2)))
    return Constraint(tuple(clauses))
