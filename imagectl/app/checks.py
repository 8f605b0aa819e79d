"""The checks every built image passes before it is tagged: a new gate is one more entry.

Each check looks at the candidate (the image just built, its locked parent, what the registry
had under its tag) and raises to stop; nothing is tagged or recorded then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagectl.app.parents import ResolvedParent
from imagectl.core.errors import PlanError, TagConflictError
from imagectl.core.model import BuildStep
from imagectl.core.ports import ImageInfo, ImageStore, RemoteImage, Say

LAYER_LIMIT = 125  # moby's layer store: maxLayerDepth
LAYER_WARNING = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A version built but not yet tagged or recorded: what the checks look at."""

    step: BuildStep
    parent: ResolvedParent
    info: ImageInfo
    remote: RemoteImage | None  # what the registry had under the tag before the build


Check = Callable[[Candidate, ImageStore, Say], None]


def check_parent_depth(step: BuildStep, parent: ResolvedParent) -> None:
    if len(parent.info.layers) >= LAYER_LIMIT:
        raise PlanError(
            f"{parent.ref} already has {len(parent.info.layers)} layers, Docker's limit; no "
            "increment can go on top of it.",
            hint=f"Run `imagectl checkpoint {step.line}` to add a one-layer copy of it first.",
        )


def check_built_on_parent(candidate: Candidate, _images: ImageStore, _say: Say) -> None:
    expected = candidate.parent.info.layers
    if candidate.info.layers[: len(expected)] != expected:
        raise PlanError(
            f"v{candidate.step.version} ({candidate.info.image_id}) was not built on its locked "
            f"parent {candidate.parent.ref}: its layers do not start with the parent's layers. "
            "Nothing was tagged or recorded.",
            hint="Check that the parent tag in the engine is the locked image "
            "(docker image inspect), then build again.",
        )


def check_layer_budget(candidate: Candidate, _images: ImageStore, say: Say) -> None:
    step, layers = candidate.step, len(candidate.info.layers)
    if layers > LAYER_LIMIT:
        raise PlanError(
            f"v{step.version} would have {layers} layers; Docker refuses images deeper than "
            f"{LAYER_LIMIT} (`max depth exceeded`). Nothing was tagged or recorded.",
            hint=f"Run `imagectl checkpoint {step.line}` to add a one-layer copy of the newest "
            "version, then build again on top of it.",
        )
    if layers >= LAYER_WARNING:
        say(
            f"{step.line}: warning: v{step.version} has {layers} of at most {LAYER_LIMIT} "
            f"layers; run `imagectl checkpoint {step.line}` soon."
        )


def check_tag_free(candidate: Candidate, images: ImageStore, _say: Say) -> None:
    """The tag may only name this very image (a rerun after a crash), nowhere another one."""
    step, info, remote = candidate.step, candidate.info, candidate.remote
    local = images.inspect_image(step.tag)
    if local is not None and local.image_id != info.image_id:
        raise taken_in_engine(
            step.tag, local.image_id, made=f"the image just built is {info.image_id}"
        )
    if remote is not None and remote.config_digest != info.image_id:
        raise taken_in_registry(step.tag, remote, made=f"the image just built is {info.image_id}")


# The two refusals of a tag that names another image, shared by every command that tags
# (build next, checkpoint): where the tag is decides what the user should do about it.
def taken_in_engine(tag: str, image_id: str, *, made: str) -> TagConflictError:
    return TagConflictError(
        f"the tag {tag} already exists in the engine as {image_id}; {made}. Nothing was "
        "re-tagged and the lock is unchanged.",
        hint="imagectl never overwrites a tag. If it was left by an interrupted run, remove it "
        f"(docker rmi {tag}) and run again; otherwise find out who made it.",
    )


def taken_in_registry(tag: str, remote: RemoteImage, *, made: str) -> TagConflictError:
    return TagConflictError(
        f"the tag {tag} already exists in the registry as {remote.digest} (image "
        f"{remote.config_digest}); {made}. Nothing was tagged and the lock is unchanged.",
        hint="imagectl never overwrites a tag. Someone published this version: pull the "
        "lockfile that records it (git pull) and run again.",
    )


# Run in order on every built image before it is tagged; a new gate is one more entry.
CHECKS: tuple[Check, ...] = (check_built_on_parent, check_layer_budget, check_tag_free)
