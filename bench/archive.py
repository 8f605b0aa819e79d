"""10. Input archive: `build next` of a realistic apt increment with the archive (capture proxy,
no cache, the proof) vs the same increment on a line with `[archive] enabled = false`,
alternated; the archive's size per version; `verify --offline` of the archived line.

The packages are real Debian debs (fetched once with `apt-get download`), served from a signed
flat repository on the engine's bridge, so that the figures measure imagectl and not a mirror's
mood; every version reinstalls them (`--reinstall`: apt fetches each .deb again)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    DEBIAN,
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

CAPTURE_TARGET = 1.05  # build next with the archive / without
PACKAGES = ("vim-runtime", "manpages", "fonts-dejavu-core", "python3-setuptools-whl",
            "libjs-jquery")  # fmt: skip  # arch all, no dependencies beyond the base: ~11 MB


def bench_archive(session: Session) -> Section:
    # An even count: each line goes first equally often (a build right after another apt
    # build ran ~0.4 s slower in either order, which an odd count credits to one side).
    reps = max(2, (session.sizes.overhead_reps - 1) // 2 * 2)
    section = Section(
        10,
        "Input archive",
        f"`build next` of an increment that runs `apt-get update && apt-get install --reinstall` "
        f"of {len(PACKAGES)} real Debian packages ({', '.join(PACKAGES)}) from a signed flat "
        "repository on the engine's bridge, on a Debian line with the archive (record proxy, "
        "`--no-cache`, InRelease/index/deb proof) vs one with `[archive] enabled = false`, "
        f"alternated, {reps} each; the archive's size; `verify --offline` of the archived line "
        "after `publish` stored its archives",
        f"with / without <= {CAPTURE_TARGET}",
    )
    repo_dir = session.work / "archive-repo"
    key = _signed_repo(repo_dir)
    with _serving(repo_dir, _gateway()) as url:
        lines = {"archived": session.repository("archived"), "plain": session.repository("plain")}
        root = new_repo(session.work / "archive", lines, base=DEBIAN)
        with (root / "images" / "plain.toml").open("a", encoding="utf-8") as file:
            file.write("[archive]\nenabled = false\n")
        for name in lines:
            (root / "increments" / name).mkdir(parents=True, exist_ok=True)
        counts = dict.fromkeys(lines, 0)

        def add(name: str) -> None:
            counts[name] += 1
            folder = root / "increments" / name / f"{counts[name]:04d}-apt"
            folder.mkdir()
            shutil.copy(key, folder / "vendor.gpg")
            write(folder / "Dockerfile.j2", _increment(url, counts[name]))
            git_commit(root, f"{name} {counts[name]}")

        timed_builds: dict[str, list[float]] = {name: [] for name in lines}
        for name in lines:  # v1 of each, untimed (and a warm-up of both paths)
            add(name)
            imagectl(root, "build", "next", name, "-q")
        for index in range(reps):
            order = ("archived", "plain") if index % 2 == 0 else ("plain", "archived")
            for name in order:
                add(name)
                timed_builds[name].append(imagectl(root, "build", "next", name, "-q"))
            say(
                f"10 archive: with {timed_builds['archived'][-1]:.2f} s, without "
                f"{timed_builds['plain'][-1]:.2f} s"
            )
        shown = json.loads(run([IMAGECTL, "-C", str(root), "archive", "archived", "--json"]).stdout)
        run([IMAGECTL, "-C", str(root), "publish", "archived", "-q"])
    # The repository is gone now: the offline rebuild has only the registry's archives.
    offline = timed([IMAGECTL, "-C", str(root), "verify", "--offline", "archived", "-q"])
    _report(section, timed_builds, shown, offline, versions=reps + 1)
    return section


def _report(
    section: Section,
    builds: dict[str, list[float]],
    shown: dict[str, object],
    offline: float,
    *,
    versions: int,
) -> None:
    ratio = median(builds["archived"]) / median(builds["plain"])
    section.rows.append(
        Row(
            "10 archive",
            f"`build next` with the archive / without (median of {len(builds['plain'])})",
            f"**{ratio:.2f}** ({median(builds['archived']):.2f} s / "
            f"{median(builds['plain']):.2f} s)",
            f"<= {CAPTURE_TARGET}",
            ratio <= CAPTURE_TARGET,
        )
    )
    files = shown["files"]
    assert isinstance(files, list)
    size = sum(int(f["size"]) for f in files)
    kinds = {kind: sum(1 for f in files if f["kind"] == kind) for kind in ("deb", "index")}
    section.rows.append(
        Row(
            "10 archive",
            "one version's archive (files captured, bytes)",
            f"{len(files)} files ({kinds['deb']} debs, {kinds['index']} indexes), "
            f"{size / 1e6:.1f} MB, {'complete' if shown['complete'] else 'INCOMPLETE'}",
            "(reported)",
            None,
        )
    )
    section.rows.append(
        Row(
            "10 archive",
            f"`verify --offline` of the archived line ({versions} versions rebuilt from the "
            "registry's archives, then compared)",
            f"{offline:.1f} s ({offline / versions:.1f} s a version)",
            "(reported)",
            None,
        )
    )
    section.details += [
        f"with the archive (s): {fmt_times(builds['archived'])}; median "
        f"{median(builds['archived']):.3f}",
        f"without (s): {fmt_times(builds['plain'])}; median {median(builds['plain']):.3f}",
        f"difference of medians: {median(builds['archived']) - median(builds['plain']):.3f} s "
        "a version",
        "",
    ]
    if ratio > CAPTURE_TARGET:
        extra = median(builds["archived"]) - median(builds["plain"])
        section.why.append(
            f"**10 archive (target <= {CAPTURE_TARGET}): {ratio:.2f}.** Capturing costs "
            f"{extra:.2f} s a version on a {median(builds['plain']):.2f} s build: the record "
            "proxy stores each body before passing it on, the build runs without cache, and "
            f"the proof reads the image's keyrings and checks {len(files)} files."
        )


def _increment(url: str, count: int) -> str:
    return (
        f"# apt step {count}\n"
        "COPY vendor.gpg /etc/apt/keyrings/vendor.gpg\n"
        "RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \\\n"
        f" && echo 'deb [signed-by=/etc/apt/keyrings/vendor.gpg] {url} ./' \\\n"
        "    > /etc/apt/sources.list.d/vendor.list \\\n"
        f" && apt-get update && apt-get install -y --reinstall {' '.join(PACKAGES)} \\\n"
        f" && rm -rf /var/lib/apt/lists/* && echo {nonce()} > /f\n"
    )


def _signed_repo(folder: Path) -> Path:
    """A flat repository of the real debs, signed by a fresh key; the key's path."""
    folder.mkdir(parents=True)
    run(["apt-get", "download", *PACKAGES], cwd=folder)
    home = Path(tempfile.mkdtemp(prefix="gpg-"))
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
           "--passphrase", ""]  # fmt: skip
    try:
        run([*gpg, "--quick-gen-key", "bench <bench@test.invalid>", "ed25519", "sign", "never"])
        key = folder.parent / "vendor.gpg"
        key.write_bytes(subprocess.run([*gpg, "--export"], capture_output=True, check=True).stdout)
        packages = run(["dpkg-scanpackages", "--multiversion", "."], cwd=folder).stdout
        write(folder / "Packages", packages)
        data = (folder / "Packages").read_bytes()
        release = (
            "Origin: bench\nLabel: bench\nArchitectures: all amd64\nSHA256:\n"
            f" {hashlib.sha256(data).hexdigest()} {len(data)} Packages\n"
        )
        write(folder / "Release", release)
        run([*gpg, "--clearsign", "--output", str(folder / "InRelease"), str(folder / "Release")])
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)
    return key


def _gateway() -> str:
    return run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"]
    ).stdout.strip()


@contextmanager
def _serving(folder: Path, host: str) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        (host, 0), functools.partial(Quiet, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
