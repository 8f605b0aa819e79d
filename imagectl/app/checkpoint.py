"""`imagectl checkpoint`: the next version as a one-layer copy of the newest one.

Docker refuses images deeper than 125 layers and every increment adds at least one, so a long
line needs to start again from a single layer now and then. The copy is the newest version's
files (BuildKit's tar export, with device nodes, hard links, setuid bits and xattrs) through
`docker import`, then, for the config import cannot set (SHELL, HEALTHCHECK, STOPSIGNAL,
ONBUILD), a metadata-only build step on the imported layer, which adds no layer. Files and the
whole config (but imagectl's labels, which are the checkpoint's own) are proven equal, and every
test of the line passes on the copy, before anything is tagged or recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import fields, replace

from imagectl.app.gate import built_owners, gate, prepare_suite
from imagectl.app.parents import ResolvedParent, locate_head
from imagectl.app.recording import Parent, record_version
from imagectl.app.scratch import scratch_recorded
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import PlanError
from imagectl.core.faults import pause_point
from imagectl.core.labels import (
    BASE_DIGEST,
    BASE_NAME,
    CREATED,
    EPOCH,
    LINE,
    LINE_VERSION,
    REVISION,
    revision_of,
    version_labels,
)
from imagectl.core.linestate import LineState, load_state
from imagectl.core.model import (
    BuildOptions,
    BuiltVersion,
    ImageLine,
    LockedVersion,
    RecordedTest,
    utc_now,
)
from imagectl.core.owners import owner_tag, scratch_repository
from imagectl.core.ports import Adapters, Git, Healthcheck, ImageConfig, ImageInfo, ImageStore, Say
from imagectl.core.positions import next_version
from imagectl.core.tags import taken_in_engine, taken_in_registry
from imagectl.core.trees import tree_differences


def import_changes(config: ImageConfig) -> list[str]:
    """The `docker import --change` list for the parts of `config` import can set (pure).

    WORKDIR goes here because BuildKit's WORKDIR adds an (empty) layer; ONBUILD does not,
    since the build step below starts FROM the imported image and would run its triggers.
    """
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
        f"LABEL {json.dumps(key)}={_quoted(value)}" for key, value in sorted(config.labels.items())
    ]
    changes += [f"EXPOSE {port}" for port in config.exposed_ports]
    changes += [f"VOLUME {json.dumps(volume)}" for volume in config.volumes]
    return changes


def config_instructions(config: ImageConfig) -> list[str]:
    """The Dockerfile instructions of the metadata-only build step on the imported layer, for
    what `docker import` cannot set: SHELL, HEALTHCHECK, STOPSIGNAL and ONBUILD (pure). None of
    them adds a layer."""
    instructions = []
    if config.shell:
        instructions.append(f"SHELL {json.dumps(list(config.shell))}")
    if config.healthcheck is not None:
        instructions.append(healthcheck_instruction(config.healthcheck))
    if config.stop_signal:
        instructions.append(f"STOPSIGNAL {config.stop_signal}")
    instructions += [f"ONBUILD {trigger}" for trigger in config.on_build]
    return instructions


def healthcheck_instruction(health: Healthcheck) -> str:
    """HEALTHCHECK with every timing the image has, in nanoseconds (exact, as Docker stores)."""
    kind, *args = health.test or ("",)
    if kind == "NONE":
        return "HEALTHCHECK NONE"
    if kind == "CMD-SHELL" and len(args) == 1 and "\n" not in args[0]:
        command = f"CMD {args[0]}"
    elif kind == "CMD" and args:
        command = f"CMD {json.dumps(args)}"
    else:
        raise PlanError(
            f"the image's HEALTHCHECK test {list(health.test)!r} cannot be written as a "
            "Dockerfile instruction; nothing was tagged or recorded.",
            hint="Set a plain HEALTHCHECK in a new increment, then checkpoint.",
        )
    timings = (
        ("interval", health.interval),
        ("timeout", health.timeout),
        ("start-period", health.start_period),
        ("start-interval", health.start_interval),
    )
    flags = [f"--{flag}={value}ns" for flag, value in timings if value]
    if health.retries:
        flags.append(f"--retries={health.retries}")
    return " ".join(["HEALTHCHECK", *flags, command])


def _env_change(entry: str) -> str:
    name, _, value = entry.partition("=")
    return f"ENV {name}={_quoted(value)}"


def _quoted(value: str) -> str:
    return json.dumps(value).replace("$", chr(92) + "$")


def config_differences(copy: ImageConfig, original: ImageConfig) -> list[str]:
    """The names of the config fields where `copy` differs from `original` (pure)."""
    return [
        item.name
        for item in fields(ImageConfig)
        if getattr(copy, item.name) != getattr(original, item.name)
    ]


def checkpoint_line(
    layout: RepositoryLayout,
    line: ImageLine,
    *,
    adapters: Adapters,
    options: BuildOptions,
    say: Say,
) -> BuiltVersion:
    images = adapters.images
    state = load_state(layout, line)
    refuse_withdrawn_head(state)
    parent = locate_head(state, images=images)
    head = state.lock.head
    assert head is not None  # locate_head found it
    version = next_version(state.lock)
    tag = line.tag_for(version)
    config = parent.info.config
    labels = _labels(
        line, head, parent, version=version, tag=tag, git=adapters.git, source=options.source
    )
    target = replace(config, labels={**config.labels, **labels})
    leftover = _leftover(tag, target, adapters=adapters)
    suite = prepare_suite(layout, line, built_owners(state, len(state.lock.versions)))

    def tested(image: str) -> tuple[RecordedTest, ...]:
        return gate(
            line, suite, version=version, image=image, images=images, jobs=options.test_jobs,
            say=say,
        )  # fmt: skip

    if leftover is not None:  # tagged by a checkpoint of this head that was killed after
        say(f"{line.name}: adopting {tag}, a checkpoint of v{head.version} never recorded")
        info, tests = _proven(
            parent.ref, tag, image_id=leftover, version=head.version, config=target,
            images=images, tested=tested,
        )  # fmt: skip
        image_id, size = info.image_id, info.size
    else:
        say(f"{line.name}: flattening v{head.version} ({head.layers} layers) into one layer")
        image_id, size, tests = _flattened(
            parent.ref, head.version, target, tag=tag, images=images, tested=tested,
            layout=layout,
        )  # fmt: skip
    recorded = _checkpoint_version(
        head, parent, version=version, tag=tag, image_id=image_id, size=size,
        engine=adapters.builder.engine_version,
    )  # fmt: skip
    recorded = replace(recorded, tests=tests)
    record_version(
        layout, state, recorded, parent=Parent(image_id=head.image_id, layers=None),
        images=images,
    )  # fmt: skip
    say(f"{line.name}: tagged {tag} ({image_id.removeprefix('sha256:')[:12]}, 1 layer)")
    return BuiltVersion(
        line=line.name, version=version, tag=tag, image_id=image_id, adopted=leftover is not None
    )


def _leftover(tag: str, target: ImageConfig, *, adapters: Adapters) -> str | None:
    """The image id under `tag` when it is this very checkpoint left unrecorded by a killed
    run (in the engine only, one layer, with exactly the labels this checkpoint sets: line,
    version, and the head it flattens as its base); None when the tag is free. Anything else
    under the tag is refused: a checkpoint never overwrites a tag."""
    made = "a checkpoint never overwrites a tag"
    remote = adapters.registry.lookup(tag)
    if remote is not None:
        raise taken_in_registry(tag, remote, made=made)
    local = adapters.images.inspect_image(tag)
    if local is None:
        return None
    own = {key: target.labels[key] for key in (LINE, LINE_VERSION, BASE_DIGEST, BASE_NAME)}
    if len(local.layers) != 1 or any(local.config.labels.get(k) != v for k, v in own.items()):
        raise taken_in_engine(tag, local.image_id, made=made)
    return local.image_id


def refuse_withdrawn_head(state: LineState) -> None:
    """A copy of a withdrawn version would be a new version resolve sends pods to."""
    head = state.lock.head
    if head is not None and head.withdrawn:
        raise PlanError(
            f"v{head.version} of {state.line.name} is withdrawn ({head.withdrawn_reason}): a "
            "checkpoint of it would be a copy of the broken image that resolve does not pass "
            "over.",
            hint=f"Build the fix first (imagectl build next {state.line.name}), then "
            "checkpoint; or take the withdrawal back (imagectl withdraw --undo). Nothing was "
            "built.",
        )


def _labels(
    line: ImageLine,
    head: LockedVersion,
    parent: ResolvedParent,
    *,
    version: int,
    tag: str,
    git: Git,
    source: str,
) -> dict[str, str]:
    """The checkpoint's own labels; its content is the flattened version's, so it keeps that
    version's revision and created (read from its labels, else from the lock and git)."""
    own = parent.info.config.labels
    revision = own.get(REVISION) if LINE in own else revision_of(head.commit)
    created = own.get(CREATED) if LINE in own else None
    if created is None:
        created = git.commit_time(revision) if revision else EPOCH
    return version_labels(
        line=line.name,
        version=version,
        tag=tag,
        increment="",
        revision=revision or "",
        created=created,
        source=source,
        base_name=parent.ref,
        base_digest=parent.digest,
    )


def _checkpoint_version(
    head: LockedVersion,
    parent: ResolvedParent,
    *,
    version: int,
    tag: str,
    image_id: str,
    size: int,
    engine: str,
) -> LockedVersion:
    return LockedVersion(
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


def _flattened(
    source: str,
    version: int,
    config: ImageConfig,
    *,
    tag: str,
    images: ImageStore,
    tested: Callable[[str], tuple[RecordedTest, ...]],
    layout: RepositoryLayout,
) -> tuple[str, int, tuple[RecordedTest, ...]]:
    """Import `source` as one layer, apply its config, prove files and config equal, run the
    tests, tag it; (image id, size, the tests that ran)."""
    # Named by its owner, so that the next command removes it if this process is killed.
    scratch = f"{scratch_repository(tag)}:{owner_tag(os.getpid())}"
    configured = f"{scratch}-config"
    instructions = config_instructions(config)  # refuses what cannot be written, first
    with scratch_recorded(layout, (scratch, configured)):
        try:
            image_id = images.import_rootfs(source, changes=import_changes(config), tag=scratch)
            return _tagged_copy(
                source, version, config, image_id=image_id, instructions=instructions,
                scratch=scratch, tag=tag, images=images, tested=tested,
            )  # fmt: skip
        finally:
            images.remove_image(configured)
            images.remove_image(scratch)


def _tagged_copy(
    source: str,
    version: int,
    config: ImageConfig,
    *,
    image_id: str,
    instructions: list[str],
    scratch: str,
    tag: str,
    images: ImageStore,
    tested: Callable[[str], tuple[RecordedTest, ...]],
) -> tuple[str, int, tuple[RecordedTest, ...]]:
    """Configure the imported `scratch`, prove it, tag it `tag`."""
    configured = f"{scratch}-config"
    copy = scratch
    if instructions:
        image_id = images.apply_config(scratch, instructions=instructions, tag=configured)
        copy = configured
    info, tests = _proven(
        source, copy, image_id=image_id, version=version, config=config, images=images,
        tested=tested,
    )  # fmt: skip
    images.tag(image_id, tag)
    pause_point("after-tag")  # tagged, nothing recorded: a rerun must adopt this tag
    return image_id, info.size, tests


def _proven(
    source: str,
    copy: str,
    *,
    image_id: str,
    version: int,
    config: ImageConfig,
    images: ImageStore,
    tested: Callable[[str], tuple[RecordedTest, ...]],
) -> tuple[ImageInfo, tuple[RecordedTest, ...]]:
    """The one-layer copy (`copy`, image `image_id`) has the files and config of `source` and
    passes the line's tests, or nothing is tagged or recorded; its facts and tests."""
    info = images.inspect_image(image_id)
    if info is None or len(info.layers) != 1:
        raise PlanError(f"the flattened image {image_id} does not have exactly one layer.")
    diff = tree_differences(images.file_tree(source), images.file_tree(copy))
    if not diff.empty:
        raise PlanError(
            f"the one-layer copy of v{version} differs from it (missing "
            f"{list(diff.missing[:3])}, extra {list(diff.extra[:3])}, different "
            f"{list(diff.different[:3])}); nothing was tagged or recorded.",
            hint="Report this; the line can keep building until its layer limit.",
        )
    lost = config_differences(info.config, config)
    if lost:
        raise PlanError(
            f"the one-layer copy of v{version} has another {', '.join(lost)} in its config; "
            "nothing was tagged or recorded.",
            hint="Report this; the line can keep building until its layer limit.",
        )
    tests = tested(image_id)  # raises when one fails: nothing is tagged
    return info, tests
