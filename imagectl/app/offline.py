"""Rebuilding a line's versions from their input archives alone: `verify --offline` and
`rebuild --offline`.

Increment by increment, each version built again with --no-cache on the version it was built
on (rebuilt the same way), through a replay proxy that serves only that version's archive:
what apt fetched then is what it gets now, byte for byte, and a request for anything else is
answered 404 and reported. The base and helper images come from the engine or, when it lacks
them, from the archive's repository, where `publish` copied them by digest. Nothing of the
archive is written into an image: the proxy is predefined build arguments, not in its history.

What the rebuild tells apt: the signatures and `Valid-Until` of the archived indexes were
checked when they were captured, and the archive's files are served only when their content
hash matches, so apt is told not to expire them (`Acquire::Check-Valid-Until`) and to accept a
signature by a key that has expired since; the setting is a bind mount on each RUN, never a
file of the image.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from imagectl.app.archives import stored_archive
from imagectl.app.archiving import read_record, stored_body
from imagectl.app.builder import build_context
from imagectl.app.project import Project
from imagectl.core.archive import (
    InputArchive,
    archive_repository,
)
from imagectl.core.errors import ArchiveError, PlanError
from imagectl.core.linestate import LineState
from imagectl.core.model import LockedVersion
from imagectl.core.notices import warn
from imagectl.core.offline import offline_dockerfile, replayed_files
from imagectl.core.ports import Say
from imagectl.core.references import pinned, repository_of
from imagectl.core.rendering import render_step

OFFLINE_CONTEXT = "imagectl-offline"  # the named build context holding apt's offline settings


def rebuild_offline(
    project: Project, state: LineState, *, upto: int | None, say: Say, output: Say
) -> str:
    """Version `upto` (default: the newest) rebuilt from the archives of it and of every
    version it was built on; the image id (untagged)."""
    line = state.line
    target = _target(state, upto)
    chain = _chain(state, target)
    images, builder = project.adapters.images, project.adapters.builder
    host = images.capture_address()
    if host is None:
        raise ArchiveError(
            "an offline rebuild serves the archive from this host, and the engine runs on "
            "another one, where its builds cannot reach it.",
            hint="Run it against the engine on this machine (unset DOCKER_HOST, or choose the "
            "local docker context).",
        )
    made: list[str] = []
    parents: dict[int, str] = {}
    image_id = ""
    try:
        with tempfile.TemporaryDirectory(prefix="imagectl-offline-") as tmp:
            for version in chain:
                increment = state.increments[_increment_index(state, version)]
                parent = parents.get(_parent_version(state, version) or 0) or _base(project, state)
                archived, fetched = _fetched(project, state, version, Path(tmp))
                files = replayed_files(fetched)
                if not archived.complete:
                    warn(
                        say, line.name,
                        f"the archive of v{version.version} is incomplete "
                        f"({archived.missing[0]}); the rebuild fails where it needs what is "
                        "missing",
                    )  # fmt: skip
                rendered = render_step(
                    project.layout, line, increment, version=version.version, parent=parent
                )
                pins = _pins(project, state, rendered.recipe.images, version)
                text = offline_dockerfile(rendered.pinned(pins).text, context=OFFLINE_CONTEXT)
                say(
                    f"{line.name}: rebuilding v{version.version} offline on {parent} "
                    f"({len(fetched)} archived files)"
                )
                with (
                    build_context(project.layout, increment, text) as (dockerfile, context),
                    project.adapters.inputs.replay(host, files) as replay,
                ):
                    settings = _offline_settings(Path(tmp), replay.url)
                    image_id = builder.build(
                        dockerfile=dockerfile, context=context, on_output=output,
                        secrets=line.secrets, no_cache=True, proxy=replay.url,
                        contexts={OFFLINE_CONTEXT: settings},
                    )  # fmt: skip
                    unserved = replay.missing()
                if unserved:
                    warn(
                        say, line.name,
                        f"v{version.version} asked for {len(unserved)} URL(s) its archive does "
                        f"not have, answered 404: {unserved[0].url}",
                    )  # fmt: skip
                if version is not chain[-1]:  # the next one is built FROM it, by this name
                    tag = f"imagectl-offline/{line.name}:v{version.version}-{uuid.uuid4().hex[:8]}"
                    images.tag(image_id, tag)
                    made.append(tag)
                    parents[version.version] = tag
    finally:
        for tag in made:
            images.remove_image(tag)  # the chain's own steps; the last one was never tagged
    return image_id


def _target(state: LineState, upto: int | None) -> LockedVersion:
    built = state.lock.increment_versions
    if not built:
        raise PlanError(
            f"{state.line.name} has no version built from an increment.",
            hint=f"Build one first: imagectl build next {state.line.name}.",
        )
    if upto is None:
        return built[-1]
    found = next((v for v in built if v.version == upto), None)
    if found is None:
        raise PlanError(
            f"v{upto} of {state.line.name} is not a version built from an increment.",
            hint=f"See `imagectl history {state.line.name}`.",
        )
    return found


def _chain(state: LineState, target: LockedVersion) -> tuple[LockedVersion, ...]:
    """`target` and the versions it was built on, oldest first (following each recorded
    parent, so a fork past a withdrawn version is followed as it was built)."""
    chain = [target]
    while (parent := _parent_version(state, chain[-1])) is not None:
        found = next(v for v in state.lock.versions if v.version == parent)
        chain.append(found)
    return tuple(v for v in reversed(chain) if not v.checkpoint)


def _parent_version(state: LineState, version: LockedVersion) -> int | None:
    """The number of the version `version` was built on; None for the base."""
    for earlier in reversed(state.lock.versions[: version.version - 1]):
        if earlier.skipped:
            continue
        if version.parent_digest in (earlier.image_id, earlier.digest):
            return earlier.version
    return None


def _increment_index(state: LineState, version: LockedVersion) -> int:
    return state.lock.increment_versions.index(version)


def _base(project: Project, state: LineState) -> str:
    """The base pinned by digest, in the engine (pulled from the archive's copy if need be)."""
    lock = state.lock
    if not lock.base_digest:
        return lock.base_image_id
    ref = pinned(repository_of(lock.base), lock.base_digest)
    return _local_or_copy(project, state, ref)


def _local_or_copy(project: Project, state: LineState, ref: str) -> str:
    images = project.adapters.images
    if images.inspect_image(ref) is not None:
        return ref
    copy = pinned(archive_repository(state.line.repository), ref.rpartition("@")[2])
    images.pull(copy)
    return copy


def _pins(
    project: Project, state: LineState, names: tuple[str, ...], version: LockedVersion
) -> dict[str, str]:
    """The helper images as the version pinned them, from the engine or the archive's copy."""
    return {
        name: _local_or_copy(project, state, ref)
        for name, ref in zip(names, version.images, strict=True)
    }


def _fetched(
    project: Project, state: LineState, version: LockedVersion, tmp: Path
) -> tuple[InputArchive, dict[str, Path]]:
    """The version's archive and its files by URL: from the registry once published (each
    layer streamed and digest-checked), else from the record and files kept here."""
    line = state.line
    if not version.archive_state:
        raise ArchiveError(
            f"{line.name} v{version.version} has no input archive (built before imagectl kept "
            "them, or with [archive] enabled = false), so it cannot be rebuilt offline.",
            hint="Only versions built with an archive rebuild offline; `imagectl verify` "
            "rebuilds from the network.",
        )
    if not version.archive:
        local = read_record(project.layout, line.name, version.version)
        if local is None:
            raise ArchiveError(
                f"the input archive of {line.name} v{version.version} is neither published "
                "nor kept on this machine.",
                hint="Publish it from the machine that built it.",
            )
        return local, {f.url: stored_body(project.layout, f) for f in local.files if _served(f.url)}
    registry = project.adapters.registry
    ref = pinned(archive_repository(line.repository), version.archive)
    archived, layers = stored_archive(registry, line, version)
    folder = tmp / f"v{version.version}"
    folder.mkdir()
    for layer in layers:
        path = folder / layer.digest.removeprefix("sha256:")
        with registry.open_blob(ref, layer) as blob, path.open("wb") as out:
            while chunk := blob.read(1 << 20):
                out.write(chunk)
    return archived, {f.url: folder / f.sha256 for f in archived.files if _served(f.url)}


def _served(url: str) -> bool:
    """Downloads are served by URL; the increment's own files come with its folder."""
    return not url.startswith("context:")


def _offline_settings(tmp: Path, proxy: str) -> Path:
    """A folder with the apt settings each RUN of an offline rebuild mounts."""
    folder = Path(tempfile.mkdtemp(dir=tmp, prefix="settings-"))
    (folder / "apt.conf").write_text(APT_OFFLINE.format(proxy=proxy), encoding="utf-8")
    return folder


# The archive's indexes were verified (signature, Valid-Until) when captured, and the replay
# serves only those bytes: an index past its Valid-Until, or signed by a key that has expired
# since, is still the one that was proved. apt checks every hash of the chain all the same.
APT_OFFLINE = """\
// imagectl rebuild --offline: the archived indexes were verified when captured.
Acquire::Check-Valid-Until "false";
Acquire::AllowInsecureRepositories "true";
APT::Get::AllowUnauthenticated "true";
Acquire::http::Proxy "{proxy}";
"""
