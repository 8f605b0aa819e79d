"""`imagectl checkpoint`: the next version as a one-layer copy of the newest one.

Docker refuses images deeper than 125 layers and every increment adds at least one, so a long
line needs to start again from a single layer now and then. The copy keeps the file content and
the image config; both are proven equal before anything is tagged or recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from imagectl import lockfile
from imagectl.builder import BuiltVersion, locate_head, record_packages
from imagectl.config import RepositoryLayout
from imagectl.errors import PlanError, TagConflictError
from imagectl.linestate import load_state, write_reference
from imagectl.model import ImageLine, LockedVersion
from imagectl.ports import Engine, FileEntry, Registry

Say = Callable[[str], None]
# Config keys `docker import --change` can set, and how.
CARRIED = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "OnBuild",
)
NOT_CARRIED = ("StopSignal", "Healthcheck", "Shell")


def config_changes(config: Mapping[str, Any]) -> list[str]:
    """The `docker import --change` instructions that recreate `config` (pure)."""
    blocked = [key for key in NOT_CARRIED if config.get(key)]
    if blocked:
        raise PlanError(
            f"the image config sets {', '.join(blocked)}, which `docker import` cannot carry over.",
            hint="Checkpoints keep ENV, CMD, ENTRYPOINT, WORKDIR, USER, LABEL, EXPOSE, VOLUME "
            "and ONBUILD; re-apply the others in the next increment.",
        )
    # ENV values are quoted, and `$` escaped: the change parser would expand it.
    changes = [_env_change(entry) for entry in config.get("Env") or ()]
    if config.get("Entrypoint"):
        changes.append(f"ENTRYPOINT {json.dumps(config['Entrypoint'])}")
    if config.get("Cmd"):
        changes.append(f"CMD {json.dumps(config['Cmd'])}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    changes += [
        f"LABEL {json.dumps(key)}={json.dumps(value)}"
        for key, value in sorted((config.get("Labels") or {}).items())
    ]
    changes += [f"EXPOSE {port}" for port in sorted(config.get("ExposedPorts") or {})]
    changes += [f"VOLUME {json.dumps(volume)}" for volume in sorted(config.get("Volumes") or {})]
    changes += [f"ONBUILD {trigger}" for trigger in config.get("OnBuild") or ()]
    return changes


def _env_change(entry: str) -> str:
    name, _, value = entry.partition("=")
    return f"ENV {name}={json.dumps(value).replace('$', chr(92) + '$')}"


def carried_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config a checkpoint must keep, normalised for comparison."""
    return {key: config.get(key) or None for key in CARRIED}


def tree_differences(
    old: Mapping[str, FileEntry], new: Mapping[str, FileEntry], *, limit: int = 20
) -> tuple[list[str], list[str], list[str]]:
    """(missing from new, extra in new, different) paths, at most `limit` of each."""
    missing = sorted(set(old) - set(new))[:limit]
    extra = sorted(set(new) - set(old))[:limit]
    different = sorted(path for path in set(old) & set(new) if old[path] != new[path])[:limit]
    return missing, extra, different


def checkpoint_line(
    layout: RepositoryLayout, line: ImageLine, *, engine: Engine, registry: Registry, say: Say
) -> BuiltVersion:
    state = load_state(layout, line)
    parent = locate_head(state, engine=engine)
    head = state.lock.versions[-1]
    source = parent.ref
    config = parent.info.config
    changes = config_changes(config)
    version = len(state.lock.versions) + 1
    tag = line.tag_for(version)
    remote = registry.lookup(tag)
    if remote is not None or engine.inspect_image(tag) is not None:
        raise TagConflictError(
            f"the tag {tag} already exists; a checkpoint never overwrites a tag.",
            hint="Pull the lockfile that records it (git pull), then run again.",
        )
    say(f"{line.name}: flattening v{head.version} ({head.layers} layers) into one layer")
    scratch = f"imagectl-checkpoint/{line.name}:pid{os.getpid()}"
    image_id = engine.import_rootfs(source, changes=changes, tag=scratch)
    try:
        info = engine.inspect_image(image_id)
        if info is None or len(info.layers) != 1:
            raise PlanError(f"the flattened image {image_id} does not have exactly one layer.")
        missing, extra, different = tree_differences(
            engine.file_tree(source), engine.file_tree(scratch)
        )
        if missing or extra or different:
            raise PlanError(
                f"the one-layer copy of v{head.version} differs from it (missing "
                f"{missing[:3]}, extra {extra[:3]}, different {different[:3]}); nothing was "
                "tagged or recorded.",
                hint="Report this; the line can keep building until its layer limit.",
            )
        if carried_config(info.config) != carried_config(config):
            raise PlanError(
                f"the one-layer copy of v{head.version} lost part of its config; "
                "nothing was tagged or recorded."
            )
        engine.tag(image_id, tag)
    finally:
        engine.remove_image(scratch)
    record_packages(state, version=version, image=image_id, parent=head.image_id, engine=engine)
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
        size=info.size,
        builder="checkpoint",
        built_at=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        commit="",
        checkpoint=True,
    )
    new_lock = state.lock.with_version(recorded)
    lockfile.write_lock(state.lock_path, new_lock)
    write_reference(layout, replace(state, lock=new_lock))
    say(f"{line.name}: tagged {tag} ({image_id.removeprefix('sha256:')[:12]}, 1 layer)")
    return BuiltVersion(line=line.name, version=version, tag=tag, image_id=image_id, adopted=False)
