"""7. Audit: `imagectl audit` of one line with many published versions (one HEAD per tag)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from bench.common import BUSYBOX, Session, fmt_times, git_commit, imagectl, median, run
from bench.report import Row, Section
from bench.synthetic import make_synthetic, record_published


def tag_manifest(repository: str, source_tag: str, tags: Sequence[str]) -> str:
    """Put the manifest of `repository:source_tag` under every tag of `tags` with the registry's
    API (one PUT each, no layers moved); returns its digest."""
    host, _, path = repository.partition("/")
    base = f"http://{host.replace('localhost', '127.0.0.1')}/v2/{path}/manifests"
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    request = urllib.request.Request(f"{base}/{source_tag}", headers={"Accept": accept})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - our registry
        body, kind = answer.read(), answer.headers["Content-Type"]
        digest = answer.headers["Docker-Content-Digest"]

    def put(tag: str) -> None:
        upload = urllib.request.Request(  # noqa: S310 - our registry
            f"{base}/{tag}", data=body, method="PUT", headers={"Content-Type": kind}
        )
        with urllib.request.urlopen(upload, timeout=30):  # noqa: S310 - our registry
            pass

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, tags))
    return str(digest)


def bench_audit(session: Session) -> Section:
    count = session.sizes.audit_tags
    section = Section(
        7,
        "Audit",
        f"`imagectl audit` of one line with {count} published versions: one HEAD per tag "
        "against the local registry, 16 at a time",
        f"{count} tags within seconds (<= 5 s)",
    )
    root = session.work / "audit"
    root.mkdir()
    make_synthetic(root, session.repository("audit"), 1, count)
    repository = session.repository("audit/line000")
    run(["docker", "tag", BUSYBOX, f"{repository}:source"])
    run(["docker", "push", "-q", f"{repository}:source"])
    tags = [f"v{n}" for n in range(1, count + 1)]
    began = time.perf_counter()
    digest = tag_manifest(repository, "source", tags)
    tagging = time.perf_counter() - began
    record_published(root, digest)
    git_commit(root, "published")
    times = [imagectl(root, "audit") for _ in range(3)]
    best = median(times)
    section.rows.append(
        Row(
            "7 audit",
            f"`audit` of {count} published tags (median of {len(times)})",
            f"**{best:.2f} s** ({count / best:.0f} tags/s)",
            "<= 5 s",
            best <= 5.0,
        )
    )
    if best > 5.0:
        section.why.append(
            f"**7 audit (target <= 5 s): {best:.2f} s.** {count / best:.0f} tags/s; one HEAD per "
            "tag, 16 at a time, so each look-up took about "
            f"{16 * best / count * 1000:.0f} ms of registry round trip (no breakdown measured)."
        )
    section.details += [
        f"audit runs (s): {fmt_times(times)}; putting the {count} tags in place took "
        f"{tagging:.2f} s",
        "",
    ]
    return section
