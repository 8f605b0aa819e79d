"""Which process made a container or a scratch image, told apart on this host: host, pid and the
process's start time, so that a later command can remove what a killed one left behind."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

SCRATCH = "imagectl-checkpoint"  # the repository of a checkpoint's images before it is tagged


def owner_of(pid: int) -> str:
    """host:pid:start, the start being the process's start time in clock ticks since boot
    (/proc/PID/stat): a pid reused by another process later has another start."""
    return f"{socket.gethostname()}:{pid}:{_started(pid)}"


def _started(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may hold spaces: count after its end.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def owner_gone(owner: str) -> bool:
    """Whether the process that made a container is gone: only this host's can be told."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if not Path(f"/proc/{pid_text}").exists():
        return True
    return bool(start) and _started(int(pid_text)) != start


def scratch_repository(tag: str) -> str:
    """Where a checkpoint of `tag` keeps its images until it tags one: readable, and its own
    (two lines of two repositories both named `line` never share it)."""
    name = tag.rpartition("/")[2].replace(":", "-")
    return f"{SCRATCH}/{name}-{hashlib.sha256(tag.encode()).hexdigest()[:12]}"


def owner_tag(pid: int) -> str:
    """The owner as an image tag (`[A-Za-z0-9_.-]`, at most 128): host-pid-start."""
    host, pid_text, start = owner_of(pid).split(":")
    return f"{_tag_safe(host)[:96]}-{pid_text}-{start}"


def tag_owner_gone(tag: str) -> bool:
    """Whether the process named by an owner_tag() is gone (only this host's can be told)."""
    rest, sep, start = tag.rpartition("-")
    host, sep_pid, pid_text = rest.rpartition("-")
    if not (sep and sep_pid) or host != _tag_safe(socket.gethostname())[:96]:
        return False
    return owner_gone(f"{socket.gethostname()}:{pid_text}:{start}")


def _tag_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
