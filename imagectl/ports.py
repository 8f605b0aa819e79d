"""The small interfaces the workflows need from the outside world, and the values they return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from imagectl.model import Builder


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    """What imagectl needs to know about one image in the engine."""

    image_id: str
    layers: tuple[str, ...]  # RootFS.Layers diff ids, bottom first
    size: int
    repo_digests: tuple[str, ...] = ()  # e.g. localhost:5000/x@sha256:...
    config: Mapping[str, Any] = field(default_factory=dict)  # Env, Cmd, Entrypoint, Labels...

    def digest_in(self, repository: str) -> str:
        """The registry digest this image has in `repository`, or ""."""
        for entry in self.repo_digests:
            name, _, digest = entry.partition("@")
            if name == repository:
                return digest
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteImage:
    """What a registry says a tag names."""

    digest: str  # the manifest digest: what `repo@sha256:...` pins
    config_digest: str  # the image config's digest, which is the engine's image id


# (type, mode, uid, gid, link target, sha256 of content, device major, device minor)
FileEntry = tuple[str, int, int, int, str, str, int, int]


class Engine(Protocol):
    @property
    def builder(self) -> Builder: ...

    def check(self) -> None: ...

    def inspect_image(self, ref: str) -> ImageInfo | None: ...

    def pull(self, ref: str) -> None: ...

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        on_output: Callable[[str], None],
        secrets: Mapping[str, str] | None = None,
        no_cache: bool = False,
    ) -> str: ...

    def tag(self, image_id: str, ref: str) -> None: ...

    def read_file(self, image: str, path: str) -> bytes | None: ...

    def file_tree(self, image: str) -> dict[str, FileEntry]: ...

    def import_rootfs(self, source: str, *, changes: list[str], tag: str) -> str: ...

    def remove_image(self, ref: str) -> None: ...

    def push(self, ref: str, *, on_output: Callable[[str], None]) -> str:
        """Push `ref`; return the manifest digest the registry stored."""
        ...


class Registry(Protocol):
    def lookup(self, ref: str) -> RemoteImage | None:
        """What `ref` names in its registry, or None when the tag is absent."""
        ...


class Git(Protocol):
    def commit_of(self, path: Path) -> str:
        """The last commit that changed `path`; "uncommitted" if it has changes or no git."""
        ...
