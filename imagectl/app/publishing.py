"""The registry's use cases: `publish` (every built but unpublished version pushed, oldest first,
each line on its own) and `audit`; they load no build or test code."""

from __future__ import annotations

from collections.abc import Sequence

from imagectl.app.archives import store_archives
from imagectl.app.audit import audit_locks
from imagectl.app.locks import locked_and_swept
from imagectl.app.lookups import line_lock
from imagectl.app.project import Project
from imagectl.app.publisher import attach_sboms, publish_line
from imagectl.app.results.publish import (
    AttachedSbom,
    AuditReport,
    PublishedVersion,
    PublishResult,
    StoredArchive,
)
from imagectl.core import lockfile
from imagectl.core.errors import ImagectlError
from imagectl.core.linestate import load_state
from imagectl.core.planner import pending_publication
from imagectl.core.ports import Say


def publish_plan(project: Project, names: Sequence[str]) -> PublishResult:
    """The versions `publish` would push, oldest first, in publish's own shape; reads files only."""
    planned = [
        PublishedVersion(
            line=line.name, version=v.version, tag=v.tag, digest="", action="would push"
        )
        for line in project.select(names)
        for v in pending_publication(load_state(project.layout, line).lock)
    ]
    return PublishResult(published=tuple(planned), failures=(), dry_run=True)


def publish(
    project: Project, names: Sequence[str], *, wait: float, say: Say, output: Say
) -> PublishResult:
    """Push every built but unpublished version; one line's refusal does not stop the others."""
    layout, adapters = project.layout, project.adapters
    lines = project.select(names)
    published: list[PublishedVersion] = []
    sboms: list[AttachedSbom] = []
    archives: list[StoredArchive] = []
    failures: list[tuple[str, ImagectlError]] = []
    with locked_and_swept(project, wait=wait, say=say):
        for line in lines:
            load_state(layout, line)  # every line valid before anything is pushed
        lockfile.ensure_writable(layout.lock_dir)
        adapters.builder.check()
        say(adapters.builder.describe())
        for line in lines:
            try:
                published.extend(
                    publish_line(
                        layout, line, images=adapters.images, registry=adapters.registry,
                        say=say, output=output,
                    )
                )  # fmt: skip
                sboms.extend(attach_sboms(layout, line, registry=adapters.registry, say=say))
                stored, refused = store_archives(layout, line, registry=adapters.registry, say=say)
                archives.extend(stored)
                if refused is not None:
                    failures.append((line.name, refused))
            except ImagectlError as exc:
                failures.append((line.name, exc))
    return PublishResult(
        published=tuple(published), failures=tuple(failures), sboms=tuple(sboms),
        archives=tuple(archives),
    )  # fmt: skip


def audit(project: Project, names: Sequence[str]) -> AuditReport:
    """What the registry serves now for every published version of the selected lines."""
    locks = [line_lock(project, line) for line in project.select(names)]
    return audit_locks(locks, registry=project.adapters.registry)
