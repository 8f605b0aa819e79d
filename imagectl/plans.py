"""What `build next` would build for each selected line: files only, no engine, no registry."""

from __future__ import annotations

from collections.abc import Sequence

from imagectl.linestate import load_state, render_pending
from imagectl.model import LinePlan
from imagectl.planner import plan_line
from imagectl.project import Project


def plan_lines(
    project: Project, names: Sequence[str], *, all_versions: bool
) -> tuple[LinePlan, ...]:
    """Each selected line's plan; a drifted line or a typo in any pending increment fails it."""
    states = [load_state(project.layout, line) for line in project.select(names)]
    for state in states:
        render_pending(project.layout, state)
    return tuple(plan_line(s.line, s.lock, s.increments, all_versions=all_versions) for s in states)
