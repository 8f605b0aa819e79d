"""Withdrawn versions (pure): broken in a way their tests missed, kept exactly as they are (tag,
image, lock entry) but passed over by `resolve`, as PyPI's yank (PEP 592) keeps a release and
resolvers skip it. Here: the checks of a withdrawal and of taking it back, and which versions
were built on which, the chain a restored pod may move along."""

from __future__ import annotations

from dataclasses import replace

from imagectl.core.errors import ConfigError
from imagectl.core.model import Lock, LockedVersion
from imagectl.core.references import without_digest


def withdrawn(lock: Lock, number: int, *, reason: str, by: str, at: str) -> Lock:
    """`lock` with version `number` withdrawn, after checking that it can be."""
    version = _built(lock, number)
    if version.withdrawn:
        raise ConfigError(
            f"v{number} of {lock.line} is withdrawn already (by {version.withdrawn_by} at "
            f"{version.withdrawn_at}: {version.withdrawn_reason}).",
            hint=f"To change the reason, take it back first: imagectl withdraw {lock.line} "
            f"{number} --undo.",
        )
    reason = " ".join(reason.split())
    if not reason:
        raise ConfigError(
            "--reason is empty.",
            hint="Say what is broken in it; the lock keeps the reason, and resolve, history "
            "and plan show it.",
        )
    marked = replace(
        version, withdrawn=True, withdrawn_reason=reason, withdrawn_by=by, withdrawn_at=at
    )
    return _with(lock, marked)


def taken_back(lock: Lock, number: int) -> Lock:
    """`lock` with the withdrawal of version `number` taken back (`withdraw --undo`)."""
    version = _built(lock, number)
    if not version.withdrawn:
        raise ConfigError(
            f"v{number} of {lock.line} is not withdrawn: there is nothing to take back.",
            hint=f"See `imagectl history {lock.line}`.",
        )
    kept = replace(version, withdrawn=False, withdrawn_reason="", withdrawn_by="", withdrawn_at="")
    return _with(lock, kept)


def _built(lock: Lock, number: int) -> LockedVersion:
    if not 1 <= number <= len(lock.versions):
        built = f"v1-v{len(lock.versions)}" if lock.versions else "none yet"
        raise ConfigError(
            f"{lock.line} has no v{number} (versions recorded: {built}).",
            hint=f"See `imagectl history {lock.line}`.",
        )
    version = lock.versions[number - 1]
    if version.skipped:
        raise ConfigError(
            f"v{number} of {lock.line} was skipped (its tag was burned): it has no image, so "
            "no pod can land on it and there is nothing to withdraw.",
            hint=f"See `imagectl history {lock.line}`.",
        )
    return version


def _with(lock: Lock, changed: LockedVersion) -> Lock:
    versions = tuple(changed if v.version == changed.version else v for v in lock.versions)
    return replace(lock, versions=versions)


def newest_kept(lock: Lock) -> LockedVersion | None:
    """The newest version with an image that is not withdrawn."""
    return next((v for v in reversed(lock.built_versions) if not v.withdrawn), None)


def parent_number(lock: Lock, version: LockedVersion) -> int | None:
    """The version `version` was built on; None for one built on the base."""
    return parents(lock).get(version.version)


def parents(lock: Lock) -> dict[int, int | None]:
    """Each version with an image -> the version it was built on (None: the base). Read from
    the tag its FROM named; a parent the lock names otherwise counts as the version with an
    image just before it (the chain as it is without a fork)."""
    found: dict[int, int | None] = {}
    tags: dict[str, int] = {}
    previous: int | None = None
    base = without_digest(lock.base)
    for version in lock.built_versions:
        wanted = without_digest(version.parent)
        found[version.version] = tags.get(wanted, None if wanted == base else previous)
        tags[version.tag] = previous = version.version
    return found


def chain_from(lock: Lock, start: LockedVersion) -> tuple[LockedVersion, ...]:
    """`start` and every version built on it, directly or through others, oldest first: the
    versions a pod restored from a backup taken on `start` may start on (a fork's other
    branch lacks `start`'s layers)."""
    built_on = parents(lock)
    on_chain = {start.version}
    chain = [start]
    for version in lock.built_versions:
        if version.version > start.version and built_on[version.version] in on_chain:
            on_chain.add(version.version)
            chain.append(version)
    return tuple(chain)
