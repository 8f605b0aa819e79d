"""Who holds a tag: one home for "never overwrite a tag, adopt our own".

Every command that tags or pushes (`build next`, `checkpoint`, `publish`, `skip`) and the build
that names its recorded parent by tag ask the same question of what the engine and the registry
name under a tag. The answer is decided here from what they said, and so is the refusal that
follows from it: where the other image is decides what the user should do about it.
"""

from __future__ import annotations

import enum

from imagectl.core.errors import TagConflictError
from imagectl.core.ports import RemoteImage


class Holder(enum.Enum):
    FREE = "free"  # nothing under the tag
    OURS = "ours"  # this very image: a rerun after a crash adopts it
    THEIRS = "theirs"  # another image: never overwritten


def holder(named: str | None, *, ours: str) -> Holder:
    """Who holds a tag that names image `named` (None: nothing) when ours is image `ours`.

    An engine's image id and a registry's config digest are the same value for one image."""
    if named is None:
        return Holder.FREE
    return Holder.OURS if named == ours else Holder.THEIRS


def registry_holder(remote: RemoteImage | None, *, engine: str | None) -> Holder:
    """Who holds a registry tag that no lock records yet: ours only when this engine's tag
    names the same image (our own push, its recording lost to a crash); else it is burned."""
    if remote is None:
        return Holder.FREE
    return Holder.OURS if engine == remote.config_digest else Holder.THEIRS


def adopt_or_refuse(
    tag: str, *, ours: str, engine: str | None, remote: RemoteImage | None, made: str
) -> bool:
    """Before tagging image `ours` as `tag`: True when a side names it already (adopted),
    False when both are free; another image on either side is refused."""
    if holder(engine, ours=ours) is Holder.THEIRS:
        assert engine is not None  # THEIRS names an image
        raise taken_in_engine(tag, engine, made=made)
    if remote is not None and holder(remote.config_digest, ours=ours) is Holder.THEIRS:
        raise taken_in_registry(tag, remote, made=made)
    return engine is not None or remote is not None


def taken_in_engine(tag: str, image_id: str, *, made: str) -> TagConflictError:
    """A new tag that the engine holds as another image (a leftover of an interrupted run)."""
    return TagConflictError(
        f"the tag {tag} already exists in the engine as {image_id}; {made}. Nothing was "
        "re-tagged and the lock is unchanged.",
        hint="imagectl never overwrites a tag. If it was left by an interrupted run, remove it "
        f"(docker rmi {tag}) and run again; otherwise find out who made it.",
    )


def taken_in_registry(tag: str, remote: RemoteImage, *, made: str) -> TagConflictError:
    """A new tag that the registry holds as another image (someone published this version)."""
    return TagConflictError(
        f"the tag {tag} already exists in the registry as {remote.digest} (image "
        f"{remote.config_digest}); {made}. Nothing was tagged and the lock is unchanged.",
        hint="imagectl never overwrites a tag. Someone published this version: pull the "
        "lockfile that records it (git pull) and run again.",
    )


def burned(tag: str, remote: RemoteImage, *, line: str, version: int) -> TagConflictError:
    """Before a build: the registry holds the next version's tag as an image this engine did
    not make, so either the lock is behind or someone else's image burned the tag."""
    return TagConflictError(
        f"the registry already holds {tag} as {remote.digest} (image "
        f"{remote.config_digest}), which this lock does not record; nothing was built.",
        hint="If a colleague published it, pull the lockfile that records it (git pull). If "
        "someone else's image burned the tag, pass over it: `imagectl skip "
        f"{line} {version} --reason '...'` records v{version} as skipped and "
        f"builds v{version + 1} next.",
    )


def published_over(
    tag: str, remote: RemoteImage, *, recorded: str, version: int
) -> TagConflictError:
    """Publishing a recorded version whose registry tag names another image."""
    return TagConflictError(
        f"the registry already has {tag} as {remote.digest} (image {remote.config_digest}), "
        f"but the lock records image {recorded} for v{version}. No tag was changed, nothing "
        "more is pushed for this line, and its lock is unchanged.",
        hint="imagectl never overwrites a tag. Find out who published that image; if this "
        "repository's lock is behind, pull it (git pull) and run again.",
    )


def retagged(
    tag: str, named: str, *, recorded: str, version: int, unchanged: str, path: str = ""
) -> TagConflictError:
    """A recorded version's local tag that now names another image: someone re-tagged it."""
    return TagConflictError(
        f"the local tag {tag} names {named}, but the lock records {recorded} for "
        f"v{version}; {unchanged}.",
        hint=f"Someone re-tagged it; restore it with `docker tag {recorded} {tag}` after "
        "checking what the other image is.",
        path=path or None,
    )
