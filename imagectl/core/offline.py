"""The Dockerfile of an offline rebuild (pure): every RUN mounts apt's offline settings.

The settings (core's APT_OFFLINE, written by the rebuild) come from a named build context and
are bind-mounted over `/etc/apt/apt.conf.d/`, so they are in force while each step runs and in
no layer: BuildKit removes the mount points it made once the step is done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import dockerfile

from imagectl.core.aptproof import normalise, release_entries

SETTINGS_TARGET = "/etc/apt/apt.conf.d/99imagectl-offline"
RUN = re.compile(r"(?i)^(\s*RUN\s+)")


def offline_dockerfile(text: str, *, context: str) -> str:
    """`text` with `--mount=type=bind,from=<context>,source=apt.conf,target=...` on each RUN."""
    lines = text.splitlines(keepends=True)
    mount = f"--mount=type=bind,from={context},source=apt.conf,target={SETTINGS_TARGET} "
    for command in dockerfile.parse_string(text):
        if command.cmd.upper() == "RUN":
            index = command.start_line - 1
            lines[index] = RUN.sub(lambda m: m.group(1) + mount, lines[index], count=1)
    return "".join(lines)


def replayed_files(
    files: Mapping[str, Path], *, read: Callable[[Path], bytes] = Path.read_bytes
) -> dict[str, Path]:
    """The archive's files by URL, and every other URL its Release files give the same
    content under: an index by its plain path when it was fetched by hash, and the other way
    round. apt asks by hash only of a repository whose signature it accepts; told to accept an
    expired one, it asks by path, for the very bytes the signed hash names."""
    by_hash: dict[str, Path] = {}
    for path in files.values():
        by_hash.setdefault(path.name, path)  # stored under its sha256
    served = dict(files)
    for url, path in files.items():
        name = url.rsplit("/", 1)[-1]
        if name not in ("InRelease", "Release"):
            continue
        text = signed_text(read(path).decode("utf-8", "replace"))
        for alias, entry in release_entries(normalise(url), text):
            if entry.sha256 in by_hash:
                served.setdefault(alias, by_hash[entry.sha256])
    return served


def signed_text(text: str) -> str:
    """The message of a clearsigned InRelease (as gpgv --output gives it), or a Release as is:
    its signature was checked when the archive was captured."""
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    body = body.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    return "\n".join(line[2:] if line.startswith("- ") else line for line in body.split("\n"))
