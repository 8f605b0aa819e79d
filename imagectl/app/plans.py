"""What `build next` would build for each selected line: files only, no engine, no registry."""

from __future__ import annotations

import time
from collections.abc import Sequence

from imagectl.app import planmemo
from imagectl.app.project import Project
from imagectl.core.model import LinePlan


def plan_lines(
    project: Project, names: Sequence[str], *, all_versions: bool
) -> tuple[LinePlan, ...]:
    """Each selected line's plan; a drifted line or a typo in any pending increment fails it.
    A line whose files are all as they were at an earlier plan is answered from its memo."""
    layout = project.layout
    lines = project.select(names)
    known: dict[str, LinePlan | None] = {
        line.name: planmemo.recall(layout, line, all_versions=all_versions) for line in lines
    }
    missing = [line for line in lines if known[line.name] is None]
    if missing:
        # Reading and rendering (jinja2, the lock parser) load only when a memo is missing.
        from imagectl.core.linerenders import render_pending  # noqa: PLC0415
        from imagectl.core.linestate import load_state  # noqa: PLC0415
        from imagectl.core.planner import plan_line  # noqa: PLC0415
        from imagectl.core.templates import tracking  # noqa: PLC0415

        started_ns = time.time_ns()
        loaded: dict[str, set[str]] = {}
        states = []
        for line in missing:  # every drift check first, then every pending render (as before)
            with tracking() as loaded[line.name]:
                states.append(load_state(layout, line))
        for state in states:
            with tracking() as renders:
                render_pending(layout, state)
            loaded[state.line.name] |= renders
        for state in states:
            plan = plan_line(state.line, state.lock, state.increments, all_versions=all_versions)
            recorded = {name for v in state.lock.versions for name in v.includes}
            planmemo.remember(
                layout, state.line, plan, all_versions=all_versions,
                started_ns=started_ns, includes=loaded[state.line.name] | recorded,
            )  # fmt: skip
            known[state.line.name] = plan
    return tuple(plan for plan in known.values() if plan is not None)
