"""The Dockerfile of an offline rebuild (pure): every RUN mounts apt's offline settings.

The settings (core's APT_OFFLINE, written by the rebuild) come from a named build context and
are bind-mounted over `/etc/apt/apt.conf.d/`, so they are in force while each step runs and in
no layer: BuildKit removes the mount points it made once the step is done.
"""

from __future__ import annotations

import re

import dockerfile

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
