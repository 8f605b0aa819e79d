"""The checks every built image passes before it is tagged: a new gate is one more entry.

Each check looks at the candidate (the image just built, its locked parent, what the registry
had under its tag) and raises to stop; nothing is tagged or recorded then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imagectl.app.parents import ResolvedParent
from imagectl.core.errors import PlanError
from imagectl.core.model import BuildStep
from imagectl.core.notices import warn
from imagectl.core.ports import ImageInfo, ImageStore, RemoteImage, Say
from imagectl.core.tags import adopt_or_refuse

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
        warn(
            say,
            step.line,
            f"v{step.version} has {layers} of at most {LAYER_LIMIT} layers; run "
            f"`imagectl checkpoint {step.line}` soon.",
        )


def check_tag_free(candidate: Candidate, images: ImageStore, _say: Say) -> None:
    """The tag may only name this very image (a rerun after a crash), nowhere another one."""
    step, info = candidate.step, candidate.info
    local = images.inspect_image(step.tag)
    adopt_or_refuse(
        step.tag,
        ours=info.image_id,
        engine=local.image_id if local is not None else None,
        remote=candidate.remote,
        made=f"the image just built is {info.image_id}",
    )


# Run in order on every built image before it is tagged; a new gate is one more entry.
CHECKS: tuple[Check, ...] = (check_built_on_parent, check_layer_budget, check_tag_free)
