"""Carrying out `build next`: each planned step as a pipeline of named stages.

request (the Dockerfile with its images pinned, the context, secrets, labels, the rendered
tests) -> build -> checks (each a function run before the tag) -> the test gate (every test up to
this increment's, on the new image) -> tag -> record. A failing check or test leaves nothing
tagged or recorded.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from imagectl.app.alongside import alongside
from imagectl.app.archiving import (
    capturing,
    keep_record,
    prove_inputs,
    read_record,
    require_complete,
)
from imagectl.app.checks import CHECKS, Candidate, check_parent_depth
from imagectl.app.gate import built_owners, gate, prepare_suite
from imagectl.app.parents import (
    ResolvedParent,
    pin_images,
    resolve_parent,
    warn_if_base_moved,
    warn_if_parent_tag_moved,
)
from imagectl.app.recording import Parent, measure_packages, record_version
from imagectl.app.results.testing import PreparedTest
from imagectl.core import lockfile
from imagectl.core.archive import ArchivedImage, InputArchive
from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import BuildError, ImagectlError, PlanError
from imagectl.core.faults import pause_point
from imagectl.core.increments import ignore_tests
from imagectl.core.labels import EPOCH, revision_of, version_labels
from imagectl.core.linestate import LineState
from imagectl.core.model import (
    BuildOptions,
    BuildStep,
    BuiltVersion,
    Increment,
    LockedVersion,
    RecordedTest,
    utc_now,
)
from imagectl.core.notices import warn
from imagectl.core.planner import plan_line
from imagectl.core.ports import Adapters, Git, ImageBuilder, ImageStore, RemoteImage, Say
from imagectl.core.recipe import ComposedDockerfile, increment_line
from imagectl.core.references import repository_of
from imagectl.core.rendering import RenderedStep, render_step
from imagectl.core.tags import Holder, adopt_or_refuse, burned, registry_holder


def build_line(
    layout: RepositoryLayout,
    state: LineState,
    *,
    all_versions: bool,
    adapters: Adapters,
    say: Say,
    output: Say,
    options: BuildOptions,
    built: list[BuiltVersion] | None = None,
    rendered: Mapping[int, RenderedStep] | None = None,
) -> tuple[BuiltVersion, ...]:
    """Carry out the line's plan: the next step, or every pending one with `all_versions`.
    Each version is appended to `built` as it is recorded, so a later failure keeps them.
    `rendered`: the pending increments as already rendered by version (the pre-build check),
    so each is rendered once per build."""
    plan = plan_line(state.line, state.lock, state.increments, all_versions=all_versions)
    for name in plan.deleted_tests:
        warn(say, state.line.name, f"{name} ran on a built version and no longer exists.")
    built = [] if built is None else built
    for step in plan.steps:
        result, state = build_step(
            layout, state, step, adapters=adapters, say=say, output=output, options=options,
            rendered=(rendered or {}).get(step.version), first=step is plan.steps[0],
        )  # fmt: skip
        built.append(result)
    return tuple(built)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What one build is asked to do: the rendered increment, its images pinned, and the
    commit the increment comes from."""

    rendered: RenderedStep
    pins: dict[str, str]
    commit: str
    suite: tuple[PreparedTest, ...]  # every test up to this increment's, rendered
    labels: dict[str, str]  # set with --label, never written into the increment


def build_step(
    layout: RepositoryLayout,
    state: LineState,
    step: BuildStep,
    *,
    adapters: Adapters,
    say: Say,
    output: Say,
    options: BuildOptions,
    rendered: RenderedStep | None = None,
    first: bool = True,
) -> tuple[BuiltVersion, LineState]:
    """Build one planned version; returns it and the line's state with it recorded. For the
    `first` step of a line, whether its base and parent tags moved is asked while it builds."""
    name = state.line.name
    parent = resolve_parent(
        state, step, images=adapters.images, registry=adapters.registry, say=say
    )
    check_parent_depth(step, parent)
    request = _request(
        layout, state, step, parent, adapters=adapters, say=say, options=options, rendered=rendered
    )
    registry = RegistryAnswers(state, step, adapters=adapters, say=say, first=first)
    registry.ask_tag()
    say(f"{name}: building v{step.version} from {step.increment.path.as_posix()} FROM {parent.ref}")
    _warn_if_head_withdrawn(state, step, parent, say)
    archived = _adoptable_archive(layout, state, step, adapters.images)
    if archived is not None:  # tagged by a run that stopped before the lock knew it
        image_id = archived.image_id
        say(f"{name}: {step.tag} and its proved input archive are here already; adopting them")
        registry.warn_of_moved_tags()
    else:
        with capturing(
            layout, state.line, images=adapters.images, inputs=adapters.inputs
        ) as capture:

            def while_building() -> None:
                capture.serve()  # first: the build's downloads wait for it
                registry.warn_of_moved_tags()

            image_id = alongside(
                lambda: _build(
                    layout, state, step, request, adapters=adapters, output=output,
                    proxy=capture.url,
                ),
                while_building,
            )  # fmt: skip
    info = adapters.images.inspect_image(image_id)
    if info is None:
        raise PlanError(f"the image {image_id} just built has vanished from the engine.")
    candidate = Candidate(step=step, parent=parent, info=info, remote=registry.remote)
    for check in CHECKS:
        check(candidate, adapters.images, say)
    tests = gate(
        state.line, request.suite, version=step.version, image=image_id,
        images=adapters.images, jobs=options.test_jobs, say=say,
    )  # fmt: skip
    built_on = Parent(image_id=parent.info.image_id, layers=len(parent.info.layers))
    measured = None
    if archived is None and capture.captured is not None:
        measured = measure_packages(
            state, version=step.version, image=image_id, parent=built_on, images=adapters.images
        )
        archived = prove_inputs(
            capture.captured, line=state.line, version=step.version, image_id=image_id,
            diff=measured.diff, pinned=_pinned_images(state, step, parent, request),
            context=layout.root / step.increment.path if step.increment.is_folder else None,
            layout=layout, images=adapters.images, inputs=adapters.inputs,
        )  # fmt: skip
        require_complete(state.line, archived)
        keep_record(layout, archived)
        _say_archive(say, name, archived)
    adopted = _tag(candidate, adapters)
    version = _locked_version(
        candidate, request, adopted=adopted, builder=adapters.builder, tests=tests
    )
    if archived is not None:
        version = replace(
            version, archive_state=archived.state, archive_files=len(archived.files),
            archive_missing=len(archived.missing),
        )  # fmt: skip
    try:
        new_lock = record_version(
            layout, state, version, images=adapters.images, parent=built_on,
            base=_pinned_base(parent) if step.parent_is_base else None, measured=measured,
        )  # fmt: skip
    except ImagectlError:
        # Recording failed cleanly before the lock had v(n) (the package reader, the lock
        # write): the tag this run just made goes too, so no later run meets a tag the lock
        # never knew (a crash here still leaves it, adopted on a rerun). Failing after the lock
        # write (the reference), the version is recorded and its tag stays.
        if not adopted and not _recorded(state, step.version):
            with contextlib.suppress(ImagectlError):  # the first error is the one to report
                adapters.images.remove_image(step.tag)
        raise
    short, done = image_id.removeprefix("sha256:")[:12], "adopted" if adopted else "tagged"
    say(f"{name}: {done} {step.tag} ({short}, {len(info.layers)} layers)")
    built = BuiltVersion(
        line=name, version=step.version, tag=step.tag, image_id=image_id, adopted=adopted
    )
    return built, replace(state, lock=new_lock)


def _warn_if_head_withdrawn(
    state: LineState, step: BuildStep, parent: ResolvedParent, say: Say
) -> None:
    head = state.lock.head
    if head is not None and head.withdrawn and not step.parent_is_base:
        on = "it" if parent.digest in (head.digest, head.image_id) else "the newest kept version"
        warn(
            say,
            state.line.name,
            f"v{head.version} is withdrawn ({head.withdrawn_reason}); v{step.version} is "
            f"built on {on}",
        )


class RegistryAnswers:
    """What the registry says before a version is tagged: what its tag names there, asked
    before the build (a tag another image holds stops it before anything is built), and for a
    line's first step whether its base and parent tags moved (warnings, asked while the build
    runs: they change nothing)."""

    def __init__(
        self, state: LineState, step: BuildStep, *, adapters: Adapters, say: Say, first: bool
    ) -> None:
        self.state, self.step, self.adapters, self.say = state, step, adapters, say
        self.first = first
        self.remote: RemoteImage | None = None

    def ask_tag(self) -> None:
        step, registry = self.step, self.adapters.registry
        self.remote = registry.lookup(step.tag)  # also proves the registry answers, first
        if self.remote is not None:
            local = self.adapters.images.inspect_image(step.tag)
            engine = local.image_id if local is not None else None
            if registry_holder(self.remote, engine=engine) is Holder.THEIRS:
                raise burned(step.tag, self.remote, line=step.line, version=step.version)

    def warn_of_moved_tags(self) -> None:
        if self.first:
            warn_if_base_moved(self.state, registry=self.adapters.registry, say=self.say)
            warn_if_parent_tag_moved(self.state, registry=self.adapters.registry, say=self.say)


def _request(
    layout: RepositoryLayout,
    state: LineState,
    step: BuildStep,
    parent: ResolvedParent,
    *,
    adapters: Adapters,
    say: Say,
    options: BuildOptions,
    rendered: RenderedStep | None = None,
) -> Request:
    if rendered is None or rendered.parent != parent.ref:
        # Not rendered before the build, or on another parent than planned (v1 once the base's
        # digest is resolved): render it on the parent it is built on.
        rendered = render_step(
            layout, state.line, step.increment, version=step.version, parent=parent.ref
        )
    pins = pin_images(rendered, images=adapters.images, registry=adapters.registry)
    commit = adapters.git.commit_of(step.increment.path)
    if commit == "uncommitted":
        warn(
            say,
            state.line.name,
            f"{step.increment.path.as_posix()} is not committed; the lock records commit = "
            f'"uncommitted" for v{step.version}. Commit increments before building them, so '
            "that the lock names the commit they were built from.",
        )
    # Rendered before the build: a typo in a test template stops it before anything is built.
    owners = [
        *built_owners(state, len(state.lock.versions)),
        (step.increment, step.version, parent.ref),
    ]
    suite = prepare_suite(layout, state.line, owners)
    return Request(
        rendered=rendered, pins=pins, commit=commit, suite=suite,
        labels=_labels(state, step, parent, commit, git=adapters.git, source=options.source),
    )  # fmt: skip


def _labels(
    state: LineState, step: BuildStep, parent: ResolvedParent, commit: str, *, git: Git, source: str
) -> dict[str, str]:
    """The version's labels: the same on a rerun, so that BuildKit gives the same image."""
    revision = revision_of(commit)
    return version_labels(
        line=state.line.name,
        version=step.version,
        tag=step.tag,
        increment=step.increment.path.as_posix(),
        revision=revision,
        created=git.commit_time(revision) if revision else EPOCH,
        source=source,
        base_name=parent.ref,
        base_digest=parent.digest,
    )


def _locked_version(
    candidate: Candidate,
    request: Request,
    *,
    adopted: bool,
    builder: ImageBuilder,
    tests: tuple[RecordedTest, ...],
) -> LockedVersion:
    step, info, rendered, remote = (
        candidate.step,
        candidate.info,
        request.rendered,
        candidate.remote,
    )
    return LockedVersion(
        version=step.version,
        tag=step.tag,
        increment=step.increment.path.as_posix(),
        summary=step.increment.summary,
        increment_hash=step.increment.source_hash,
        dockerfile_hash=rendered.dockerfile_hash,
        instructions_hash=rendered.instructions_hash,
        context_hash=step.increment.context_hash,
        inputs_hash=rendered.inputs,
        includes=rendered.includes,
        parent=candidate.parent.ref,
        parent_digest=candidate.parent.digest,
        images=tuple(request.pins[image] for image in rendered.recipe.images),
        image_id=info.image_id,
        layers=len(info.layers),
        size=info.size,
        builder=builder.builder,
        engine=builder.engine_version,
        built_at=utc_now(),
        commit=request.commit,
        # A tag already in the registry with this very image counts as published.
        digest=remote.digest if remote is not None and adopted else "",
        tests=tests,
    )


def _build(
    layout: RepositoryLayout,
    state: LineState,
    step: BuildStep,
    request: Request,
    *,
    adapters: Adapters,
    output: Say,
    proxy: str = "",
) -> str:
    """The request (Dockerfile with pinned images, context, secrets), built; the image id.
    With a capture `proxy`, without BuildKit's cache: a cached step downloads nothing."""
    rendered = request.rendered
    built = rendered.pinned(request.pins)
    with build_context(layout, step.increment, built.text) as (dockerfile, context):
        try:
            return adapters.builder.build(
                dockerfile=dockerfile, context=context, on_output=output,
                secrets=state.line.secrets, labels=request.labels, proxy=proxy,
                no_cache=bool(proxy),
            )  # fmt: skip
        except BuildError as exc:
            raise _in_template(exc, rendered, built) from exc


@contextmanager
def build_context(
    layout: RepositoryLayout, increment: Increment, dockerfile_text: str
) -> Iterator[tuple[Path, Path]]:
    """The Dockerfile in a temporary folder, and the build context: the increment's folder
    (copied without its tests, when it has any), or an empty one for a file increment (nothing
    of the repository is sent)."""
    with tempfile.TemporaryDirectory(prefix="imagectl-build-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(dockerfile_text, encoding="utf-8")
        folder = layout.root / increment.path
        if increment.is_folder and not increment.tests:
            context = folder
        elif increment.is_folder:
            context = Path(tmp) / "context"
            shutil.copytree(folder, context, symlinks=True, ignore=ignore_tests([folder]))
        else:
            context = Path(tmp) / "context"
            context.mkdir()
        yield dockerfile, context


def _in_template(exc: BuildError, rendered: RenderedStep, built: ComposedDockerfile) -> BuildError:
    """The build error, naming the template line of the failing instruction when BuildKit said
    which Dockerfile line failed."""
    line = increment_line(built, exc.dockerfile_line) if exc.dockerfile_line else None
    if line is None:
        return exc
    return BuildError(
        f"{rendered.where(line)}: {exc.message}",
        hint=exc.hint,
        path=rendered.template,
        details=exc.details,
        command=exc.command,
        exit_code=exc.exit_code,
        dockerfile_line=exc.dockerfile_line,
    )


def _tag(candidate: Candidate, adapters: Adapters) -> bool:
    """Tag the candidate; True when the tag named it already (adopted after a crash)."""
    step, info = candidate.step, candidate.info
    local = adapters.images.inspect_image(step.tag)
    adopted = adopt_or_refuse(  # asked again right before tagging: the tag may have been taken
        step.tag,
        ours=info.image_id,
        engine=local.image_id if local is not None else None,
        remote=candidate.remote,
        made=f"the image just built is {info.image_id}",
    )
    if local is None:
        adapters.images.tag(info.image_id, step.tag)
    pause_point("after-tag")  # tagged, nothing recorded: a rerun must adopt this tag
    return adopted


def _adoptable_archive(
    layout: RepositoryLayout, state: LineState, step: BuildStep, images: ImageStore
) -> InputArchive | None:
    """The proved archive of the image the version's tag names here, when a run stopped
    between tagging and recording it (a capture build is not repeatable: no cache)."""
    if not state.line.archive:
        return None
    archived = read_record(layout, state.line.name, step.version)
    if archived is None:
        return None
    local = images.inspect_image(step.tag)
    return archived if local is not None and local.image_id == archived.image_id else None


def _pinned_images(
    state: LineState, step: BuildStep, parent: ResolvedParent, request: Request
) -> tuple[ArchivedImage, ...]:
    """The images the version started from that are not the line's own: the base (for v1)
    and every helper image, pinned, to be copied into the archive's repository."""
    pinned = [
        ArchivedImage(ref=request.pins[i], role="helper") for i in request.rendered.recipe.images
    ]
    if step.parent_is_base and parent.digest != parent.info.image_id:
        base = f"{repository_of(state.line.base)}@{parent.digest}"
        pinned.insert(0, ArchivedImage(ref=base, role="base"))
    return tuple(pinned)


def _say_archive(say: Say, name: str, archived: InputArchive) -> None:
    files, size = len(archived.files), archived.size / 1e6
    what = f"{files} files, {size:.1f} MB"
    if archived.complete:
        say(f"{name}: input archive of v{archived.version}: complete ({what})")
        return
    warn(
        say, name,
        f"input archive of v{archived.version} is incomplete ({what}; "
        f"{len(archived.missing)} missing: {archived.missing[0]})",
    )  # fmt: skip


def _recorded(state: LineState, version: int) -> bool:
    """Whether the lock on disk records `version` (unreadable: assume it does, keep the tag)."""
    line = state.line
    try:
        lock = lockfile.read_lock(
            state.lock_path, line=line.name, repository=line.repository, base=line.base
        )
    except ImagectlError:
        return True
    return len(lock.versions) >= version


def _pinned_base(parent: ResolvedParent) -> tuple[str, str]:
    """(registry digest, image id) of the base, as the lock pins it."""
    digest = parent.digest if parent.digest != parent.info.image_id else ""
    return digest, parent.info.image_id
