"""A build's inputs: the capture and replay proxies (capture_proxy) and apt's signature
checks (gpg), as the one adapter the use cases reach them through. Both are imported when first
used: a build's capture listens at once, and loads its HTTP machinery (~10 ms of imports) only
when told to serve, while the build runs."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl.core.archive import Download, Missing
from imagectl.core.errors import CaptureError
from imagectl.core.ports import Capture, Replay

if TYPE_CHECKING:
    from imagectl.adapters.capture_proxy import RecordProxy


class InputsAdapter:
    @contextmanager
    def record(self, host: str, store: Path) -> Iterator[Capture]:
        with contextlib.ExitStack() as stack:
            capture = ListeningCapture(host, store, stack)
            yield capture

    @contextmanager
    def replay(self, host: str, files: Mapping[str, Path]) -> Iterator[Replay]:
        from imagectl.adapters import capture_proxy  # noqa: PLC0415

        with capture_proxy.replay_proxy(host, files) as proxy:
            yield proxy

    def verify_signed(self, data: bytes, keyrings: Sequence[bytes]) -> bytes | None:
        from imagectl.adapters import gpg  # noqa: PLC0415

        return gpg.verify_clearsigned(data, keyrings)

    def verify_detached(self, data: bytes, signature: bytes, keyrings: Sequence[bytes]) -> bool:
        from imagectl.adapters import gpg  # noqa: PLC0415

        return gpg.verify_detached(data, signature, keyrings)


class ListeningCapture:
    """A record proxy's socket, listening from the start (its URL goes to the build), served
    from serve() on: a client that connects before waits in the socket's backlog."""

    def __init__(self, host: str, store: Path, stack: contextlib.ExitStack) -> None:
        self._host, self._store, self._stack = host, store, stack
        try:
            self._socket = socket.create_server((host, 0))
        except OSError as error:
            raise CaptureError(
                f"cannot listen on {host}: {error.strerror or error}",
                hint="Give an IPv4 address of this machine (the docker0 gateway for builds).",
            ) from error
        stack.callback(self._socket.close)
        self._url = f"http://{host}:{self._socket.getsockname()[1]}"
        self._proxy: RecordProxy | None = None

    @property
    def url(self) -> str:
        return self._url

    def serve(self) -> None:
        if self._proxy is None:
            from imagectl.adapters import capture_proxy  # noqa: PLC0415

            self._proxy = self._stack.enter_context(
                capture_proxy.record_proxy(self._host, self._store, listening=self._socket)
            )

    def captured(self) -> tuple[Download, ...]:
        return self._proxy.captured() if self._proxy is not None else ()

    def missing(self) -> tuple[Missing, ...]:
        return self._proxy.missing() if self._proxy is not None else ()
