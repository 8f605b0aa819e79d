"""`imagectl withdraw`: mark a built version withdrawn (or take that back) in its line's lock,
under the repository's lock so a build writing the same lockfile waits or is waited for. No
engine and no registry: the tag and image stay exactly as they are."""

from __future__ import annotations

from imagectl.app.locks import repository_lock
from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.results.lookup import Withdrawal
from imagectl.core import lockfile
from imagectl.core.errors import ConfigError
from imagectl.core.model import utc_now
from imagectl.core.resolver import newest_on
from imagectl.core.withdrawals import taken_back, withdrawn


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
