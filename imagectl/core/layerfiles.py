"""What a package reader asks of an image's files and what one layer changes among them: plain
values shared by the engine adapters and the package records, with no adapter behind them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSelection:
    """Which files of an image a reader wants: `match` decides for a path from the root (no
    leading /); `globs` are `find -path` patterns that select at least those (a reader that
    runs inside a container narrows its walk with them); `roots`, when given, are the paths
    (from the root) below which, or at which, every selected file lies: a reader of layer
    folders walks only those, so its cost is what they hold, not what the image weighs."""

    match: Callable[[str], bool]
    globs: tuple[str, ...]
    roots: tuple[str, ...] | None = None  # None: anywhere (walk every folder)


# A regular file's permission bits (st_mode & 0o7777, as a tar header has them), uid and gid.
Meta = tuple[int, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerChange:
    """What one layer changes among the files of a selection (paths from the root)."""

    deleted: tuple[str, ...] = ()  # whiteouts: the path and everything below it are gone
    opaque: tuple[str, ...] = ()  # folders whose contents in the layers below are hidden
    files: Mapping[str, bytes] = field(default_factory=dict)  # selected files it adds or replaces
    links: Mapping[str, str] = field(default_factory=dict)  # selected symlinks: path -> target
    meta: Mapping[str, Meta] = field(default_factory=dict)  # the selected files' mode and owner
    dirs: tuple[str, ...] = ()  # selected folders it has (made, or holding what it changed)

    @property
    def empty(self) -> bool:
        return not (self.deleted or self.opaque or self.files or self.links or self.dirs)


def merged_files(changes: Iterable[LayerChange]) -> dict[str, bytes]:
    """The selected files of the image the layers (bottom first) make, as overlay merges them."""
    return merged_view(changes)[0]


def merged_view(changes: Iterable[LayerChange]) -> tuple[dict[str, bytes], dict[str, Meta]]:
    """The selected files of the image the layers (bottom first) make, and their mode and
    owner, as overlay merges them: a layer's whiteouts and opaque folders remove what lies
    below, and so does a symlink it puts where a file was; then its own files."""
    files: dict[str, bytes] = {}
    meta: dict[str, Meta] = {}
    for change in changes:
        for path in list(files):
            if any(path == d or path.startswith(f"{d}/") for d in change.deleted) or any(
                path.startswith(f"{o}/") for o in change.opaque
            ):
                del files[path]
                meta.pop(path, None)
        for path in change.links:
            files.pop(path, None)
            meta.pop(path, None)
        files.update(change.files)
        for path in change.files:
            if path in change.meta:
                meta[path] = change.meta[path]
            else:
                meta.pop(path, None)  # a reader that does not say: unknown, not the lower one's
    return files, meta


def merged_dirs(changes: Iterable[LayerChange]) -> frozenset[str]:
    """The selected folders of the image the layers (bottom first) make, as overlay merges
    them: a whiteout removes a folder and what is below it, an opaque folder what is below
    it, a file or symlink put at its path replaces it."""
    dirs: set[str] = set()
    for change in changes:
        for path in list(dirs):
            if any(path == d or path.startswith(f"{d}/") for d in change.deleted) or any(
                path.startswith(f"{o}/") for o in change.opaque
            ):
                dirs.discard(path)
        dirs.difference_update(change.files, change.links)
        dirs.update(change.dirs)
    return frozenset(dirs)
