"""deb822, the format of apt's Release and Packages files and of dpkg's status: paragraphs of
`Field: value` lines, separated by blank lines."""

from __future__ import annotations


def paragraphs(text: str) -> tuple[dict[str, str], ...]:
    """deb822 paragraphs: `Field: value` lines, continuation lines kept (joined by newlines)."""
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                found.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += "\n" + line.strip()
        elif ":" in line and not line.startswith("#"):
            last, _, value = line.partition(":")
            current[last] = value.strip()
    return tuple(found)
