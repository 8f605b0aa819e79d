"""A build's inputs: the capture and replay proxies (capture_proxy) and apt's signature
checks (gpg), as the one adapter the use cases reach them through."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from imagectl.adapters import capture_proxy, gpg
from imagectl.core.ports import Capture, Replay


class InputsAdapter:
    @contextmanager
    def record(self, host: str, store: Path) -> Iterator[Capture]:
        with capture_proxy.record_proxy(host, store) as proxy:
            yield proxy

    @contextmanager
    def replay(self, host: str, files: Mapping[str, Path]) -> Iterator[Replay]:
        with capture_proxy.replay_proxy(host, files) as proxy:
            yield proxy

    def verify_signed(self, data: bytes, keyrings: Sequence[bytes]) -> bytes | None:
        return gpg.verify_clearsigned(data, keyrings)

    def verify_detached(self, data: bytes, signature: bytes, keyrings: Sequence[bytes]) -> bool:
        return gpg.verify_detached(data, signature, keyrings)
