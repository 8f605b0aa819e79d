"""The fast reader of a lockfile in exactly the form imagectl writes it. `plan` reads every
version of every line; in pure Python a TOML parser and a field-by-field check cost about
45 us a version. Here one regular expression per version both reads and checks it in C. Any
text it does not know (a hand edit, a comment, an escape) it declines with None, and the
general reader (tomllib and the field checks in lockfile.py) reads or refuses it as before:
the two never answer differently for a text this reader takes (tests hold them equal)."""

from __future__ import annotations

import json
import re
from typing import Any

from imagectl.core.lockschema import (
    ARCHIVE_STATES,
    DIGEST_FIELDS,
    OPTIONAL_FIELDS,
    PINNED,
    TEST_RESULTS,
    VERSION_FIELDS,
)
from imagectl.core.model import LockedVersion, RecordedTest

# Each line of the text: `key = value` where the value is a basic string with nothing to
# unescape (no quote, backslash or control character), a decimal integer as TOML writes it or
# a boolean; or, in the last group, any other line, for the slower reader below.
GENERATED_LINE = re.compile(
    r'^(?:([A-Za-z_][A-Za-z0-9_]*) = (?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|(0|[1-9][0-9]*)|'
    r"(true|false))|(.*))$",
    re.MULTILINE,
)
JSON_ONLY_ESCAPES = re.compile(r"\\(?:U|/|u[dD][89a-fA-F])")
GENERATED_TEST = re.compile(
    r'\s*\{name = ("(?:[^"\\]|\\.)*"), hash = ("(?:[^"\\]|\\.)*"), '
    r'result = ("(?:[^"\\]|\\.)*")\},\s*$'
)


def parse_generated(text: str) -> dict[str, Any] | None:
    """A lockfile in exactly the form imagectl writes it (version_text, render_lock), parsed as
    tomllib would; None for anything this reader does not know, which tomllib then reads.
    Its strings are TOML basic strings of the kind JSON reads the same."""
    top: dict[str, Any] = {}
    table = top
    versions: list[dict[str, Any]] = []
    # One regex pass over the text splits and classifies every line in C: `plan` reads
    # thousands of versions, and a Python loop over the characters would cost most of it.
    rows = GENERATED_LINE.findall(text)
    index = 0
    while index < len(rows):
        key, text_value, number, flag, line = rows[index]
        index += 1
        if key:
            if key in table:
                return None
            # Only the string's group can match nothing, so empty number and flag mean a string.
            table[key] = int(number) if number else (flag == "true") if flag else text_value
            continue
        if not line or line[0] == "#":
            continue
        if line == "[[versions]]":
            table = {}
            versions.append(table)
            continue
        key, sep, raw = line.partition(" = ")
        if not sep or not key.isidentifier() or key in table:
            return None
        if raw == "[":  # a version's tests, one inline table a line
            items, index = _generated_tests(rows, index)
            if items is None:
                return None
            table[key] = items
            continue
        value = _generated_value(raw)
        if value is None:
            return None
        table[key] = value
    if versions:
        if "versions" in top:
            return None
        top["versions"] = versions
    return top


def _generated_value(raw: str) -> object:
    first = raw[:1]
    if first in ('"', "["):
        if "\\" in raw and JSON_ONLY_ESCAPES.search(raw):
            return None  # TOML's \U........, or escapes JSON takes and TOML refuses
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        if isinstance(value, str):
            return value if first == '"' else None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None
    if raw.isdigit() and (raw == "0" or raw[0] != "0"):
        return int(raw)
    return {"true": True, "false": False}.get(raw)


def _generated_tests(
    rows: list[tuple[str, ...]], index: int
) -> tuple[list[dict[str, str]] | None, int]:
    items = []
    while index < len(rows) and rows[index][-1] != "]":
        found = GENERATED_TEST.match(rows[index][-1])
        index += 1
        if found is None:
            return None, index
        try:
            name, digest, result = (json.loads(found[n]) for n in (1, 2, 3))
        except ValueError:
            return None, index
        items.append({"name": name, "hash": digest, "result": result})
    if index >= len(rows):
        return None, index
    return items, index + 1


# A basic string with nothing to unescape: no quote, backslash or control character but tab.
_PLAIN = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*'
_DIGEST = r"(?:sha256:[0-9a-f]{64})?"
_TEST = (
    rf'    \{{name = "{_PLAIN}", hash = "sha256:[0-9a-f]{{64}}", '
    rf'result = "(?:{"|".join(TEST_RESULTS)})"\}},\n'
)
_TEST_FIELDS = re.compile(rf'name = "({_PLAIN})", hash = "([^"]*)", result = "([^"]*)"')
_LIST_ITEM = re.compile(rf'"({_PLAIN})"')


def _value_pattern(key: str, kind: type) -> str:
    if key == "tests":
        return rf"\[\n((?:{_TEST})*)\]"
    if kind is tuple:
        return rf'\[((?:"{_PLAIN}"(?:, "{_PLAIN}")*)?)\]'
    if kind is bool:
        return "(true)"  # written only when true
    if kind is int:
        return "(0|[1-9][0-9]*)"
    if key == "archive_state":
        return f'"({"|".join(state for state in ARCHIVE_STATES if state)})"'
    return f'"({_DIGEST})"' if key in DIGEST_FIELDS else f'"({_PLAIN})"'


def _version_pattern() -> re.Pattern[str]:
    parts = [r"\[\[versions\]\]\n"]
    for key, kind in VERSION_FIELDS:
        field = f"{key} = {_value_pattern(key, kind)}\\n"
        parts.append(f"(?:{field})?" if key in OPTIONAL_FIELDS else field)
    parts.append(r"\n*")  # the blank line between tables, and the end of the file
    return re.compile("".join(parts))


VERSION_TABLE = _version_pattern()
_EMPTY: dict[str, object] = {key: kind() for key, kind in VERSION_FIELDS if key in OPTIONAL_FIELDS}


def read_generated_versions(text: str, start: int) -> tuple[LockedVersion, ...] | None:
    """Every [[versions]] table from `start` to the end of `text`, checked as the general
    reader checks them; None at the first thing this reader does not take."""
    versions: list[LockedVersion] = []
    position, end = start, len(text)
    while position < end:
        found = VERSION_TABLE.match(text, position)
        if found is None:
            return None
        version = _version(found.groups(), len(versions) + 1)
        if version is None:
            return None
        versions.append(version)
        position = found.end()
    return tuple(versions)


def _version(groups: tuple[str | None, ...], index: int) -> LockedVersion | None:
    values: dict[str, Any] = dict(_EMPTY)
    for (key, kind), raw in zip(VERSION_FIELDS, groups, strict=True):
        if raw is None:
            continue  # an optional field left out: its empty value
        if kind is str:
            values[key] = raw
        elif kind is int:
            values[key] = int(raw)
        elif kind is bool:
            values[key] = True
        elif key == "tests":
            values[key] = tuple(
                RecordedTest(name=name, hash=digest, result=result)
                for name, digest, result in _TEST_FIELDS.findall(raw)
            )
        else:
            values[key] = tuple(_LIST_ITEM.findall(raw))
    if values["version"] != index or (not values["image_id"] and not values["skipped"]):
        return None  # the general reader says what is wrong
    if not all(PINNED.match(image) for image in values["images"]):
        return None
    return LockedVersion(**values)
