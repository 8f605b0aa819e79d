"""Fault-injection points for the reliability tests: stop inside a window that must be safe.

`IMAGECTL_PAUSE_AT=<point>` makes imagectl print `imagectl: paused at <point>` on stderr and
wait there, so a test can kill it exactly inside that window (for example after a tag was
made and before the lock records it). Unset, a point costs one environment look-up.
"""

from __future__ import annotations

import os
import sys
import threading

POINTS = (
    "after-tag", "after-push", "after-sbom-push", "after-archive-push", "after-packages",
    "in-package-reader", "in-start-test",
)  # fmt: skip
# Set when the process is told to stop (SIGTERM): a point waiting in a worker thread (a test
# runs in the gate's pool) stops waiting, so the whole command unwinds, not just the main thread.
STOPPING = threading.Event()


class Stopped(BaseException):
    """Raised in a thread that waited at a pause point when the process was told to stop."""


def pause_point(point: str) -> None:
    """Wait here for an hour when the tests ask for this point; otherwise return at once."""
    if os.environ.get("IMAGECTL_PAUSE_AT") != point:
        return
    print(f"imagectl: paused at {point}", file=sys.stderr, flush=True)
    if STOPPING.wait(3600):
        raise Stopped
