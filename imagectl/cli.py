"""The command line: parse, call the core, render. The only place that prints or exits."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imagectl import __version__
from imagectl.errors import ImagectlError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CHECK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except ImagectlError as exc:
        print_error(exc, args.directory)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "imagectl: interrupted; nothing half-recorded (the lock is written last).",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _relative_to_repository(exc: ImagectlError, directory: Path) -> ImagectlError:
    """Name files as the user sees them in the repository, not by absolute path."""
    if not exc.path or not Path(exc.path).is_absolute():
        return exc
    from imagectl.config import find_repository  # noqa: PLC0415

    try:
        root = find_repository(directory).root
    except ImagectlError:
        return exc
    path = Path(exc.path)
    if path.is_relative_to(root):
        exc.path = path.relative_to(root).as_posix()
    return exc


def print_error(exc: ImagectlError, directory: Path) -> None:
    exc = _relative_to_repository(exc, directory)
    print(f"imagectl: {exc.kind}: {exc}", file=sys.stderr)
    if exc.details:
        print("---- last output ----", file=sys.stderr)
        print(exc.details, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagectl",
        description="Maintain container base images incrementally and append-only.",
    )
    parser.add_argument("--version", action="version", version=f"imagectl {__version__}")
    parser.add_argument(
        "-C",
        dest="directory",
        type=Path,
        default=Path(),
        help="run as if started in DIR (the image repository)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    _add_build_commands(commands)
    _add_publish_commands(commands)
    _add_reference_commands(commands)
    _add_line_commands(commands)
    return parser


if TYPE_CHECKING:
    # argparse names the type of add_subparsers() only privately.
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def _add_build_commands(commands: Commands) -> None:
    build = commands.add_parser("build", help="build images")
    build_commands = build.add_subparsers(title="build commands", metavar="WHAT")
    build_next = build_commands.add_parser(
        "next", help="build the next version of each line (v(n+1) FROM the locked v(n))"
    )
    _add_lines(build_next)
    build_next.add_argument(
        "--all",
        action="store_true",
        dest="all_versions",
        help="keep going until every increment is built",
    )
    build_next.add_argument("--dry-run", action="store_true", help="show the plan, build nothing")
    _add_wait(build_next)
    _add_quiet(build_next)
    build_next.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="build up to N lines at once (default 1)",
    )
    _add_json(build_next)
    build_next.set_defaults(run=run_build_next)

    plan = commands.add_parser(
        "plan", help="show every version that `build next --all` would build"
    )
    _add_lines(plan)
    _add_json(plan)
    plan.set_defaults(run=run_plan)


def _add_publish_commands(commands: Commands) -> None:
    publish = commands.add_parser(
        "publish", help="push built versions to the registry, oldest first, never overwriting"
    )
    _add_lines(publish)
    publish.add_argument("--dry-run", action="store_true", help="show what would be pushed")
    _add_wait(publish)
    _add_quiet(publish)
    _add_json(publish)
    publish.set_defaults(run=run_publish)

    job = commands.add_parser(
        "ci-publish",
        help="the CI job: build next --all, publish, commit the lockfiles, push (with retries)",
    )
    job.add_argument("--remote", default="origin", help="git remote to push to (origin)")
    job.add_argument("--branch", default="main", help="branch to push the lock commit to (main)")
    job.add_argument("--attempts", type=int, default=5, help="tries when the push is rejected")
    _add_quiet(job)
    job.set_defaults(run=run_ci_publish)


def _add_reference_commands(commands: Commands) -> None:
    squash = commands.add_parser(
        "squash", help="write each line's reference Dockerfile (base + every increment)"
    )
    _add_lines(squash)
    squash.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 3 when a committed reference is stale",
    )
    squash.set_defaults(run=run_squash)

    resolve = commands.add_parser(
        "resolve", help="the newest version of the line that built REF (repo:vN, digest, id)"
    )
    resolve.add_argument("ref", metavar="REF")
    _add_json(resolve)
    resolve.set_defaults(run=run_resolve)

    back = commands.add_parser(
        "backport", help="add a new increment including a shared fix to every selected line"
    )
    back.add_argument(
        "fix", type=Path, metavar="FIX", help="increments/_shared/<fix>.Dockerfile.j2"
    )
    back.add_argument("--lines", default="*", metavar="GLOB", help="lines to patch (default *)")
    back.add_argument("--dry-run", action="store_true", help="show the plan, write nothing")
    back.set_defaults(run=run_backport)

    render = commands.add_parser(
        "render", help="print the exact Dockerfile of a built or pending version"
    )
    render.add_argument("line", metavar="LINE")
    render.add_argument(
        "version",
        nargs="?",
        type=_version,
        metavar="VERSION",
        help="3 or v3 (default: the next version to build)",
    )
    render.set_defaults(run=run_render)


def _add_line_commands(commands: Commands) -> None:
    diff = commands.add_parser("diff", help="packages and increments between two versions")
    diff.add_argument("line", metavar="LINE")
    diff.add_argument("old", type=_version, metavar="A", help="a version: 3 or v3")
    diff.add_argument("new", type=_version, metavar="B", help="a later version")
    _add_json(diff)
    diff.set_defaults(run=run_diff)

    verify = commands.add_parser(
        "verify", help="build the reference from scratch and compare with the newest version"
    )
    verify.add_argument("line", metavar="LINE")
    _add_quiet(verify)
    _add_json(verify)
    verify.set_defaults(run=run_verify)

    checkpoint = commands.add_parser(
        "checkpoint", help="add a one-layer copy of the newest version (for the layer limit)"
    )
    checkpoint.add_argument("line", metavar="LINE")
    _add_wait(checkpoint)
    checkpoint.set_defaults(run=run_checkpoint)

    history = commands.add_parser("history", help="show the built versions of a line")
    history.add_argument("line", metavar="LINE")
    _add_json(history)
    history.set_defaults(run=run_history)


def _add_lines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lines", nargs="*", metavar="LINE", help="image lines (default: all)")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another build or publish in this repository",
    )


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="hide the output of docker build and push"
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def run_build_next(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _print_plan(args, all_versions=args.all_versions)
    from imagectl.workflows import build_next  # noqa: PLC0415 - keeps --help fast

    results = build_next(
        args.directory,
        args.lines,
        all_versions=args.all_versions,
        wait=args.wait,
        say=_say,
        output=_output(quiet=args.quiet),
        jobs=args.jobs,
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "line": r.line,
                        "version": r.version,
                        "tag": r.tag,
                        "image_id": r.image_id,
                        "adopted": r.adopted,
                    }
                    for r in results.built
                ],
                indent=2,
            )
        )
    else:
        for built in results.built:
            short = built.image_id.removeprefix("sha256:")[:12]
            print(f"{built.line}: {'adopted' if built.adopted else 'built'} {built.tag} ({short})")
        for name in results.up_to_date:
            print(f"{name}: up to date, nothing to build")
        for name, exc in results.failures:
            print(f"{name}: FAILED ({exc.kind})")
    for _name, exc in results.failures:
        print_error(exc, args.directory)
    return EXIT_ERROR if results.failures else EXIT_OK


def run_publish(args: argparse.Namespace) -> int:
    from imagectl import workflows  # noqa: PLC0415

    if args.dry_run:
        plan = workflows.publish_plan(args.directory, args.lines)
        if args.json:
            print(json.dumps(plan, indent=2))
        for line, tags in plan.items():
            if not args.json:
                print(f"{line}: " + (", ".join(tags) if tags else "nothing to publish"))
        return EXIT_OK
    result = workflows.publish(
        args.directory, args.lines, wait=args.wait, say=_say, output=_output(quiet=args.quiet)
    )
    if args.json:
        print(
            json.dumps(
                {
                    "published": [
                        {
                            "line": p.line,
                            "version": p.version,
                            "tag": p.tag,
                            "digest": p.digest,
                            "action": p.action,
                        }
                        for p in result.published
                    ],
                    "failures": [
                        {"line": line, "error": str(exc)} for line, exc in result.failures
                    ],
                },
                indent=2,
            )
        )
    else:
        for item in result.published:
            print(f"{item.line}: {item.action} {item.tag}@{item.digest}")
        if not result.published and not result.failures:
            print("nothing to publish")
    for _line, exc in result.failures:
        print_error(exc, args.directory)
    return EXIT_ERROR if result.failures else EXIT_OK


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _output(*, quiet: bool) -> Callable[[str], None]:
    def output(line: str) -> None:
        if not quiet:
            print(f"  | {line}", file=sys.stderr, flush=True)

    return output


def run_squash(args: argparse.Namespace) -> int:
    from imagectl.workflows import squash_lines  # noqa: PLC0415

    results = squash_lines(args.directory, args.lines, check=args.check)
    for item in results:
        if args.check:
            state = "stale: run `imagectl squash`" if item.changed else "current"
        else:
            state = "written" if item.changed else "unchanged"
        print(f"{item.line}: {item.path} {state}")
    stale = args.check and any(item.changed for item in results)
    return EXIT_CHECK if stale else EXIT_OK


def run_resolve(args: argparse.Namespace) -> int:
    from imagectl.workflows import resolve  # noqa: PLC0415

    found = resolve(args.directory, args.ref)
    if args.json:
        print(
            json.dumps(
                {
                    "query": found.query,
                    "line": found.line,
                    "version": found.matched.version,
                    "newest": found.newest.version,
                    "tag": found.newest.tag,
                    "digest": found.newest.digest,
                    "image_id": found.newest.image_id,
                    "reference": found.reference,
                    "published": bool(found.newest.digest),
                },
                indent=2,
            )
        )
    else:
        print(found.reference)
    return EXIT_OK


def run_backport(args: argparse.Namespace) -> int:
    from imagectl.workflows import backport  # noqa: PLC0415

    plan = backport(args.directory, args.fix, pattern=args.lines, dry_run=args.dry_run)
    verb = "would add" if args.dry_run else "added"
    failed = dict(plan.failures)
    for step in plan.steps:
        state = f" -- FAILS: {failed[step.line]}" if step.line in failed else ""
        print(f"{step.line}: {verb} {step.path}{state}")
    for line in plan.already:
        print(f"{line}: includes {plan.fix} already")
    if plan.steps and not args.dry_run:
        print("next: imagectl build next --all [--jobs N]")
    return EXIT_ERROR if failed else EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    from imagectl.workflows import render_version  # noqa: PLC0415

    sys.stdout.write(render_version(args.directory, args.line, args.version))
    return EXIT_OK


def _version(text: str) -> int:
    try:
        return int(text.removeprefix("v"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a version: {text!r} (use 3 or v3)") from None


def run_diff(args: argparse.Namespace) -> int:
    from imagectl.workflows import diff_versions  # noqa: PLC0415

    found = diff_versions(args.directory, args.line, args.old, args.new)
    pkgs = found.packages
    if args.json:
        print(
            json.dumps(
                {
                    "line": found.line,
                    "from": found.old,
                    "to": found.new,
                    "added": list(pkgs.added),
                    "removed": list(pkgs.removed),
                    "changed": [
                        {"package": c.name, "old": c.old, "new": c.new} for c in pkgs.changed
                    ],
                    "increments": [
                        {
                            "version": v.version,
                            "increment": v.increment,
                            "summary": v.summary,
                            "checkpoint": v.checkpoint,
                        }
                        for v in found.between
                    ],
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(f"{found.line}: v{found.old} -> v{found.new}: packages {pkgs.summary}")
    for entry in pkgs.added:
        print(f"  + {entry}")
    for entry in pkgs.removed:
        print(f"  - {entry}")
    for change in pkgs.changed:
        print(f"  ~ {change.name} {change.old} -> {change.new}")
    for version in found.between:
        what = version.increment.rsplit("/", 1)[-1] or "(checkpoint)"
        print(f"  v{version.version}  {what}  {version.summary}")
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from imagectl.workflows import verify  # noqa: PLC0415

    report = verify(args.directory, args.line, say=_say, output=_output(quiet=args.quiet))
    if args.json:
        print(
            json.dumps(
                {
                    "line": report.line,
                    "version": report.version,
                    "drift": report.drift,
                    "packages": {
                        "added": list(report.packages.added),
                        "removed": list(report.packages.removed),
                        "changed": [
                            {"package": c.name, "old": c.old, "new": c.new}
                            for c in report.packages.changed
                        ],
                    },
                    "files": {
                        "missing": list(report.missing),
                        "extra": list(report.extra),
                        "different": list(report.different),
                    },
                },
                indent=2,
            )
        )
    elif not report.drift:
        print(f"{report.line}: the reference rebuilt from scratch matches v{report.version}")
    else:
        print(
            f"{report.line}: DRIFT between v{report.version} and its reference rebuilt now: "
            f"packages {report.packages.summary}, files missing {len(report.missing)}, "
            f"extra {len(report.extra)}, different {len(report.different)}"
        )
        for change in report.packages.changed:
            print(f"  ~ {change.name} {change.old} (v{report.version}) -> {change.new} (now)")
        for entry in report.packages.removed:
            print(f"  - {entry} (only in v{report.version})")
        for entry in report.packages.added:
            print(f"  + {entry} (only in the rebuilt reference)")
        for path in report.different:
            print(f"  ! /{path} differs")
        for path in report.missing:
            print(f"  - /{path} missing from the rebuilt reference")
        for path in report.extra:
            print(f"  + /{path} only in the rebuilt reference")
    return EXIT_CHECK if report.drift else EXIT_OK


def run_checkpoint(args: argparse.Namespace) -> int:
    from imagectl.workflows import checkpoint  # noqa: PLC0415

    made = checkpoint(args.directory, args.line, wait=args.wait, say=_say)
    print(f"{made.line}: checkpoint {made.tag} ({made.image_id.removeprefix('sha256:')[:12]})")
    return EXIT_OK


def run_ci_publish(args: argparse.Namespace) -> int:
    from imagectl.ci_job import run_publish_job  # noqa: PLC0415

    result = run_publish_job(
        args.directory,
        remote=args.remote,
        branch=args.branch,
        attempts=max(1, args.attempts),
        say=_say,
        output=_output(quiet=args.quiet),
    )
    if result.commit:
        print(f"pushed lock commit {result.commit[:12]} with {len(result.tags)} new tag(s)")
    else:
        print("nothing to publish")
    return EXIT_OK


def run_plan(args: argparse.Namespace) -> int:
    return _print_plan(args, all_versions=True)


def _print_plan(args: argparse.Namespace, *, all_versions: bool) -> int:
    from imagectl.workflows import plan  # noqa: PLC0415

    plans = plan(args.directory, args.lines, all_versions=all_versions)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "line": p.line,
                        "built": p.built,
                        "available": p.available,
                        "steps": [
                            {
                                "version": s.version,
                                "tag": s.tag,
                                "increment": s.increment.path.as_posix(),
                                "parent": s.parent,
                                "summary": s.increment.summary,
                            }
                            for s in p.steps
                        ],
                    }
                    for p in plans
                ],
                indent=2,
            )
        )
        return EXIT_OK
    for line_plan in plans:
        if not line_plan.steps:
            print(f"{line_plan.line}: up to date (v{line_plan.built})")
            continue
        print(f"{line_plan.line}: v{line_plan.built} built, {line_plan.pending} pending")
        for step in line_plan.steps:
            summary = f"  # {step.increment.summary}" if step.increment.summary else ""
            print(
                f"  v{step.version}  {step.increment.path.as_posix()}  FROM {step.parent}{summary}"
            )
    return EXIT_OK


def run_history(args: argparse.Namespace) -> int:
    from imagectl.history import history_records, history_table  # noqa: PLC0415
    from imagectl.workflows import read_history  # noqa: PLC0415

    found = read_history(args.directory, args.line)
    lock, deltas = found.lock, found.packages
    if args.json:
        print(json.dumps(history_records(lock, deltas), indent=2))
    elif not lock.versions:
        print(f"{args.line}: no versions built yet")
    else:
        print(history_table(lock, deltas))
    return EXIT_OK
