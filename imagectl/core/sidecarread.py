"""The fast reader of a package sidecar in exactly the form imagectl writes it (`write_packages`,
`append_packages`). `query package` reads every line's sidecar, where tomllib costs about 25 ms
for a pod line's 700 packages and 200 versions; this reader takes a line at a time with string
tests. Any text it does not know (a hand edit, a comment inside a table, an unusual escape) it
declines with None, and tomllib reads or refuses it as before: the two never answer differently
for a text this reader takes (tests hold them equal)."""

from __future__ import annotations

import json
import re
from typing import Any

from imagectl.core.lockread import JSON_ONLY_ESCAPES

KEY = re.compile(r"[A-Za-z0-9_-]+")
INTEGER = re.compile(r"0|[1-9][0-9]*")


def parse_generated_packages(text: str) -> dict[str, Any] | None:
    """The sidecar as tomllib would parse it, or None for a text not in the generated form."""
    top: dict[str, Any] = {}
    current = top
    versions: list[dict[str, Any]] = []
    array: list[str] | None = None
    for line in text.split("\n"):
        if array is not None:
            if line == "]":
                array = None
            elif line[:5] == '    "' and line[-2:] == '",' and _plain(body := line[5:-2]):
                array.append(body)
            elif (entry := _entry(line)) is not None:
                array.append(entry)
            else:
                return None
            continue
        if not line or (line.startswith("#") and current is top):
            continue
        if line == "[base]":
            if "base" in top:
                return None
            current = top["base"] = {}
        elif line == "[[versions]]":
            current = {}
            versions.append(current)
        else:
            key, equals, raw = line.partition(" = ")
            if not equals or KEY.fullmatch(key) is None or key in current:
                return None
            if raw == "[":
                array = current[key] = []
            elif (value := _value(raw)) is not None:
                current[key] = value
            else:
                return None
    if array is not None or (versions and "versions" in top):
        return None
    if versions:
        top["versions"] = versions
    return top


def _plain(body: str) -> bool:
    """A string that needs no unescaping: no quote, no backslash, nothing unprintable (which
    leaves out every control character; the rare printable-but-not-to-Python ones, such as
    U+00A0, take the slower way)."""
    return body.isprintable() and '"' not in body and "\\" not in body


def _entry(line: str) -> str | None:
    """An array line `    "<escaped string>",`."""
    if not (line.startswith('    "') and line.endswith('",')):
        return None
    value = _value(line[4:-1])
    return value if isinstance(value, str) else None


def _value(raw: str) -> object | None:
    """A value in one of the forms the writer makes: an integer, a basic string, a one-line
    array of strings."""
    if INTEGER.fullmatch(raw):
        return int(raw)
    if raw == "[]":
        return []
    if raw[:1] not in ('"', "[") or "\x7f" in raw:  # DEL: JSON takes it raw, TOML never
        return None
    if "\\" in raw and JSON_ONLY_ESCAPES.search(raw):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, str) and raw[0] == '"':
        return value
    if isinstance(value, list) and raw[0] == "[" and all(isinstance(v, str) for v in value):
        return value
    return None
