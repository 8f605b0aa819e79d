"""Comparing two images' file trees (pure): what verify reports and checkpoint must not change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagectl.core.ports import FileEntry


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeDiff:
    """Every difference from an old tree to a new one, sorted; nothing is cut off."""

    missing: tuple[str, ...] = ()  # in the old tree only
    extra: tuple[str, ...] = ()  # in the new tree only
    different: tuple[tuple[str, str], ...] = ()  # (path, type|content|mode|owner|link|xattr)

    @property
    def empty(self) -> bool:
        return not (self.missing or self.extra or self.different)


def tree_differences(old: Mapping[str, FileEntry], new: Mapping[str, FileEntry]) -> TreeDiff:
    different = []
    for path in sorted(set(old) & set(new)):
        kind = old[path].difference(new[path])
        if kind:
            different.append((path, kind))
    return TreeDiff(
        missing=tuple(sorted(set(old) - set(new))),
        extra=tuple(sorted(set(new) - set(old))),
        different=tuple(different),
    )
