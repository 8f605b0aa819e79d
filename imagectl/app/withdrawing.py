"""`imagectl withdraw`: mark a built version withdrawn (or take that back) in its line's lock,
under the repository's lock so a build writing the same lockfile waits or is waited for. No
engine and no registry: the tag and image stay exactly as they are."""

from __future__ import annotations

from dataclasses import dataclass

from imagectl.app.locks import repository_lock
from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.core import lockfile
from imagectl.core.errors import ConfigError
from imagectl.core.model import LockedVersion, utc_now
from imagectl.core.resolver import Resolution, newest_on
from imagectl.core.withdrawals import taken_back, withdrawn


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawal:
    line: str
    version: LockedVersion  # as the lock records it now
    oldest: Resolution  # what the line's oldest version resolves to now
    is_head: bool  # the newest version with an image: the next build is built on it

    @property
    def warnings(self) -> tuple[str, ...]:
        if not (self.version.withdrawn and self.is_head):
            return ()
        return (
            f"v{self.version.version} is the head of {self.line}: `imagectl build next` builds "
            f"the next version on it, as always, so make that version the fix (or set "
            f'[withdraw] build_on = "kept" in the line file to build it on the newest kept '
            "version instead, which forks the chain)",
        )

    def to_json(self) -> dict[str, object]:
        version = self.version
        return {
            "line": self.line,
            "version": version.version,
            "tag": version.tag,
            "withdrawn": version.withdrawn,
            "reason": version.withdrawn_reason,
            "by": version.withdrawn_by,
            "at": version.withdrawn_at,
            "oldest_resolves_to": self.oldest.newest.version,
            "warnings": list(self.warnings),
        }


def withdraw(
    project: Project, name: str, number: int, *, reason: str, undo: bool, wait: float
) -> Withdrawal:
    """Withdraw version `number` of line `name` (`undo`: take the withdrawal back)."""
    line = project.line(name)
    with repository_lock(project.layout, wait=wait):
        lock = line_lock(project, line)  # read under the lock: a build may have just appended
        if undo:
            changed = taken_back(lock, number)
        else:
            changed = withdrawn(lock, number, reason=reason, by=_who(project), at=utc_now())
        lockfile.write_lock(project.layout.lock_path(line.name), changed)
    version = changed.versions[number - 1]
    head = changed.head
    oldest = newest_on(changed, changed.built_versions[0], query=changed.built_versions[0].tag)
    return Withdrawal(
        line=line.name,
        version=version,
        oldest=oldest,
        is_head=head is not None and head.version == number,
    )


def _who(project: Project) -> str:
    who = project.adapters.git.identity()
    if not who:
        raise ConfigError(
            "git has no user.name and user.email here, and a withdrawal records who made it.",
            hint='Set them (git config user.name "Your Name"; git config user.email '
            "you@example.org), then run the command again; nothing was recorded.",
        )
    return who
