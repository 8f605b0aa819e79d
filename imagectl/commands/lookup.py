"""`imagectl resolve` and `imagectl history`: answers from the locks, without the engine."""

from __future__ import annotations

import argparse

from imagectl.app.lookups import read_history
from imagectl.app.lookups import resolve as resolve_reference
from imagectl.app.project import Project
from imagectl.app.results.lookup import History
from imagectl.commands.outcome import Outcome


def resolve(args: argparse.Namespace, project: Project) -> Outcome:
    found = resolve_reference(project, args.ref)
    return Outcome(found, found.reference, warnings=found.warnings)


def history(args: argparse.Namespace, project: Project) -> Outcome:
    found = read_history(project, args.line)
    return Outcome(found, history_text(found, args.line))


def history_text(found: History, line: str) -> str:
    if not found.lock.versions:
        return f"{line}: no versions built yet"
    from imagectl.core.history import history_table  # noqa: PLC0415 (not for resolve)

    return history_table(found.lock, found.packages)
