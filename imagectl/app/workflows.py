"""What each command does, over one Project: the core wired to the adapters; nothing prints."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl.app.builder import build_line
from imagectl.app.gate import built_owners, prepare_suite, run_suite
from imagectl.app.locks import locked_and_swept
from imagectl.app.parents import locate_version
from imagectl.app.project import Project
from imagectl.app.recording import manifest_of, record_skip
from imagectl.app.results.build import BuildResult, ReferenceStatus, VersionDiff
from imagectl.app.results.testing import TestReport
from imagectl.app.skips import burned_version
from imagectl.core import lockfile, sidecar
from imagectl.core.config import check_secret_sources
from imagectl.core.errors import ConfigError, ImagectlError
from imagectl.core.increments import summarize
from imagectl.core.labels import source_url
from imagectl.core.linerenders import (
    reference_text,
    render_dockerfile,
    render_pending,
    render_shared,
    write_reference,
)
from imagectl.core.linestate import LineState, load_state
from imagectl.core.lockfile import write_atomic
from imagectl.core.model import (
    BuildOptions,
    BuiltVersion,
    ImageLine,
    Lock,
    LockedVersion,
)
from imagectl.core.packages import PackageDiff, diff_manifests
from imagectl.core.planner import deleted_tests
from imagectl.core.ports import Say
from imagectl.core.rendering import template_variables
from imagectl.core.templates import render_template

if TYPE_CHECKING:
    from imagectl.app.results.verify import VerifyReport
    from imagectl.core.backport import BackportPlan


def build_next(
    project: Project,
    names: Sequence[str],
    *,
    all_versions: bool,
    wait: float,
    say: Say,
    output: Say,
    jobs: int = 1,
) -> BuildResult:
    """Build the next version (or all pending ones) of each selected line."""
    layout, adapters = project.layout, project.adapters
    lines = _some_lines(project, names)
    with locked_and_swept(project, wait=wait, say=say):
        # Validate every selected line, and render every pending increment, before building any:
        # a typo in the last increment fails before the first version is built.
        states = {line.name: load_state(layout, line) for line in lines}
        rendered = {name: render_pending(layout, state) for name, state in states.items()}
        for name, state in states.items():
            if rendered[name]:
                check_secret_sources(state.line)
        lockfile.ensure_writable(layout.lock_dir)
        adapters.builder.check()
        say(adapters.builder.describe())
        options = build_options(project)
        # What each line recorded, kept when a later version of that line fails.
        done: dict[str, list[BuiltVersion]] = {line.name: [] for line in lines}

        def build_one(line: ImageLine) -> tuple[BuiltVersion, ...]:
            return build_line(
                layout,
                states[line.name],
                all_versions=all_versions,
                adapters=adapters,
                say=say,
                output=_prefixed(output, line.name, jobs),
                options=options,
                built=done[line.name],
                rendered={step.version: step for step in rendered[line.name]},
            )

        outcomes = _each_line(build_one, lines, jobs=jobs)
    built = [b for line in lines for b in done[line.name]]
    failures = tuple((n, o) for n, o in outcomes.items() if isinstance(o, ImagectlError))
    for name, exc in failures:
        exc.done = (built_so_far(name, done[name], states[name].lock), *exc.done)
    return BuildResult(
        lines=tuple(line.name for line in lines), built=tuple(built), failures=failures
    )


def built_so_far(line: str, built: list[BuiltVersion], lock: Lock) -> str:
    """What a build of `line` had done when it failed, as the error's hint says it."""
    failed = (built[-1].version if built else len(lock.versions)) + 1
    if not built:
        return f"no version of {line} was built by this command; v{failed} was not recorded"
    versions = ", ".join(f"v{b.version}" for b in built)
    were = "were" if len(built) > 1 else "was"
    return f"{versions} of {line} {were} built and recorded; v{failed} was not recorded"


def _some_lines(project: Project, names: Sequence[str]) -> tuple[ImageLine, ...]:
    lines = project.select(names)
    if not lines:
        raise ConfigError(
            "this repository has no image lines yet.",
            hint="Add images/<line>.toml and increments/<line>/0001-*.Dockerfile.j2.",
            path=project.layout.images_dir,
        )
    return lines


def build_options(project: Project) -> BuildOptions:
    """What every build of this command shares: the source label (imagectl.toml, else the git
    remote without credentials) and how many tests run at once."""
    source = project.settings.label_source or source_url(project.adapters.git.remote_url())
    return BuildOptions(source=source, test_jobs=project.settings.test_jobs)


def _each_line(
    work: Callable[[ImageLine], tuple[BuiltVersion, ...]],
    lines: tuple[ImageLine, ...],
    *,
    jobs: int,
) -> dict[str, tuple[BuiltVersion, ...] | ImagectlError]:
    """Lines are independent: run them side by side; one line's failure stops only that line."""

    def captured(line: ImageLine) -> tuple[BuiltVersion, ...] | ImagectlError:
        try:
            return work(line)
        except ImagectlError as exc:
            return exc

    if jobs <= 1:
        return {line.name: captured(line) for line in lines}
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 (--jobs 2 and more)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {line.name: pool.submit(captured, line) for line in lines}
        return {name: future.result() for name, future in futures.items()}


def _prefixed(output: Say, name: str, jobs: int) -> Say:
    if jobs <= 1:
        return output
    return lambda text: output(f"[{name}] {text}")


def squash_lines(
    project: Project, names: Sequence[str], *, check: bool
) -> tuple[ReferenceStatus, ...]:
    """Write (or with `check`, only compare) each line's reference Dockerfile."""
    layout = project.layout
    results = []
    for line in project.select(names):
        state = load_state(layout, line)
        path = layout.reference_path(line.name)
        if check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            changed = current != reference_text(layout, state)
        else:
            changed = write_reference(layout, state)
        results.append(
            ReferenceStatus(
                line=line.name, path=path.relative_to(layout.root), changed=changed, checked=check
            )
        )
    return tuple(results)


def skip(
    project: Project, name: str, version: int, *, reason: str, wait: float, say: Say
) -> LockedVersion:
    """Record `version` of line `name` as skipped: its tag is burned by someone else's image."""
    line = project.line(name)
    with locked_and_swept(project, wait=wait, say=say):
        state = load_state(project.layout, line)
        skipped = burned_version(
            state, version, reason=reason, registry=project.adapters.registry,
            images=project.adapters.images,
        )  # fmt: skip
        record_skip(state, skipped)
    return skipped


def backport(project: Project, fix: Path, *, pattern: str, dry_run: bool) -> BackportPlan:
    from imagectl.core.backport import (  # noqa: PLC0415 (not on build's path)
        plan_backport,
        shared_name,
        shared_tests,
    )

    """Add a new increment including the shared `fix` to every selected line, with a test
    including each test of the fix.

    The fix (and its tests) are rendered with each selected line's vars first; when that fails
    for any line, nothing is written (a dry run reports those lines instead)."""
    layout = project.layout
    name = shared_name(layout.root, layout.shared_dir, fix)
    summary = summarize((layout.increments_dir / name).read_text(encoding="utf-8"))
    tests = shared_tests(name, _shared_files(layout.increments_dir))
    states = {line.name: load_state(layout, line) for line in project.lines}
    plan = plan_backport(
        fix=name,
        summary=summary,
        pattern=pattern,
        lines={line: state.increments for line, state in states.items()},
        templates={
            line: tuple(
                (layout.root / i.template).read_text(encoding="utf-8") for i in s.increments
            )
            for line, s in states.items()
        },
        tests=tests,
    )
    if not plan.steps and not plan.already:
        raise ConfigError(
            f"no image line matches {pattern!r}.",
            hint=f"Known lines: {', '.join(sorted(states)) or 'none'}.",
        )
    failures = tuple(
        (step.line, failure)
        for step in plan.steps
        if (failure := _fix_failure(project, states[step.line], name, tests)) is not None
    )
    plan = replace(
        plan,
        failures=failures,
        dry_run=dry_run,
        warnings=withdrawn_heads(states[step.line] for step in plan.steps),
    )
    if failures and not dry_run:
        raise failures[0][1]
    if not dry_run:
        _write_backport(layout.root, plan)
    return plan


def withdrawn_heads(states: Iterable[LineState]) -> tuple[str, ...]:
    """A warning for each line whose newest version is withdrawn: the fix goes on top of it."""
    warnings = []
    for state in states:
        head = state.lock.head
        if head is not None and head.withdrawn:
            on = "the newest kept version" if state.line.build_on_kept else f"v{head.version}"
            warnings.append(
                f"{state.line.name}: its head v{head.version} is withdrawn "
                f"({head.withdrawn_reason}); the fix will be built on {on}"
            )
    return tuple(warnings)


def _shared_files(increments_dir: Path) -> set[str]:
    """Every file under increments/_shared/, named as templates include it."""
    shared = increments_dir / "_shared"
    return {p.relative_to(increments_dir).as_posix() for p in shared.rglob("*") if p.is_file()}


def _write_backport(root: Path, plan: BackportPlan) -> None:
    files = [(step.path, step.text) for step in plan.steps]
    files += [test for step in plan.steps for test in step.tests]
    for path, _ in files:
        if (root / path).exists():
            raise ConfigError("already exists.", path=str(path))
    for path, text in files:
        write_atomic(root / path, text)


def _fix_failure(
    project: Project, state: LineState, fix: str, tests: tuple[str, ...]
) -> ImagectlError | None:
    """Why the shared fix (or one of its tests) cannot become the line's next increment, or
    None when it can."""
    try:
        step = render_shared(project.layout, state, fix)
        variables = template_variables(state.line, version=step.version, parent=step.parent)
        increments_dir = project.layout.increments_dir.resolve()
        for test in tests:
            render_template(increments_dir, increments_dir / test, variables)
    except ImagectlError as exc:
        return exc
    return None


def render_version(project: Project, name: str, version: int | None) -> str:
    """The exact Dockerfile of a built version (as built, images pinned) or a pending one."""
    return render_dockerfile(
        project.layout, load_state(project.layout, project.line(name)), version
    )


def diff_versions(project: Project, name: str, old: int, new: int) -> VersionDiff:
    """Packages added, removed and changed from version `old` to `new`, and what came between."""
    line = project.line(name)
    from imagectl.app.lookups import line_lock  # noqa: PLC0415 (not on build's path)

    lock = line_lock(project, line)
    count = len(lock.versions)
    for version in (old, new):
        if not 0 <= version <= count:
            raise ConfigError(
                f"{line.name} has no v{version} (it has v1 to v{count}; v0 is the base).",
                hint=f"See `imagectl history {line.name}`.",
            )
        if version and lock.versions[version - 1].skipped:
            raise ConfigError(
                f"v{version} of {line.name} was skipped (its tag was burned); it has no image.",
                hint=f"Compare v{version - 1} or v{version + 1}.",
            )
    path = sidecar.packages_path(project.layout.lock_path(line.name))
    record = sidecar.read_packages(path)
    if record.complete(max(old, new)):
        packages = record.diff(old, new)
    else:
        # Versions built before imagectl recorded packages: read both images, if still here.
        packages = _diff_images(project, _image_of(lock, old), _image_of(lock, new), path)
    low, high = sorted((old, new))
    between = tuple(v for v in lock.versions if low < v.version <= high)
    return VersionDiff(line=line.name, old=old, new=new, packages=packages, between=between)


def _image_of(lock: Lock, version: int) -> str:
    return lock.versions[version - 1].image_id if version else lock.base_image_id


def _diff_images(project: Project, old: str, new: str, path: Path) -> PackageDiff:
    images = project.adapters.images
    if any(not image or images.inspect_image(image) is None for image in (old, new)):
        raise ConfigError(
            "no package manifest is recorded for these versions, and their images are not in "
            "the engine to read them from.",
            hint="Pull the two versions, or diff versions built since imagectl records packages.",
            path=path.relative_to(project.root),
        )
    return diff_manifests(manifest_of(old, images=images), manifest_of(new, images=images))


def checkpoint(project: Project, name: str, *, wait: float, say: Say) -> BuiltVersion:
    """Add a one-layer copy of the newest version of `name` as its next version."""
    from imagectl.app.checkpoint import checkpoint_line  # noqa: PLC0415

    adapters = project.adapters
    with locked_and_swept(project, wait=wait, say=say):
        adapters.builder.check()
        say(adapters.builder.describe())
        return checkpoint_line(
            project.layout, project.line(name), adapters=adapters,
            options=build_options(project), say=say,
        )  # fmt: skip


def verify(
    project: Project, name: str, *, say: Say, output: Say, offline: bool = False
) -> VerifyReport:
    """Rebuild the reference from scratch under a throwaway tag and compare with the newest;
    `offline`: rebuild increment by increment from the input archives instead."""
    from imagectl.app.verifier import verify_line  # noqa: PLC0415

    line = project.line(name)
    check_secret_sources(line)  # the rebuild uses the line's build secrets too
    project.adapters.builder.check()
    say(project.adapters.builder.describe())
    if not offline:
        return verify_line(project, line, say=say, output=output)
    from imagectl.app.offline import rebuild_offline  # noqa: PLC0415

    def rebuild(state: LineState) -> str:
        return rebuild_offline(project, state, upto=None, say=say, output=output)

    return verify_line(project, line, say=say, output=output, rebuild=rebuild)


def rebuild(project: Project, name: str, version: int, *, say: Say, output: Say) -> str:
    """`rebuild --offline`: the version rebuilt from its archives into an untagged image."""
    from imagectl.app.offline import rebuild_offline  # noqa: PLC0415

    line = project.line(name)
    check_secret_sources(line)
    project.adapters.builder.check()
    say(project.adapters.builder.describe())
    state = load_state(project.layout, line)
    return rebuild_offline(project, state, upto=version, say=say, output=output)


def test_version(project: Project, name: str, version: int | None) -> TestReport:
    """Run every test up to a built version (default: the newest) on its image, as they are on
    disk now; the lock is not changed (it records what ran when a version was built)."""
    layout, adapters = project.layout, project.adapters
    state = load_state(layout, project.line(name))
    lock = state.lock
    head = lock.head
    wanted = version if version is not None else (head.version if head else 0)
    if not 1 <= wanted <= len(lock.versions) or lock.versions[wanted - 1].skipped:
        built = f"v1 to v{len(lock.versions)}" if lock.versions else "no version yet"
        raise ConfigError(
            f"{name} has no built v{wanted} (it has {built}).",
            hint=f"See `imagectl history {name}`; tests run on built versions.",
        )
    recorded = lock.versions[wanted - 1]
    adapters.builder.check()
    image = locate_version(state, recorded, images=adapters.images)
    suite = prepare_suite(layout, state.line, built_owners(state, wanted))
    outcomes = run_suite(
        suite, image=image, images=adapters.images, timeout=state.line.test_timeout,
        jobs=project.settings.test_jobs,
    )  # fmt: skip
    gone = deleted_tests(replace(lock, versions=lock.versions[:wanted]), state.increments)
    return TestReport(
        line=name, version=wanted, tag=recorded.tag, image_id=image, outcomes=outcomes,
        deleted=gone,
    )  # fmt: skip
