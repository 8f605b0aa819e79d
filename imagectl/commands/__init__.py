"""One short function per subcommand: call the use case, pair its result with what a person
sees and the exit code. The CLI parses before and prints after.

Each command's module imports only what that command needs, so that `plan`, `history` and
`resolve` never load the engine, registry or build code; this module stays import-free."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagectl.core.ports import Say

# The module under imagectl.commands that holds each command's function (named as in cli).
MODULES: dict[str, str] = {
    "plan": "plan",
    "build_next": "build",
    "checkpoint": "build",
    "verify": "build",
    "rebuild": "build",
    "test": "build",
    "skip": "build",
    "publish": "publish",
    "ci_publish": "publish",
    "audit": "publish",
    "backport": "backport",
    "squash": "reference",
    "render": "reference",
    "diff": "reference",
    "resolve": "lookup",
    "history": "lookup",
    "withdraw": "withdraw",
    "query_package": "query",
    "query_digest": "query",
    "sbom": "sbom",
    "archive": "archive",
    "site": "site",
    "restore_check": "restore",
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def streamed(args: argparse.Namespace) -> Say:
    """Build and push output, streamed to stderr unless --quiet (or --json, which keeps stdout)."""

    def show(line: str) -> None:
        print(f"  | {line}", file=sys.stderr, flush=True)

    return (lambda _line: None) if args.quiet else show


def versions_text(versions: tuple[int, ...]) -> str:
    """Versions as runs: "v1-v200", "v3, v5-v7" (core.history's, loaded when asked)."""
    from imagectl.core.history import versions_text as runs  # noqa: PLC0415

    return runs(versions)
