"""The command line: parse, resolve the project once, dispatch, print. The only place that
prints or exits; each command's module under `commands` says what it shows and which use
case it runs."""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagectl import __version__
from imagectl.commands.exits import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE
from imagectl.core.errors import ImagectlError

if TYPE_CHECKING:
    from imagectl.commands.outcome import Outcome
    from imagectl.core.notices import Notice


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    if not hasattr(args, "run"):
        build_parser().print_help()
        return EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    # SIGTERM (a CI job cancelled, `kill`) unwinds like Ctrl-C: every `finally` runs, so the
    # containers a build or test made are removed and no lock is left half-written.
    signal.signal(signal.SIGTERM, _terminated)
    from imagectl.core.notices import collecting  # noqa: PLC0415 (small, after --help)

    with collecting() as warnings:
        try:
            # Imported here, so that --help and usage errors never load the core.
            from imagectl.app.project import open_project  # noqa: PLC0415
            from imagectl.commands import MODULES  # noqa: PLC0415

            module = importlib.import_module(f"imagectl.commands.{MODULES[args.run]}")
            run: Callable[..., Outcome] = getattr(module, args.run)
            _collect_from_here()
            outcome = run(
                args, open_project(args.directory, builder_name=getattr(args, "builder", None))
            )
        except ImagectlError as error:
            report_error(error, args.directory, as_json=as_json, warnings=warnings)
            return EXIT_ERROR
        except KeyboardInterrupt as stop:
            print(
                f"imagectl: {'terminated' if isinstance(stop, Terminated) else 'interrupted'}; "
                "nothing half-recorded (the lock is written last).",
                file=sys.stderr,
            )
            return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    try:
        show(outcome, warnings, args.directory, as_json=as_json)
    except BrokenPipeError:
        # The reader went away (`imagectl query package x | head`): what it read is all it
        # wanted; no traceback, and none when Python flushes stdout at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return outcome.code


def _collect_from_here() -> None:
    """When the entry (`imagectl.start`) kept the collector off while the command loaded: the
    objects made so far (they live until exit) left out of its scans from now on, and it on."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def show(outcome: Outcome, warnings: Sequence[Notice], directory: Path, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(with_warnings(outcome.result.to_json(), warnings), indent=2), flush=True)
        return
    for warning in outcome.warnings:
        print(f"imagectl: warning: {warning}", file=sys.stderr)
    if outcome.text:
        print(outcome.text, flush=True)
    for exc in outcome.errors:
        report_error(exc, directory, as_json=False)


def with_warnings(data: Any, warnings: Sequence[Notice]) -> Any:
    """The result with the warnings given while it was made: a `warnings` list in every result
    object (after the result's own); in a list of per-line objects (plan), each line's own."""
    if isinstance(data, dict):
        return {**data, "warnings": [*data.get("warnings", ()), *map(str, warnings)]}
    if isinstance(data, list) and all(isinstance(item, dict) and "line" in item for item in data):
        return [
            {**item, "warnings": [str(w) for w in warnings if w.line == item["line"]]}
            for item in data
        ]
    return data


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, as Ctrl-C's KeyboardInterrupt is."""


def _terminated(_signum: int, _frame: object) -> None:
    from imagectl.core.faults import STOPPING  # noqa: PLC0415

    STOPPING.set()
    raise Terminated


def report_error(
    exc: ImagectlError, directory: Path, *, as_json: bool, warnings: Sequence[Notice] = ()
) -> None:
    """One paragraph on stderr; with --json, an object on stdout ({"error", "hint", ...,
    "warnings"})."""
    exc = _relative_to_repository(exc, directory)
    if as_json:
        print(json.dumps(with_warnings(exc.to_json(), warnings), indent=2))
        return
    print(f"imagectl: {exc.kind}: {exc}", file=sys.stderr)
    if exc.details:
        print(f"---- last output ----\n{exc.details}", file=sys.stderr)


def _relative_to_repository(exc: ImagectlError, directory: Path) -> ImagectlError:
    """Name files as the user sees them in the repository, not by absolute path."""
    if not exc.path or not Path(exc.path).is_absolute():
        return exc
    from imagectl.core.config import find_repository  # noqa: PLC0415

    try:
        root = find_repository(directory).root
    except ImagectlError:
        return exc
    if Path(exc.path).is_relative_to(root):
        exc.path = Path(exc.path).relative_to(root).as_posix()
    return exc


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def _version(text: str) -> int:
    try:
        value = int(text.removeprefix("v"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a version: {text!r} (use 3 or v3)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a version: {text!r} (use 3 or v3)")
    return value


Argument = tuple[tuple[str, ...], dict[str, Any]]  # flags, argparse keywords

# The shared options, defined once.
OPTIONS: dict[str, Argument] = {
    "lines": (("lines",), {"nargs": "*", "metavar": "LINE", "help": "image lines (default: all)"}),
    "line": (("line",), {"metavar": "LINE"}),
    "json": (("--json",), {"action": "store_true", "help": "print JSON (errors too, on stdout)"}),
    "dry-run": (("--dry-run",), {"action": "store_true", "help": "show the plan, change nothing"}),
    "wait": (
        ("--wait",),
        {
            "type": _seconds,
            "default": 0.0,
            "metavar": "SECONDS",
            "help": "wait this long for another build or publish here",
        },
    ),
    "builder": (
        ("--builder",),
        {
            "metavar": "NAME",
            "help": "the buildx builder to use (default: imagectl.toml, else docker's)",
        },
    ),
    "jobs": (
        ("-j", "--jobs"),
        {
            "type": _count(1),
            "default": 1,
            "metavar": "N",
            "help": "work on up to N lines at once (default 1)",
        },
    ),
}


def _arg(*flags: str, **keywords: Any) -> Argument:
    return flags, keywords


def _quiet(what: str) -> Argument:
    return _arg("-q", "--quiet", action="store_true", help=f"hide the output of {what}")


# Every command: its name, its help, and its arguments (a shared option's name, or its own).
# `imagectl <name>` runs imagectl.commands.<name> (spaces and dashes as underscores).
COMMANDS: tuple[tuple[str, str, tuple[str | Argument, ...]], ...] = (
    ("build next", "build the next version of each line: v(n+1) FROM the locked v(n)", (
        "lines", "dry-run", "wait", "jobs", "builder", "json", _quiet("docker build"),
        _arg("--all", action="store_true", dest="all_versions",
             help="keep going until every increment is built"),
    )),
    ("plan", "show every version that `build next --all` would build", ("lines", "json")),
    ("publish", "push built versions, oldest first, never overwriting a tag", (
        "lines", "dry-run", "wait", "json", _quiet("docker push"),
    )),
    ("ci-publish", "the CI job: build, publish, commit the lockfiles, push (with retries)", (
        "json", _quiet("docker build and push"),
        _arg("--remote", default="origin", help="git remote to push to (origin)"),
        _arg("--branch", default="main", help="branch to push the lock commit to (main)"),
        _arg("--attempts", type=_count(1), default=5, help="tries when the push is rejected (5)"),
        _arg("--lines", default="*", metavar="GLOB",
             help="only the lines matching GLOB: build, publish and commit their files (one "
             "CI matrix job per line); default *"),
    )),
    ("squash", "write each line's reference Dockerfile (base + every increment)", (
        "lines", "json",
        _arg("--check", action="store_true",
             help="write nothing; exit 3 when a committed reference is stale"),
    )),
    ("resolve", "the newest version of the line that built REF", (
        "json", _arg("ref", metavar="REF", help="repo:vN, repo@sha256:..., or an image id"),
    )),
    ("backport", "add a new increment including a shared fix to every selected line", (
        "dry-run", "json",
        _arg("fix", type=Path, metavar="FIX", help="increments/_shared/<fix>.Dockerfile.j2"),
        _arg("--lines", default="*", metavar="GLOB", help="lines to patch (default *)"),
    )),
    ("render", "print the exact Dockerfile of a built or pending version", (
        "line", "json",
        _arg("version", nargs="?", type=_version, metavar="VERSION",
             help="3 or v3 (default: the next version to build)"),
    )),
    ("diff", "packages and increments between two versions", (
        "line", "json",
        _arg("old", type=_version, metavar="A", help="a version: 3 or v3 (0 is the base)"),
        _arg("new", type=_version, metavar="B", help="another version"),
    )),
    ("verify", "build the reference from scratch and compare it with the newest version", (
        "builder", "json", _quiet("the rebuild"),
        _arg("line", nargs="?", metavar="LINE", help="the line (or --all)"),
        _arg("--all", action="store_true", dest="all_lines",
             help="every line that has a version, with a summary (exit 3: any drift)"),
        _arg("--reports", type=Path, metavar="DIR",
             help="also write DIR/<line>.json, DIR/summary.json and DIR/summary.md"),
        _arg("--offline", action="store_true",
             help="rebuild increment by increment from the input archives alone (no network)"),
    )),
    ("rebuild", "rebuild a version from its input archives into an untagged image", (
        "line", "builder", "json", _quiet("the rebuild"),
        _arg("version", type=_version, metavar="VERSION", help="3 or v3"),
        _arg("--offline", action="store_true", required=True,
             help="from the archives alone (the only kind of rebuild there is)"),
    )),
    ("checkpoint", "add a one-layer copy of the newest version (for the layer limit)", (
        "line", "wait", "builder", "json",
    )),
    ("test", "run the tests of every increment up to a built version, on its image", (
        "line", "json",
        _arg("version", nargs="?", type=_version, metavar="VERSION",
             help="3 or v3 (default: the newest version)"),
    )),
    ("history", "show the built versions of a line", ("line", "json")),
    ("audit", "check that the registry still serves every published version as recorded", (
        "lines", "json",
    )),
    ("skip", "record a version whose tag someone else's image burned; build the next one", (
        "line", "wait", "json",
        _arg("version", type=_version, metavar="VERSION", help="the burned version: 3 or v3"),
        _arg("--reason", required=True, metavar="TEXT", help="why (kept in the lock)"),
    )),
    ("query package", "every version of every line that has a package", (
        "json",
        _arg("name", metavar="NAME", help="the package's name (a glob such as 'libssl*' too)"),
        _arg("--version", metavar="CONSTRAINT",
             help="only these versions of it: '<3.0.13-0ubuntu3.4', '>=2.1,!=2.3' (dpkg's "
             "order for debs, PEP 440 for pip and conda)"),
        _arg("--kind", choices=("deb", "pip", "conda"), help="only packages of this kind"),
    )),
    ("query digest", "the version (and its successor) a digest or image id names", (
        "json",
        _arg("digest", metavar="DIGEST", help="sha256:... or its first 12 hex digits or more"),
    )),
    ("sbom", "a version's SBOM (SPDX 2.3 JSON) from its recorded packages", (
        "line",
        _arg("version", nargs="?", type=_version, metavar="VERSION",
             help="3 or v3 (default: the newest version)"),
        _arg("--out", type=Path, metavar="FILE", help="write it to FILE (default: stdout)"),
    )),
    ("archive", "a version's input archive: every download and image it was built from", (
        "line", "json",
        _arg("version", nargs="?", type=_version, metavar="VERSION",
             help="3 or v3 (default: the newest version)"),
    )),
    ("site", "write the history site: every line and version as static HTML", (
        "json",
        _arg("--out", type=Path, metavar="DIR", help="the site's folder (default: site/)"),
    )),
    ("restore-check", "check a pod backup taken on REF against the successor it restores on", (
        "json",
        _arg("backup", type=Path, metavar="BACKUP",
             help="the pod's writable layer as a tar (OCI layer or overlay upper directory)"),
        _arg("--on", required=True, metavar="REF",
             help="the version the backup was taken on: repo:vN, repo@sha256:... or an image id"),
        _arg("--write", type=Path, metavar="MERGED.tar",
             help="for a safe verdict, write the layer to lay over the successor instead"),
        _arg("--from", dest="read_from", choices=("engine", "registry"), default=None,
             help="read the layers from the engine's store on this host or from the registry "
                  "(default: the engine's store when it can, else the registry once published)"),
    )),
    ("withdraw", "withdraw a broken version: its tag stays, resolve passes over it", (
        "line", "wait", "json",
        _arg("version", type=_version, metavar="VERSION", help="the broken version: 3 or v3"),
        _arg("--reason", metavar="TEXT", help="what is broken in it (kept in the lock)"),
        _arg("--undo", action="store_true", help="take the withdrawal back"),
    )),
)  # fmt: skip


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; given `argv` that names a known command, only that command's
    parser is built (argparse takes ~0.5 ms a command, and history answers in tens of ms)."""
    wanted = _command_word(argv or ())
    if wanted not in {name.split(" ")[0] for name, _, _ in COMMANDS}:
        wanted = None  # no command, or a wrong one: argparse lists them all
    parser = argparse.ArgumentParser(
        prog="imagectl", description="Maintain container base images incrementally and append-only."
    )
    parser.add_argument("--version", action="version", version=f"imagectl {__version__}")
    parser.add_argument(
        "-C", dest="directory", type=Path, default=Path(),
        help="run as if started in DIR (the image repository)",
    )  # fmt: skip
    top = parser.add_subparsers(title="commands", metavar="COMMAND")
    groups: dict[str, Any] = {}
    for name, help_text, arguments in COMMANDS:
        group, _, sub = name.rpartition(" ")
        if wanted is not None and (group or sub) != wanted:
            continue
        if group and group not in groups:
            groups[group] = top.add_parser(group, help=f"{group} images").add_subparsers(
                title=f"{group} commands", metavar="WHAT"
            )
        command = (groups[group] if group else top).add_parser(
            sub, help=help_text, description=help_text
        )
        for argument in arguments:
            flags, keywords = OPTIONS[argument] if isinstance(argument, str) else argument
            command.add_argument(*flags, **keywords)
        command.set_defaults(run=name.replace(" ", "_").replace("-", "_"))
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The first word of argv that is not an option of imagectl itself (-C DIR)."""
    words = iter(argv)
    for word in words:
        if word == "-C":
            next(words, None)
        elif word == "--" or not word.startswith("-"):
            return None if word == "--" else word
    return None
