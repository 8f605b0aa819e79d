"""`imagectl site [--out DIR]`: the history site, from the locks and package records alone."""

from __future__ import annotations

import argparse

from imagectl.app.project import Project
from imagectl.app.sites import build_site
from imagectl.commands.outcome import Outcome


def site(args: argparse.Namespace, project: Project) -> Outcome:
    out = args.out if args.out is not None else project.layout.root / "site"
    made = build_site(project, out.absolute())
    text = (
        f"wrote {made.out}/index.html: {made.pages} pages, {made.rendered} rendered anew "
        f"(the others unchanged since the site before)"
    )
    return Outcome(made, text)
