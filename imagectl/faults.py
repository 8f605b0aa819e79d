"""Fault-injection points for the reliability tests: stop inside a window that must be safe.

`IMAGECTL_PAUSE_AT=<point>` makes imagectl print `imagectl: paused at <point>` on stderr and
sleep there, so a test can SIGKILL it exactly inside that window (for example after a tag was
made and before the lock records it). Unset, a point costs one environment look-up.
"""

from __future__ import annotations

import os
import sys
import time

POINTS = (
    "after-tag", "after-push", "after-packages", "in-package-reader", "in-start-test",
)  # fmt: skip


def pause_point(point: str) -> None:
    """Stop here for an hour when the tests ask for this point; otherwise return at once."""
    if os.environ.get("IMAGECTL_PAUSE_AT") != point:
        return
    print(f"imagectl: paused at {point}", file=sys.stderr, flush=True)
    time.sleep(3600)
