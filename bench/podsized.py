"""9. Flat cost on a pod-sized image: benchmark 1's measurement on a line whose base weighs what
a real pod image does (several layers, tens of thousands of files, package metadata), since
imagectl must cost the same per version whatever the image weighs."""

from __future__ import annotations

from bench.common import UBUNTU, Session
from bench.overhead import (
    OVERHEAD_TARGET,
    WORK_RUN,
    WORK_TARGET,
    OverheadSetup,
    measure_overhead,
)
from bench.podimage import PodImage, PodSpec, pod_image
from bench.report import Row, Section


def bench_podsized(session: Session) -> Section:
    sizes = session.sizes
    spec = PodSpec(sizes.pod_bytes, sizes.pod_files)
    section = Section(
        9,
        "Flat cost on a pod-sized image",
        f"as benchmark 1, on a line whose base is `{spec.tag}`: the `{UBUNTU}` rootfs and four "
        f"generated layers ({sizes.pod_bytes >> 20} MiB of incompressible data in "
        f"{sizes.pod_files} files over a few thousand folders, apt packages in dpkg's status, "
        "pip and conda distributions with their metadata), made locally and cached; the line's "
        "v1 is built untimed, so the timed builds are v2, v3, ... on the full-sized parent",
        f"trivial: imagectl / raw <= {OVERHEAD_TARGET}; few seconds of work: <= {WORK_TARGET}",
    )
    image = pod_image(session.work, spec)
    section.rows.append(
        Row(
            "9 pod-sized",
            "the base image (size as docker gives it; regular files and folders by `find / "
            "-xdev` in a container)",
            f"{image.size / 1e9:.2f} GB, {image.files:,} files, {image.folders:,} folders, "
            f"{image.layers} layers",
            "(reported)",
            None,
        )
    )
    section.details += _image_details(image)
    setup = OverheadSetup("9 pod-sized", image.tag, ("podsized", "podwork"), sizes.pod_reps, "pod")
    measure_overhead(session, section, setup)
    return section


def _image_details(image: PodImage) -> list[str]:
    made = (
        f"made in this run in {image.made:.0f} s (generated and streamed into `docker load`)"
        if image.made is not None
        else "reused: the cached image's label matched the recipe (not made in this run)"
    )
    return [
        f"Base `{image.tag}` (`{image.image_id[:19]}`), {made}: {image.size:,} bytes, "
        f"{image.layers} layers, {image.files:,} regular files and {image.folders:,} folders in "
        f"all; the generator wrote {image.generated_files:,} files "
        f"({image.generated_bytes:,} bytes) on top of the rootfs. Not pushed: the lines' "
        "v1 is built FROM the local tag, later versions FROM the line's own head as in "
        f"benchmark 1, with its steps: `RUN echo <nonce> > /f` and `RUN {WORK_RUN} && echo "
        "<nonce> > /f`.",
        "",
    ]
