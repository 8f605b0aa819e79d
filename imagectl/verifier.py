"""`imagectl verify`: build the reference from scratch and compare it with the newest version."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from imagectl.builder import locate_head, manifest_of
from imagectl.checkpoint import tree_differences
from imagectl.config import RepositoryLayout
from imagectl.errors import PlanError
from imagectl.linestate import load_state, reference_text
from imagectl.model import ImageLine
from imagectl.packages import PackageDiff, diff_manifests
from imagectl.ports import Engine

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    line: str
    version: int  # the newest version, compared with the reference
    packages: PackageDiff  # from the newest version to the rebuilt reference
    missing: tuple[str, ...]  # paths in the newest version, not in the reference
    extra: tuple[str, ...]
    different: tuple[str, ...]
    same_layers: bool  # equal layer diff ids: equal content, no tree walk needed

    @property
    def drift(self) -> bool:
        return not self.packages.empty or bool(self.missing or self.extra or self.different)


def verify_line(
    layout: RepositoryLayout, line: ImageLine, *, engine: Engine, say: Say, output: Say
) -> VerifyReport:
    state = load_state(layout, line)
    newest = locate_head(state, engine=engine)  # the head must be here to compare with it
    head = state.lock.versions[-1]
    built = replace(state, increments=state.increments[: len(state.lock.increment_versions)])
    text = reference_text(layout, built)
    throwaway = f"imagectl-verify/{line.name}:{uuid.uuid4().hex[:12]}"  # never pushed
    say(f"{line.name}: building the reference from scratch as {throwaway}")
    with tempfile.TemporaryDirectory(prefix="imagectl-verify-") as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(text, encoding="utf-8")
        # The reference COPYs from increments/<line>/ only: send just that as the context.
        context = Path(tmp) / "context"
        source = layout.line_increments_dir(line.name)
        shutil.copytree(source, context / source.relative_to(layout.root), symlinks=True)
        # --no-cache: a step the chain built must run again, or "from scratch" would only
        # mean "from the chain's own cached layers".
        image_id = engine.build(
            dockerfile=dockerfile,
            context=context,
            on_output=output,
            secrets=line.secrets,
            no_cache=True,
        )
    engine.tag(image_id, throwaway)
    try:
        rebuilt = engine.inspect_image(image_id)
        if rebuilt is None:
            raise PlanError(f"the rebuilt reference {image_id} vanished from the engine.")
        packages = diff_manifests(
            manifest_of(head.image_id, engine=engine), manifest_of(image_id, engine=engine)
        )
        same = newest.info.layers == rebuilt.layers
        missing: list[str] = []
        extra: list[str] = []
        different: list[str] = []
        if not same:
            missing, extra, different = tree_differences(
                engine.file_tree(newest.ref), engine.file_tree(throwaway)
            )
    finally:
        engine.remove_image(throwaway)
    return VerifyReport(
        line=line.name,
        version=head.version,
        packages=packages,
        missing=tuple(missing),
        extra=tuple(extra),
        different=tuple(different),
        same_layers=same,
    )
