"""`imagectl verify`: build the reference from scratch and compare it with the newest version.

"From scratch" means: the reference Dockerfile (every built increment, in order) built with
`--no-cache` from the base pinned by digest and the helper images pinned by digest, so no step
of the chain is taken from BuildKit's cache; a reference that names an image of the line itself
is refused, since that would reuse the chain's own layers. What it still trusts: the pinned
base and helper images, and whatever the build steps fetch at the time of the run (the apt
mirror, above all).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from imagectl.app.parents import locate_head
from imagectl.app.project import Project
from imagectl.app.recording import manifest_of
from imagectl.app.results.verify import VerifyReport
from imagectl.core.errors import PlanError
from imagectl.core.ignores import DEFAULT_IGNORE, Ignored, split_ignored
from imagectl.core.increments import ignore_tests
from imagectl.core.linerenders import reference_text
from imagectl.core.linestate import LineState, load_state
from imagectl.core.model import ImageLine
from imagectl.core.packages import diff_manifests
from imagectl.core.ports import Say
from imagectl.core.references import repository_of
from imagectl.core.trees import TreeDiff, tree_differences


def ignore_patterns(line: ImageLine) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*DEFAULT_IGNORE, *line.verify_ignore)))


def verify_line(
    project: Project,
    line: ImageLine,
    *,
    say: Say,
    output: Say,
    rebuild: Callable[[LineState], str] | None = None,
) -> VerifyReport:
    """The newest version compared with a rebuild of it: by default the reference from
    scratch; `rebuild` (the offline one) builds it another way and returns its image id."""
    images = project.adapters.images
    state = load_state(project.layout, line)
    newest = locate_head(state, images=images)  # the head must be here to compare with it
    head = state.lock.head
    assert head is not None  # locate_head found it
    throwaway = f"imagectl-verify/{line.name}:{uuid.uuid4().hex[:12]}"  # never pushed
    if rebuild is None:
        check_from_scratch(state)
        say(f"{line.name}: building the reference from scratch (--no-cache) as {throwaway}")
        image_id = _rebuild(project, state, output=output)
    else:
        image_id = rebuild(state)
    images.tag(image_id, throwaway)
    patterns = ignore_patterns(line)
    try:
        rebuilt = images.inspect_image(image_id)
        if rebuilt is None:
            raise PlanError(f"the rebuilt reference {image_id} vanished from the engine.")
        packages = diff_manifests(
            manifest_of(head.image_id, images=images), manifest_of(image_id, images=images)
        )
        same = newest.info.layers == rebuilt.layers
        files, ignored = TreeDiff(), Ignored()
        if not same:
            everything = tree_differences(images.file_tree(newest.ref), images.file_tree(throwaway))
            files, ignored = split_ignored(everything, patterns)
    finally:
        images.remove_image(throwaway)
    return VerifyReport(
        line=line.name, version=head.version, packages=packages, files=files, same_layers=same,
        ignored=ignored, ignore=patterns, offline=rebuild is not None,
    )  # fmt: skip


def check_from_scratch(state: LineState) -> None:
    """Refuse a reference that would build on an image of the line itself (pure)."""
    line, lock = state.line, state.lock
    named = [lock.base] + [image for version in lock.versions for image in version.images]
    own = sorted({image for image in named if repository_of(image) == line.repository})
    if own:
        raise PlanError(
            f"the reference of {line.name} names {', '.join(own)}, an image of the line itself; "
            "built on it, the rebuild would reuse the chain's own layers and prove nothing.",
            hint="Name a pinned helper image from another repository in the increment instead.",
        )


def _rebuild(project: Project, state: LineState, *, output: Say) -> str:
    """The reference of the built increments, built with --no-cache; its image id."""
    layout = project.layout
    built = replace(state, increments=state.increments[: len(state.lock.increment_versions)])
    text = reference_text(layout, built)
    with tempfile.TemporaryDirectory(prefix="imagectl-verify-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(text, encoding="utf-8")
        # The reference COPYs from increments/<line>/ only: send just that as the context,
        # without the tests of folder increments (no context files: the chain never saw them).
        context = Path(tmp) / "context"
        source = layout.line_increments_dir(state.line.name)
        folders = [layout.root / i.path for i in state.increments if i.is_folder]
        shutil.copytree(
            source,
            context / source.relative_to(layout.root),
            symlinks=True,
            ignore=ignore_tests(folders),
        )
        # --no-cache: a step the chain built must run again, or "from scratch" would only
        # mean "from the chain's own cached layers".
        return project.adapters.builder.build(
            dockerfile=dockerfile,
            context=context,
            on_output=output,
            secrets=state.line.secrets,
            no_cache=True,
        )
