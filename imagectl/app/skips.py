"""Burned tags: a version whose tag someone else's image already holds is recorded as skipped,
and a digest no lock knows is traced to the tag that was overwritten with it."""

from __future__ import annotations

from collections.abc import Sequence

from imagectl.core.errors import ConfigError, PlanError
from imagectl.core.linestate import LineState
from imagectl.core.model import Lock, LockedVersion, utc_now
from imagectl.core.ports import ImageStore, Registry
from imagectl.core.positions import next_version
from imagectl.core.references import digest_of
from imagectl.core.tags import Holder, registry_holder


def burned_version(
    state: LineState, version: int, *, reason: str, registry: Registry, images: ImageStore
) -> LockedVersion:
    """The skipped version to record, after proving its tag really holds a foreign image."""
    line, lock = state.line, state.lock
    expected = next_version(lock)
    if version != expected:
        raise ConfigError(
            f"only the next version of {line.name}, v{expected}, can be skipped (v{version} "
            f"{'is recorded already' if version < expected else 'is not next'}).",
            hint=f"See `imagectl history {line.name}`.",
        )
    if not reason.strip():
        raise ConfigError(
            "--reason is empty.", hint="Say why the tag is burned; the lock keeps it for years."
        )
    tag = line.tag_for(version)
    remote = registry.lookup(tag)
    local = images.inspect_image(tag)
    held = registry_holder(remote, engine=local.image_id if local is not None else None)
    if remote is None:
        raise PlanError(
            f"the registry does not hold {tag}: the tag is free, nothing to skip.",
            hint=f"Build it: imagectl build next {line.name}.",
        )
    if held is Holder.OURS:
        raise PlanError(
            f"the registry's {tag} is the image this engine built ({remote.config_digest}); it is "
            "not burned.",
            hint=f"`imagectl build next {line.name}` adopts it.",
        )
    return LockedVersion(
        version=version,
        tag=tag,
        increment="",
        summary=f"skipped: {reason.strip()}",
        increment_hash="",
        dockerfile_hash="",
        parent="",
        parent_digest="",
        image_id="",
        layers=0,
        size=0,
        builder="skip",
        built_at=utc_now(),
        commit="",
        skipped=True,
        reason=reason.strip(),
        foreign_digest=remote.digest,
    )


def unknown_digest(ref: str, locks: Sequence[Lock], *, registry: Registry) -> PlanError:
    """Why no lock knows `repo@digest`: which published tag, if any, names that digest now."""
    digest = digest_of(ref)
    for lock in locks:
        for version in lock.built_versions:
            if version.digest and registry.exists(version.tag) == digest:
                return PlanError(
                    f"{ref} is not what any lock records, but the registry's {version.tag} "
                    f"names it now: that tag was overwritten (the lock records "
                    f"{version.digest} for v{version.version}).",
                    hint="A pod on this digest did not run an image this line built. Run "
                    f"`imagectl audit {lock.line}`, and resolve {version.tag} to find the "
                    "version the line's pods should start on.",
                )
    return PlanError(
        f"no image line built {ref!r}, and no published tag of its line names that digest now.",
        hint="Give repo:vN, repo@sha256:<registry digest> or an image id of a version that a "
        "lockfile in lock/ records (see `imagectl history LINE`).",
    )
