"""`imagectl verify`: build the reference from scratch and compare it with the newest version."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from imagectl.errors import PlanError
from imagectl.increments import ignore_tests
from imagectl.linestate import load_state, reference_text
from imagectl.model import ImageLine
from imagectl.packages import PackageDiff, diff_manifests
from imagectl.parents import locate_head
from imagectl.ports import Say
from imagectl.project import Project
from imagectl.recording import manifest_of
from imagectl.trees import TreeDiff, tree_differences


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    line: str
    version: int  # the newest version, compared with the reference
    packages: PackageDiff  # from the newest version to the rebuilt reference
    files: TreeDiff  # from the newest version to the rebuilt reference
    same_layers: bool  # equal layer diff ids: equal content, no tree walk needed

    @property
    def drift(self) -> bool:
        return not self.packages.empty or not self.files.empty

    def to_json(self) -> dict[str, object]:
        """Every difference, with its kind; nothing is cut off."""
        return {
            "line": self.line,
            "version": self.version,
            "drift": self.drift,
            "same_layers": self.same_layers,
            "packages": self.packages.to_json(),
            "files": {
                "missing": list(self.files.missing),
                "extra": list(self.files.extra),
                "different": [{"path": p, "kind": k} for p, k in self.files.different],
            },
        }


def verify_line(project: Project, line: ImageLine, *, say: Say, output: Say) -> VerifyReport:
    layout, images = project.layout, project.adapters.images
    state = load_state(layout, line)
    newest = locate_head(state, images=images)  # the head must be here to compare with it
    head = state.lock.head
    assert head is not None  # locate_head found it
    built = replace(state, increments=state.increments[: len(state.lock.increment_versions)])
    text = reference_text(layout, built)
    throwaway = f"imagectl-verify/{line.name}:{uuid.uuid4().hex[:12]}"  # never pushed
    say(f"{line.name}: building the reference from scratch as {throwaway}")
    with tempfile.TemporaryDirectory(prefix="imagectl-verify-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(text, encoding="utf-8")
        # The reference COPYs from increments/<line>/ only: send just that as the context,
        # without the tests of folder increments (no context files: the chain never saw them).
        context = Path(tmp) / "context"
        source = layout.line_increments_dir(line.name)
        folders = [layout.root / i.path for i in state.increments if i.is_folder]
        shutil.copytree(
            source,
            context / source.relative_to(layout.root),
            symlinks=True,
            ignore=ignore_tests(folders),
        )
        # --no-cache: a step the chain built must run again, or "from scratch" would only
        # mean "from the chain's own cached layers".
        image_id = project.adapters.builder.build(
            dockerfile=dockerfile,
            context=context,
            on_output=output,
            secrets=line.secrets,
            no_cache=True,
        )
    images.tag(image_id, throwaway)
    try:
        rebuilt = images.inspect_image(image_id)
        if rebuilt is None:
            raise PlanError(f"the rebuilt reference {image_id} vanished from the engine.")
        packages = diff_manifests(
            manifest_of(head.image_id, images=images), manifest_of(image_id, images=images)
        )
        same = newest.info.layers == rebuilt.layers
        files = TreeDiff()
        if not same:
            files = tree_differences(images.file_tree(newest.ref), images.file_tree(throwaway))
    finally:
        images.remove_image(throwaway)
    return VerifyReport(
        line=line.name, version=head.version, packages=packages, files=files, same_layers=same
    )
