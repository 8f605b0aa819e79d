"""Running outside programs: the plumbing under each adapter's own runner.

Each adapter (docker_engine, registry, git_repo) has one runner that turns a failure into its
own error type with the command, the exit code and stderr as fields; this module only runs.
"""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

FAILURE_TAIL = 40  # lines of a long command's output kept for the error message


def run(
    command: Sequence[str], *, timeout: float | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command` with its output captured and no stdin; the caller judges the exit code."""
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=cwd,
    )


def run_together(
    commands: Sequence[Sequence[str]], *, cwd: Path | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent short commands at once (each its output captured, no stdin): their
    wall time is the slowest one's, not the sum."""
    started = [
        (list(command), subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True, cwd=cwd,
        ))
        for command in commands
    ]  # fmt: skip
    done = []
    for command, process in started:
        stdout, stderr = process.communicate()
        done.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return done


def run_merged(command: Sequence[str], *, timeout: float) -> tuple[int | None, str]:
    """Run `command` with stdout and stderr interleaved; (exit code, output), the exit code
    None when it was killed after `timeout` seconds (with what it said until then)."""
    with subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()  # what was read before the timeout is kept
            return None, output
    return process.returncode, output


def stream(
    command: Sequence[str], *, env: dict[str, str] | None, on_output: Callable[[str], None]
) -> tuple[int, str]:
    """Run a long command, passing each output line on; return the exit code and the tail."""
    tail: collections.deque[str] = collections.deque(maxlen=FAILURE_TAIL)
    with subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_output(line)
        code = process.wait()
    return code, "\n".join(tail)


def without_names(text: str, names: Sequence[str]) -> str:
    """A program's text, lowercased, with the user-supplied references cut out: what is left
    is the program's own wording, safe to read for the kind of failure."""
    for name in sorted(names, key=len, reverse=True):
        if name:
            text = text.replace(name, "<ref>")
    return text.lower()


def last_line(text: str) -> str:
    """The last non-empty line: docker and git put their conclusion there."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
