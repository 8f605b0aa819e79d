"""`imagectl checkpoint`: the next version as a one-layer copy of the newest one.

Docker refuses images deeper than 125 layers and every increment adds at least one, so a long
line needs to start again from a single layer now and then. The copy keeps the file content and
the image config; both are proven equal before anything is tagged or recorded.
"""

from __future__ import annotations

import json
import os

from imagectl.config import RepositoryLayout
from imagectl.errors import PlanError, TagConflictError
from imagectl.linestate import load_state
from imagectl.model import BuiltVersion, ImageLine, LockedVersion, utc_now
from imagectl.parents import locate_head
from imagectl.ports import ImageConfig, ImageStore, Registry, Say
from imagectl.recording import record_version
from imagectl.trees import tree_differences


def config_changes(config: ImageConfig) -> list[str]:
    """The `docker import --change` instructions that recreate `config` (pure)."""
    blocked = [
        name
        for name, value in (
            ("StopSignal", config.stop_signal),
            ("Healthcheck", config.healthcheck),
            ("Shell", config.shell),
        )
        if value
    ]
    if blocked:
        raise PlanError(
            f"the image config sets {', '.join(blocked)}, which `docker import` cannot carry over.",
            hint="Checkpoints keep ENV, CMD, ENTRYPOINT, WORKDIR, USER, LABEL, EXPOSE, VOLUME "
            "and ONBUILD; re-apply the others in the next increment.",
        )
    # ENV values are quoted, and `$` escaped: the change parser would expand it.
    changes = [_env_change(entry) for entry in config.env]
    if config.entrypoint:
        changes.append(f"ENTRYPOINT {json.dumps(list(config.entrypoint))}")
    if config.cmd:
        changes.append(f"CMD {json.dumps(list(config.cmd))}")
    if config.working_dir:
        changes.append(f"WORKDIR {config.working_dir}")
    if config.user:
        changes.append(f"USER {config.user}")
    changes += [
        f"LABEL {json.dumps(key)}={json.dumps(value)}"
        for key, value in sorted(config.labels.items())
    ]
    changes += [f"EXPOSE {port}" for port in config.exposed_ports]
    changes += [f"VOLUME {json.dumps(volume)}" for volume in config.volumes]
    changes += [f"ONBUILD {trigger}" for trigger in config.on_build]
    return changes


def _env_change(entry: str) -> str:
    name, _, value = entry.partition("=")
    return f"ENV {name}={json.dumps(value).replace('$', chr(92) + '$')}"


def carried_config(config: ImageConfig) -> ImageConfig:
    """The part of a config a checkpoint must keep, for comparison."""
    return ImageConfig(
        env=config.env,
        cmd=config.cmd,
        entrypoint=config.entrypoint,
        working_dir=config.working_dir,
        user=config.user,
        labels=dict(config.labels),
        exposed_ports=config.exposed_ports,
        volumes=config.volumes,
        on_build=config.on_build,
    )


def checkpoint_line(
    layout: RepositoryLayout,
    line: ImageLine,
    *,
    images: ImageStore,
    registry: Registry,
    say: Say,
    engine: str = "",
) -> BuiltVersion:
    state = load_state(layout, line)
    parent = locate_head(state, images=images)
    head = state.lock.head
    assert head is not None  # locate_head found it
    changes = config_changes(parent.info.config)
    version = len(state.lock.versions) + 1
    tag = line.tag_for(version)
    if registry.lookup(tag) is not None or images.inspect_image(tag) is not None:
        raise TagConflictError(
            f"the tag {tag} already exists; a checkpoint never overwrites a tag.",
            hint="Pull the lockfile that records it (git pull), then run again.",
        )
    say(f"{line.name}: flattening v{head.version} ({head.layers} layers) into one layer")
    image_id, size = _flattened(
        parent.ref, head.version, changes, parent.info.config, tag=tag, images=images
    )
    recorded = LockedVersion(
        version=version,
        tag=tag,
        increment="",
        summary=f"checkpoint: v{head.version} flattened into one layer",
        increment_hash="",
        dockerfile_hash="",
        parent=parent.ref,
        parent_digest=parent.digest,
        image_id=image_id,
        layers=1,
        size=size,
        builder="checkpoint",
        engine=engine,
        built_at=utc_now(),
        commit="",
        checkpoint=True,
    )
    record_version(layout, state, recorded, parent_image=head.image_id, images=images)
    say(f"{line.name}: tagged {tag} ({image_id.removeprefix('sha256:')[:12]}, 1 layer)")
    return BuiltVersion(line=line.name, version=version, tag=tag, image_id=image_id, adopted=False)


def _flattened(
    source: str,
    version: int,
    changes: list[str],
    config: ImageConfig,
    *,
    tag: str,
    images: ImageStore,
) -> tuple[str, int]:
    """Import `source` as one layer, prove files and config equal, tag it; (image id, size)."""
    scratch = f"imagectl-checkpoint/{tag.rpartition('/')[2].replace(':', '-')}:pid{os.getpid()}"
    image_id = images.import_rootfs(source, changes=changes, tag=scratch)
    try:
        info = images.inspect_image(image_id)
        if info is None or len(info.layers) != 1:
            raise PlanError(f"the flattened image {image_id} does not have exactly one layer.")
        diff = tree_differences(images.file_tree(source), images.file_tree(scratch))
        if not diff.empty:
            raise PlanError(
                f"the one-layer copy of v{version} differs from it (missing "
                f"{list(diff.missing[:3])}, extra {list(diff.extra[:3])}, different "
                f"{list(diff.different[:3])}); nothing was tagged or recorded.",
                hint="Report this; the line can keep building until its layer limit.",
            )
        if carried_config(info.config) != carried_config(config):
            raise PlanError(
                f"the one-layer copy of v{version} lost part of its config; "
                "nothing was tagged or recorded."
            )
        images.tag(image_id, tag)
    finally:
        images.remove_image(scratch)
    return image_id, info.size
