"""The system databases a restore merges by entry instead of by whole file (pure): dpkg's and
apt's stanza files by package, debconf's by question, the account files by name (a uid or gid
that both sides gave to different names is a conflict), and logs that both sides appended to.

Each merge is three-way: `base` is the file in the version the backup was taken on, `ours`
the backup's, `theirs` the successor's. An entry only one side changed takes that side's
change (an added, changed or removed package or user); an entry both changed differently is a
conflict, with both sides."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PARAGRAPHS = re.compile(r"\n\s*\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryConflict:
    """One entry both sides changed, differently: what each side has ("" when it removed it)."""

    entry: str  # e.g. "package curl:amd64", "user alice", "uid 1000"
    reason: str
    backup: str
    successor: str

    def to_json(self) -> dict[str, str]:
        return {
            "entry": self.entry,
            "reason": self.reason,
            "backup": self.backup,
            "successor": self.successor,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Merged:
    """A database merged by entry: its content, and what each side brought to it."""

    content: bytes
    from_backup: tuple[str, ...] = ()  # entries the backup added, changed or removed
    from_successor: tuple[str, ...] = ()  # entries the successor added, changed or removed
    conflicts: tuple[EntryConflict, ...] = ()


Merge = Callable[[bytes, bytes, bytes], Merged]


def merge_stanzas(keys: tuple[str, ...], label: str) -> Merge:
    """A file of RFC 822 paragraphs (dpkg's status, apt's extended_states, debconf's
    databases), one entry per paragraph, keyed by the `keys` fields."""

    def key_of(paragraph: str) -> str:
        fields = {
            name.strip(): value.strip()
            for line in paragraph.splitlines()
            if line[:1] not in (" ", "\t", "") and ":" in line
            for name, value in [line.split(":", 1)]
        }
        found = [fields[key] for key in keys if fields.get(key)]
        return f"{label} {':'.join(found)}" if found else f"{label} {paragraph}"

    def split(data: bytes) -> list[tuple[str, str]]:
        text = data.decode("utf-8", errors="surrogateescape")
        return [(key_of(p), p.strip("\n")) for p in PARAGRAPHS.split(text) if p.strip()]

    def merge(base: bytes, ours: bytes, theirs: bytes) -> Merged:
        entries, mine, yours, conflicts = _three_way(split(base), split(ours), split(theirs))
        body = "\n\n".join(entries)
        text = f"{body}\n" if body else ""
        return Merged(
            content=text.encode("utf-8", errors="surrogateescape"),
            from_backup=mine,
            from_successor=yours,
            conflicts=conflicts,
        )

    return merge


def merge_accounts(label: str, *, id_label: str = "") -> Merge:
    """An account file of `name:...` lines (passwd, group, shadow, gshadow), keyed by name;
    with `id_label`, the third field is a uid or gid that must not go to two names, one the
    backup's and one the successor's."""

    def split(data: bytes) -> list[tuple[str, str]]:
        text = data.decode("utf-8", errors="surrogateescape")
        return [
            (f"{label} {line.split(':', 1)[0]}" if ":" in line else f"line {line}", line)
            for line in text.splitlines()
            if line.strip()
        ]

    def merge(base: bytes, ours: bytes, theirs: bytes) -> Merged:
        lines, mine, yours, conflicts = _three_way(split(base), split(ours), split(theirs))
        if id_label:
            conflicts += _id_collisions(split(ours), split(theirs), mine, yours, id_label)
        text = "".join(f"{line}\n" for line in lines)
        return Merged(
            content=text.encode("utf-8", errors="surrogateescape"),
            from_backup=mine,
            from_successor=yours,
            conflicts=conflicts,
        )

    return merge


def merge_log(base: bytes, ours: bytes, theirs: bytes) -> Merged:
    """A log both sides appended to: the successor's, then what the backup appended. A log
    either side rewrote (rotated, truncated) is a conflict."""
    if ours.startswith(base) and theirs.startswith(base):
        added = ours[len(base) :]
        return Merged(
            content=theirs + added,
            from_backup=("lines appended",) if added else (),
            from_successor=("lines appended",) if len(theirs) > len(base) else (),
        )
    conflict = EntryConflict(
        entry="log",
        reason="one side rewrote the log instead of appending to it",
        backup=f"{len(ours)} bytes",
        successor=f"{len(theirs)} bytes",
    )
    return Merged(content=theirs, conflicts=(conflict,))


def _three_way(
    base: Sequence[tuple[str, str]],
    ours: Sequence[tuple[str, str]],
    theirs: Sequence[tuple[str, str]],
) -> tuple[list[str], tuple[str, ...], tuple[str, ...], tuple[EntryConflict, ...]]:
    """Entries merged in the successor's order, then the backup's additions in its order."""
    b, o, t = dict(base), dict(ours), dict(theirs)
    order = list(dict.fromkeys([key for key, _ in theirs] + [key for key, _ in ours]))
    merged: list[str] = []
    mine: list[str] = []
    yours: list[str] = []
    conflicts: list[EntryConflict] = []
    for key in order:
        was, mine_now, yours_now = b.get(key), o.get(key), t.get(key)
        if mine_now == yours_now:
            value = mine_now
        elif mine_now == was:
            value = yours_now
            yours.append(key)
        elif yours_now == was:
            value = mine_now
            mine.append(key)
        else:
            conflicts.append(
                EntryConflict(
                    entry=key,
                    reason=_why(was, mine_now, yours_now),
                    backup=mine_now or "",
                    successor=yours_now or "",
                )
            )
            value = yours_now  # the successor's, in the content; a conflict is never written
        if value is not None:
            merged.append(value)
    return merged, tuple(mine), tuple(yours), tuple(conflicts)


def _why(was: str | None, ours: str | None, theirs: str | None) -> str:
    if was is None:
        return "both sides added it, differently"
    if ours is None:
        return "the backup removed it and the successor changed it"
    if theirs is None:
        return "the successor removed it and the backup changed it"
    return "both sides changed it, differently"


def _id_collisions(
    ours: Sequence[tuple[str, str]],
    theirs: Sequence[tuple[str, str]],
    mine: Sequence[str],
    yours: Sequence[str],
    id_label: str,
) -> tuple[EntryConflict, ...]:
    """A uid or gid that an entry the backup added or changed and another one the successor
    added or changed both hold."""
    by_id: dict[str, tuple[str, str]] = {}
    for key, line in theirs:
        number = _field(line, 2)
        if key in yours and number:
            by_id.setdefault(number, (key, line))
    found = []
    for key, line in ours:
        number = _field(line, 2)
        other = by_id.get(number) if key in mine and number else None
        if other is not None and other[0] != key:
            found.append(
                EntryConflict(
                    entry=f"{id_label} {number}",
                    reason=f"the backup's {key} and the successor's {other[0]} both have "
                    f"{id_label} {number}",
                    backup=line,
                    successor=other[1],
                )
            )
    return tuple(found)


def _field(line: str, index: int) -> str:
    fields = line.split(":")
    return fields[index] if len(fields) > index else ""


# Every database merged by entry (paths from the root) and how.
DATABASES: dict[str, Merge] = {
    "var/lib/dpkg/status": merge_stanzas(("Package", "Architecture"), "package"),
    "var/lib/apt/extended_states": merge_stanzas(("Package", "Architecture"), "package"),
    "var/cache/debconf/config.dat": merge_stanzas(("Name",), "question"),
    "var/cache/debconf/templates.dat": merge_stanzas(("Name",), "template"),
    "var/cache/debconf/passwords.dat": merge_stanzas(("Name",), "question"),
    "etc/passwd": merge_accounts("user", id_label="uid"),
    "etc/group": merge_accounts("group", id_label="gid"),
    "etc/shadow": merge_accounts("user"),
    "etc/gshadow": merge_accounts("group"),
}
# Text logs, and logs compressed as a stream (a concatenation of xz or gzip streams is one):
# appended to. Record files (lastlog, wtmp, btmp, faillog) are not: they are indexed by uid or
# written in fixed records, so they are compared as a whole.
LOGS = re.compile(r"var/log/.+\.log(?:\.xz|\.gz)?")

# Files the system writes again from the files it describes (ldconfig, fc-cache,
# gtk-update-icon-cache, apt-get update), and the backup copies tools keep of a database
# (`passwd-`, dpkg's `status-old`): the backup's copy is dropped, never laid over the
# successor's.
REGENERATED = re.compile(
    r"etc/ld\.so\.cache"
    r"|var/cache/ldconfig/aux-cache"
    r"|var/cache/fontconfig/.+"
    r"|usr/share/icons/[^/]+/icon-theme\.cache"
    r"|usr/lib/(?:[^/]+/)?gdk-pixbuf-2\.0/[^/]+/loaders\.cache"
    r"|var/cache/apt/(?:pkgcache|srcpkgcache)\.bin"
    r"|var/lib/apt/lists/.+"
    r"|var/cache/debconf/[^/]+-old"
    r"|var/lib/dpkg/[^/]+-old"
    r"|etc/(?:passwd|group|shadow|gshadow)-"
)


def merge_for(path: str) -> Merge | None:
    """How `path` is merged by entry, or None for a file compared as a whole."""
    found = DATABASES.get(path)
    if found is not None:
        return found
    return merge_log if LOGS.fullmatch(path) else None


def regenerated(path: str) -> bool:
    return REGENERATED.fullmatch(path) is not None
