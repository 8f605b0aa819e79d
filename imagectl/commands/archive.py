"""`imagectl archive LINE [VERSION]`: a version's input archive, file by file."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from imagectl.app.archives import ShownArchive, show_archive
from imagectl.app.project import Project
from imagectl.commands.outcome import Outcome


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    shown: ShownArchive

    def to_json(self) -> dict[str, object]:
        shown = self.shown
        return {
            **shown.archive.to_json(),
            "tag": shown.tag,
            "digest": shown.digest,
            "source": shown.source,
        }


def archive(args: argparse.Namespace, project: Project) -> Outcome:
    shown = show_archive(project, args.line, args.version)
    return Outcome(ArchiveResult(shown), archive_text(shown))


def archive_text(shown: ShownArchive) -> str:
    found = shown.archive
    where = (
        f"{shown.tag}@{shown.digest}"
        if shown.digest
        else f"not published yet (kept under .imagectl/archive/; publish stores it as {shown.tag})"
    )
    state = "complete" if found.complete else f"INCOMPLETE ({len(found.missing)} missing)"
    lines = [
        f"{found.line} v{found.version}: input archive {state}",
        f"  {where}",
        f"  {len(found.files)} files, {found.size / 1e6:.1f} MB; image {found.image_id}",
    ]
    for image in found.images:
        lines.append(f"  image  {image.role:<6} {image.ref}")
    for file in found.files:
        mark = "" if file.verified else "  (not proved by a signed index)"
        package = f"  [{file.package}]" if file.package else ""
        lines.append(
            f"  {file.kind:<5} {file.sha256[:12]} {file.size:>11,}  {file.url}{package}{mark}"
        )
    lines += [f"  missing: {item}" for item in found.missing]
    return "\n".join(lines)
