"""What each command does, wired from the core and the adapters; nothing here prints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl import lockfile
from imagectl.backport import BackportPlan, plan_backport, shared_name
from imagectl.builder import BuiltVersion, build_line, repository_lock
from imagectl.config import (
    RepositoryLayout,
    find_repository,
    load_lines,
    repository_of,
    select_lines,
)
from imagectl.errors import ConfigError, ImagectlError
from imagectl.increments import summarize
from imagectl.linestate import (
    LineState,
    load_state,
    reference_path,
    reference_text,
    render_dockerfile,
    render_pending,
    render_shared,
    write_reference,
)
from imagectl.lockfile import write_atomic
from imagectl.model import ImageLine, LinePlan, Lock, LockedVersion
from imagectl.packages import PackageDiff, diff_manifests, replay
from imagectl.planner import plan_line
from imagectl.ports import Engine, Git, Registry
from imagectl.publisher import PublishedVersion, pending_publication, publish_line
from imagectl.resolver import Resolution, resolve_ref

if TYPE_CHECKING:
    from imagectl.verifier import VerifyReport


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    built: tuple[BuiltVersion, ...]
    up_to_date: tuple[str, ...]
    failures: tuple[tuple[str, ImagectlError], ...] = ()  # (line, why): other lines went on


def plan(directory: Path, names: Sequence[str], *, all_versions: bool) -> tuple[LinePlan, ...]:
    """What `build next` would build for each selected line; reads files only."""
    layout = find_repository(directory)
    lines = select_lines(load_lines(layout), list(names))
    states = [load_state(layout, line) for line in lines]
    for state in states:
        render_pending(layout, state)  # a typo in any pending increment fails the plan
    return tuple(plan_line(s.line, s.lock, s.increments, all_versions=all_versions) for s in states)


def build_next(
    directory: Path,
    names: Sequence[str],
    *,
    all_versions: bool,
    wait: float,
    say: Callable[[str], None],
    output: Callable[[str], None],
    engine: Engine | None = None,
    registry: Registry | None = None,
    git: Git | None = None,
    jobs: int = 1,
) -> BuildResult:
    """Build the next version (or all pending ones) of each selected line."""
    layout = find_repository(directory)
    lines = select_lines(load_lines(layout), list(names))
    if not lines:
        raise ConfigError(
            "this repository has no image lines yet.",
            hint="Add images/<line>.toml and increments/<line>/0001-*.Dockerfile.j2.",
            path=layout.images_dir,
        )
    engine, registry, git = _adapters(layout.root, engine, registry, git)
    with repository_lock(layout, wait=wait):
        # Validate every selected line, and render every pending increment, before building any:
        # a typo in the last increment fails before the first version is built.
        states = {line.name: load_state(layout, line) for line in lines}
        for state in states.values():
            render_pending(layout, state)
        lockfile.ensure_writable(layout.lock_dir)
        engine.check()

        def build_one(line: ImageLine) -> tuple[BuiltVersion, ...]:
            return build_line(
                layout,
                states[line.name],
                all_versions=all_versions,
                engine=engine,
                registry=registry,
                git=git,
                say=say,
                output=_prefixed(output, line.name, jobs),
            )

        # Lines are independent: build them side by side; one line's failure stops only it.
        outcomes: dict[str, tuple[BuiltVersion, ...] | ImagectlError] = {}
        if jobs <= 1:
            outcomes = {line.name: _capture(build_one, line) for line in lines}
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(_capture, build_one, line): line.name for line in lines}
                for future, name in futures.items():
                    outcomes[name] = future.result()
    built: list[BuiltVersion] = []
    up_to_date: list[str] = []
    failures: list[tuple[str, ImagectlError]] = []
    for line in lines:
        outcome = outcomes[line.name]
        if isinstance(outcome, ImagectlError):
            failures.append((line.name, outcome))
        elif outcome:
            built.extend(outcome)
        else:
            up_to_date.append(line.name)
    return BuildResult(built=tuple(built), up_to_date=tuple(up_to_date), failures=tuple(failures))


def _capture(
    build: Callable[[ImageLine], tuple[BuiltVersion, ...]], line: ImageLine
) -> tuple[BuiltVersion, ...] | ImagectlError:
    try:
        return build(line)
    except ImagectlError as exc:
        return exc


def _prefixed(output: Callable[[str], None], name: str, jobs: int) -> Callable[[str], None]:
    if jobs <= 1:
        return output
    return lambda text: output(f"[{name}] {text}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    published: tuple[PublishedVersion, ...]
    failures: tuple[tuple[str, ImagectlError], ...]  # (line, why): other lines went on


def publish_plan(directory: Path, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The tags `publish` would push, per line, oldest first; reads files only."""
    layout = find_repository(directory)
    lines = select_lines(load_lines(layout), list(names))
    return {
        line.name: tuple(v.tag for v in pending_publication(load_state(layout, line).lock))
        for line in lines
    }


def publish(
    directory: Path,
    names: Sequence[str],
    *,
    wait: float,
    say: Callable[[str], None],
    output: Callable[[str], None],
    engine: Engine | None = None,
    registry: Registry | None = None,
) -> PublishResult:
    """Push every built but unpublished version; one line's refusal does not stop the others."""
    layout = find_repository(directory)
    lines = select_lines(load_lines(layout), list(names))
    engine, registry, _ = _adapters(layout.root, engine, registry, None)
    published: list[PublishedVersion] = []
    failures: list[tuple[str, ImagectlError]] = []
    with repository_lock(layout, wait=wait):
        for line in lines:
            load_state(layout, line)  # every line valid before anything is pushed
        lockfile.ensure_writable(layout.lock_dir)
        for line in lines:
            try:
                published.extend(
                    publish_line(
                        layout, line, engine=engine, registry=registry, say=say, output=output
                    )
                )
            except ImagectlError as exc:
                failures.append((line.name, exc))
    return PublishResult(published=tuple(published), failures=tuple(failures))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceStatus:
    line: str
    path: Path  # relative to the repository root
    changed: bool  # written now (or, with check, found stale)


def squash_lines(
    directory: Path, names: Sequence[str], *, check: bool
) -> tuple[ReferenceStatus, ...]:
    """Write (or with `check`, only compare) each line's reference Dockerfile."""
    layout = find_repository(directory)
    lines = select_lines(load_lines(layout), list(names))
    results = []
    for line in lines:
        state = load_state(layout, line)
        path = reference_path(layout, line.name)
        if check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            changed = current != reference_text(layout, state)
        else:
            changed = write_reference(layout, state)
        results.append(
            ReferenceStatus(line=line.name, path=path.relative_to(layout.root), changed=changed)
        )
    return tuple(results)


def resolve(directory: Path, ref: str) -> Resolution:
    """The newest version of the line that built `ref`, from the lockfiles alone."""
    layout = find_repository(directory)
    lines = load_lines(layout)
    # A repo:vN or repo@digest reference can only come from the line of that repository:
    # read just its lock (an image id needs them all).
    named = repository_of(ref) if "/" in ref else ""
    candidates = [line for line in lines if line.repository == named] or lines
    locks = [_line_lock(layout, line) for line in candidates]
    return resolve_ref(ref, locks)


def backport(directory: Path, fix: Path, *, pattern: str, dry_run: bool) -> BackportPlan:
    """Add a new increment including the shared `fix` to every selected line.

    The fix is rendered with each selected line's vars first; when it fails for any line,
    nothing is written (a dry run reports those lines instead)."""
    layout = find_repository(directory)
    lines = load_lines(layout)
    name = shared_name(layout.root, layout.shared_dir, fix)
    summary = summarize((layout.increments_dir / name).read_text(encoding="utf-8"))
    states = {line.name: load_state(layout, line) for line in lines}
    templates = {
        line: tuple(
            (layout.root / inc.template).read_text(encoding="utf-8") for inc in state.increments
        )
        for line, state in states.items()
    }
    plan = plan_backport(
        fix=name,
        summary=summary,
        pattern=pattern,
        lines={line: state.increments for line, state in states.items()},
        templates=templates,
    )
    if not plan.steps and not plan.already:
        raise ConfigError(
            f"no image line matches {pattern!r}.",
            hint=f"Known lines: {', '.join(sorted(states)) or 'none'}.",
        )
    failures = tuple(
        (step.line, failure)
        for step in plan.steps
        if (failure := _fix_failure(layout, states[step.line], name)) is not None
    )
    plan = replace(plan, failures=failures)
    if failures and not dry_run:
        raise failures[0][1]
    if not dry_run:
        for step in plan.steps:
            target = layout.root / step.path
            if target.exists():
                raise ConfigError("already exists.", path=str(step.path))
            write_atomic(target, step.text)
    return plan


def _fix_failure(layout: RepositoryLayout, state: LineState, fix: str) -> ImagectlError | None:
    """Why the shared fix cannot become the line's next increment, or None when it can."""
    try:
        render_shared(layout, state, fix)
    except ImagectlError as exc:
        return exc
    return None


def render_version(directory: Path, name: str, version: int | None) -> str:
    """The exact Dockerfile of a built version (as built, images pinned) or a pending one."""
    layout = find_repository(directory)
    (line,) = select_lines(load_lines(layout), [name])
    return render_dockerfile(layout, load_state(layout, line), version)


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionDiff:
    line: str
    old: int
    new: int
    packages: PackageDiff
    between: tuple[LockedVersion, ...]  # the versions after `old` up to `new`


def diff_versions(directory: Path, name: str, old: int, new: int) -> VersionDiff:
    """Packages added, removed and changed from version `old` to `new`, and what came between."""
    layout = find_repository(directory)
    (line,) = select_lines(load_lines(layout), [name])
    lock = _line_lock(layout, line)
    count = len(lock.versions)
    for version in (old, new):
        if not 0 <= version <= count:
            raise ConfigError(
                f"{line.name} has no v{version} (it has v1 to v{count}; v0 is the base).",
                hint=f"See `imagectl history {line.name}`.",
            )
    path = lockfile.packages_path(layout.lock_path(line.name))
    base, deltas = lockfile.read_packages(path)
    missing = [v for v in range(1, max(old, new) + 1) if v not in deltas]
    if not missing:
        packages = diff_manifests(replay(base, deltas, old), replay(base, deltas, new))
    else:
        # Versions built before imagectl recorded packages: read both images, if still here.
        packages = _diff_images(_image_of(lock, old), _image_of(lock, new), path, layout.root)
    low, high = sorted((old, new))
    between = tuple(v for v in lock.versions if low < v.version <= high)
    return VersionDiff(line=line.name, old=old, new=new, packages=packages, between=between)


def _image_of(lock: Lock, version: int) -> str:
    return lock.versions[version - 1].image_id if version else lock.base_image_id


def _diff_images(old: str, new: str, path: Path, root: Path) -> PackageDiff:
    from imagectl.builder import manifest_of  # noqa: PLC0415
    from imagectl.docker_engine import DockerEngine  # noqa: PLC0415

    engine = DockerEngine()
    if any(not image or engine.inspect_image(image) is None for image in (old, new)):
        raise ConfigError(
            "no package manifest is recorded for these versions, and their images are not in "
            "the engine to read them from.",
            hint="Pull the two versions, or diff versions built since imagectl records packages.",
            path=path.relative_to(root),
        )
    return diff_manifests(manifest_of(old, engine=engine), manifest_of(new, engine=engine))


def checkpoint(
    directory: Path,
    name: str,
    *,
    wait: float,
    say: Callable[[str], None],
    engine: Engine | None = None,
    registry: Registry | None = None,
) -> BuiltVersion:
    """Add a one-layer copy of the newest version of `name` as its next version."""
    from imagectl.checkpoint import checkpoint_line  # noqa: PLC0415

    layout = find_repository(directory)
    (line,) = select_lines(load_lines(layout), [name])
    engine, registry, _ = _adapters(layout.root, engine, registry, None)
    with repository_lock(layout, wait=wait):
        engine.check()
        return checkpoint_line(layout, line, engine=engine, registry=registry, say=say)


def verify(
    directory: Path,
    name: str,
    *,
    say: Callable[[str], None],
    output: Callable[[str], None],
    engine: Engine | None = None,
) -> VerifyReport:
    """Rebuild the reference from scratch under a throwaway tag and compare with the newest."""
    from imagectl.verifier import verify_line  # noqa: PLC0415

    layout = find_repository(directory)
    (line,) = select_lines(load_lines(layout), [name])
    engine, _, _ = _adapters(layout.root, engine, None, None)
    engine.check()
    return verify_line(layout, line, engine=engine, say=say, output=output)


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    lock: Lock
    packages: dict[int, str]  # "+added -removed ~changed" per version with a manifest


def read_history(directory: Path, name: str) -> History:
    """A line's lock and package deltas (no drift check: history must work on a drifted tree)."""
    layout = find_repository(directory)
    (line,) = select_lines(load_lines(layout), [name])
    _, deltas = lockfile.read_packages(lockfile.packages_path(layout.lock_path(line.name)))
    packages = {
        version: diff_manifests(removed, added).summary
        for version, (added, removed) in deltas.items()
    }
    return History(lock=_line_lock(layout, line), packages=packages)


def _line_lock(layout: RepositoryLayout, line: ImageLine) -> Lock:
    return lockfile.read_lock(
        layout.lock_path(line.name), line=line.name, repository=line.repository, base=line.base
    )


def _adapters(
    root: Path, engine: Engine | None, registry: Registry | None, git: Git | None
) -> tuple[Engine, Registry, Git]:
    from imagectl.docker_engine import DockerEngine  # noqa: PLC0415
    from imagectl.git_repo import GitRepository  # noqa: PLC0415
    from imagectl.registry import DockerCliRegistry  # noqa: PLC0415

    return (engine or DockerEngine(), registry or DockerCliRegistry(), git or GitRepository(root))
