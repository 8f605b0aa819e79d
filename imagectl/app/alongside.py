"""Work done while a build runs. A build is mostly waiting on its process (buildx, the engine),
so what does not feed it (registry look-ups, importing the stages after it) costs nothing when
done beside it instead of before or after it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def alongside(main: Callable[[], T], side: Callable[[], None]) -> T:
    """`main()` in a thread while `side()` runs here; main's result once both are over. An
    error of `side` wins (raised once main is over too: nothing after it runs on its result);
    else main's own error is raised."""
    result: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            result.append(main())
        except BaseException as exc:  # handed to the caller's thread, raised there
            failed.append(exc)

    thread = threading.Thread(target=run, name="imagectl-build", daemon=True)
    thread.start()
    try:
        side()
    finally:
        thread.join()
    if failed:
        raise failed[0]
    return result[0]
