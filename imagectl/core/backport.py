"""Back-porting a shared fix: plan one new increment per line that includes it, then write them."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imagectl.core.errors import ConfigError, ImagectlError
from imagectl.core.increments import TEMPLATE_SUFFIX, TEST_NAMES
from imagectl.core.model import Increment


@dataclass(frozen=True, slots=True, kw_only=True)
class BackportStep:
    """The increment (and tests) a back-port adds to one line."""

    line: str
    path: PurePosixPath  # the new increment, relative to the repository root
    text: str
    # The fix's tests, as tests of the new increment: templates that include the shared ones.
    tests: tuple[tuple[PurePosixPath, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BackportPlan:
    """What a back-port adds to every selected line."""

    fix: str  # e.g. _shared/oom-score-adj.Dockerfile.j2, as templates include it
    steps: tuple[BackportStep, ...]
    already: tuple[str, ...]  # lines that include the fix already
    failures: tuple[tuple[str, ImagectlError], ...] = ()  # lines the fix does not render for
    dry_run: bool = False
    warnings: tuple[str, ...] = ()  # e.g. a line whose head is withdrawn

    def to_json(self) -> dict[str, object]:
        failed = dict(self.failures)
        return {
            "fix": self.fix,
            "dry_run": self.dry_run,
            "steps": [
                {
                    "line": s.line,
                    "increment": s.path.as_posix(),
                    "tests": [path.as_posix() for path, _ in s.tests],
                    "error": failed[s.line].to_json() if s.line in failed else None,
                }
                for s in self.steps
            ],
            "already": list(self.already),
            "warnings": list(self.warnings),
        }


def plan_backport(
    *,
    fix: str,
    summary: str,
    pattern: str,
    lines: Mapping[str, tuple[Increment, ...]],
    templates: Mapping[str, tuple[str, ...]],
    tests: tuple[str, ...] = (),
) -> BackportPlan:
    """One new increment per selected line that does not include `fix` yet, with a test of it
    including each of the fix's `tests` (shared files, as templates include them) (pure)."""
    stem = PurePosixPath(fix).name.removesuffix(TEMPLATE_SUFFIX).removesuffix(".j2")
    include = f'{{% include "{fix}" %}}'
    steps: list[BackportStep] = []
    already: list[str] = []
    for name in sorted(lines):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        if any(fix in text for text in templates.get(name, ())):
            already.append(name)
            continue
        number = len(lines[name]) + 1
        path = PurePosixPath("increments", name, f"{number:04d}-{stem}{TEMPLATE_SUFFIX}")
        text = f"# Back-port: {summary}\n{include}\n" if summary else f"{include}\n"
        steps.append(BackportStep(line=name, path=path, text=text, tests=_tests(path, fix, tests)))
    return BackportPlan(fix=fix, steps=tuple(steps), already=tuple(already))


def _tests(
    increment: PurePosixPath, fix: str, tests: tuple[str, ...]
) -> tuple[tuple[PurePosixPath, str], ...]:
    """Beside the new increment, a test template per shared test: the fix's tests travel with
    it, and an improvement of a shared test reaches every line that carries the fix."""
    stem = increment.name.removesuffix(TEMPLATE_SUFFIX)
    made = []
    for shared in tests:
        kind = shared_test_suffix(shared).removesuffix(".j2")
        path = increment.with_name(f"{stem}.{kind}.j2")
        text = (
            f"# Back-port: the {kind.removesuffix('.sh')} of {fix}, which travels with it\n"
            f'{{% include "{shared}" -%}}\n'
        )
        made.append((path, text))
    return tuple(made)


def shared_test_suffix(name: str) -> str:
    """`start-test.sh` of `_shared/x.start-test.sh`; "" when `name` is no test's name."""
    return next((s for s in TEST_NAMES if name.endswith(f".{s}")), "")


def shared_tests(fix: str, present: Collection[str]) -> tuple[str, ...]:
    """The tests of a shared fix among the files `present` under increments/ (as templates
    include them): `_shared/x.test.sh` (or .j2), `_shared/x.start-test.sh` (or .j2)."""
    stem = fix.removesuffix(TEMPLATE_SUFFIX).removesuffix(".j2")
    found = [f"{stem}.{suffix}" for suffix in TEST_NAMES if f"{stem}.{suffix}" in present]
    kinds = [shared_test_suffix(name).removesuffix(".j2") for name in found]
    if len(set(kinds)) != len(kinds):
        raise ConfigError(
            f"the fix has two tests of one kind ({', '.join(found)}).",
            hint="Keep one of them: a template (*.j2) or a plain script.",
            path=f"increments/{stem}",
        )
    return tuple(found)


def shared_name(root: Path, shared_dir: Path, given: Path, *, cwd: Path | None = None) -> str:
    """The fix as templates include it ("_shared/x.Dockerfile.j2"); it must live in _shared/.
    A relative path is taken from the current directory, else from the repository root."""
    candidates = [given] if given.is_absolute() else [(cwd or Path.cwd()) / given, root / given]
    shared = shared_dir.resolve()
    inside = [c.resolve() for c in candidates if c.resolve().is_relative_to(shared)]
    path = next((c for c in inside if c.is_file()), candidates[-1].resolve())
    if not path.is_file() or not path.is_relative_to(shared_dir.resolve()):
        raise ConfigError(
            f"{given} is not a file in increments/_shared/.",
            hint="Put the fix in increments/_shared/<fix>.Dockerfile.j2 and pass that path.",
        )
    return f"_shared/{path.relative_to(shared_dir.resolve()).as_posix()}"
