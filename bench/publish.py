"""5. Publish: `imagectl publish` of a line's built versions vs a shell loop of `docker push`
over the tags of a second line built the same way."""

from __future__ import annotations

from pathlib import Path

from bench.breakdown import Breakdown, breakdown
from bench.common import (
    IMAGECTL,
    Session,
    fmt_times,
    git_commit,
    imagectl,
    median,
    new_repo,
    nonce,
    run,
    say,
    timed,
    write,
)
from bench.report import Row, Section

LOOP = 'for t in "$@"; do docker push -q "$t" >/dev/null || exit 1; done'


def bench_publish(session: Session) -> Section:
    sizes = session.sizes
    count = sizes.publish_versions
    section = Section(
        5,
        "Publish",
        f"`imagectl publish` of a busybox line with {count} built versions vs a shell loop of "
        f"`docker push -q` over the {count} tags of a second line built the same way "
        "(other content; the busybox base layer is already in the registry for both)",
        "imagectl / docker <= 1.2 (issue 17)",
    )
    rounds = sizes.publish_rounds
    root = _publish_repo(session)
    tool: list[float] = []
    raw: list[float] = []
    for r in range(rounds):
        tags = [f"{session.repository(f'publish/pubd{r}')}:v{i}" for i in range(1, count + 1)]

        def docker_loop(tags: list[str] = tags) -> float:
            return timed(["bash", "-c", LOOP, "bash", *tags])

        def publish(r: int = r) -> float:
            return imagectl(root, "publish", "-q", f"pubi{r}")

        if r % 2 == 0:
            raw.append(docker_loop())
            tool.append(publish())
        else:
            tool.append(publish())
            raw.append(docker_loop())
        say(f"5 publish: round {r + 1}: imagectl {tool[-1]:.2f} s, docker loop {raw[-1]:.2f} s")
    ratio = _publish_report(section, count, rounds, (tool, raw))
    parts = breakdown(session, ["publish", "-q", "pubx"], root)
    section.details += parts.markdown(
        f"Where `publish` of {min(count, 5)} versions spends its time", each_call=False
    )
    if section.rows[0].met is False:
        section.why.append(_publish_why(count, ratio, (tool, raw), parts))
    return section


def _publish_report(
    section: Section, count: int, rounds: int, times: tuple[list[float], list[float]]
) -> float:
    """The row and the details; the ratio."""
    tool, raw = times
    ratio = median(tool) / median(raw)
    section.rows.append(
        Row(
            "5 publish",
            f"`publish` / `docker push` loop, {count} tags (median of {rounds})",
            f"**{ratio:.2f}** ({median(tool):.2f} s / {median(raw):.2f} s)",
            "<= 1.2",
            ratio <= 1.2,
        )
    )
    section.details += [
        f"imagectl publish (s): {fmt_times(tool)}; docker push loop (s): {fmt_times(raw)}",
        f"per tag: imagectl {median(tool) / count:.3f} s, docker push {median(raw) / count:.3f} s",
        "",
    ]
    return ratio


def _publish_repo(session: Session) -> Path:
    """Per round a line for imagectl (pubi) and one for the docker loop (pubd), and a shorter
    one for the breakdown (pubx), all built (not timed), none published."""
    count, rounds = session.sizes.publish_versions, session.sizes.publish_rounds
    names = [f"{kind}{r}" for r in range(rounds) for kind in ("pubi", "pubd")] + ["pubx"]
    root = new_repo(
        session.work / "publish", {name: session.repository(f"publish/{name}") for name in names}
    )
    for name in names:
        versions = count if name != "pubx" else min(count, 5)
        for i in range(1, versions + 1):
            extra = f"echo {name} {nonce()} > /nonce && " if i == 1 else ""
            write(
                root / "increments" / name / f"{i:04d}-count.Dockerfile.j2",
                f"# count {i}\nRUN {extra}echo {i} >> /count\n",
            )
    git_commit(root, "increments")
    say(f"5 publish: building {len(names)} lines of {count} versions (not timed)")
    run([IMAGECTL, "-C", str(root), "build", "next", "--all", "-q", "--jobs", "2"])
    return root


def _publish_why(
    count: int, ratio: float, times: tuple[list[float], list[float]], parts: Breakdown
) -> str:
    tool, raw = times
    pushes, _ = parts.in_flight("docker push")
    docker, calls, startup, rest = parts.fixed(skip="docker push")
    return (
        f"**5 publish (target <= 1.2): {ratio:.2f}.** Per tag imagectl took "
        f"{median(tool) / count:.3f} s and `docker push` {median(raw) / count:.3f} s. In "
        f"the breakdown run of {min(count, 5)} versions, the pushes themselves took "
        f"{pushes:.3f} s; {calls} other docker calls {docker:.3f} s "
        f"({calls / min(count, 5):.1f} per tag), Python start-up and imports "
        f"{startup:.3f} s, and imagectl's own work and git {rest:.3f} s. "
        + parts.explain(skip="docker push")
    )
