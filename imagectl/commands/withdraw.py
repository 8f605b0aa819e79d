"""`imagectl withdraw`: the lock alone, no engine or registry."""

from __future__ import annotations

import argparse

from imagectl.app.project import Project
from imagectl.app.results.lookup import Withdrawal
from imagectl.app.withdrawing import withdraw as withdraw_version
from imagectl.commands.outcome import Outcome


def withdraw(args: argparse.Namespace, project: Project) -> Outcome:
    done = withdraw_version(
        project, args.line, args.version, reason=args.reason or "", undo=args.undo, wait=args.wait
    )
    return Outcome(done, withdrawal_text(done), warnings=done.warnings)


def withdrawal_text(done: Withdrawal) -> str:
    version, oldest = done.version, done.oldest.newest
    now = f"`imagectl resolve` now answers v{oldest.version} for {done.line}'s oldest version"
    if not version.withdrawn:
        return f"{done.line}: v{version.version} is no longer withdrawn; {now}"
    return (
        f"{done.line}: v{version.version} withdrawn ({version.withdrawn_reason}); its tag "
        f"{version.tag} and image stay as they are; {now}"
    )
