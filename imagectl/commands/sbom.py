"""`imagectl sbom LINE [VERSION] [--out FILE]`: a version's SPDX 2.3 document."""

from __future__ import annotations

import argparse

from imagectl.app.project import Project
from imagectl.app.sboms import version_sbom, write_sbom
from imagectl.commands.outcome import Outcome


def sbom(args: argparse.Namespace, project: Project) -> Outcome:
    made = version_sbom(project, args.line, args.version)
    if args.out is None:
        return Outcome(made, made.data.decode().rstrip("\n"), warnings=made.warnings)
    write_sbom(made, args.out)
    subject = made.version.digest or made.version.image_id
    what = "registry digest" if made.version.digest else "image id: not published yet"
    text = (
        f"{made.line}: wrote the SBOM of v{made.version.version} to {args.out} "
        f"({made.packages} packages; subject {subject}, its {what})"
    )
    return Outcome(made, text, warnings=made.warnings)
