"""`imagectl site`: the history site from fixture locks and package records, its links, its
escaping, its incremental rewrite, and the pages opened in a real browser (Debian's headless
Chromium) served over HTTP, where every request the browser makes must be answered."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from imagectl.app import sites
from imagectl.app.project import open_project
from imagectl.core.packages import PackageRecord, VersionDelta

from .conftest import imagectl
from .helpers import write
from .lock_fixtures import PIP, digest, version, write_line

EVIL = "<script>alert(1)</script>"


def fixture(root: Path, versions: int = 3) -> None:
    """pod: v1..v{versions}, v2 skipped, openssl upgraded in v3, a pip package from v1; its
    increments on disk; a summary with markup in it. old: no package record."""
    built = [
        version("pod", 1, digest=digest("pod-published"), summary=EVIL),
        version("pod", 2, skipped=True, reason="burned"),
        *(version("pod", n) for n in range(3, versions + 1)),
    ]
    deltas = {
        1: VersionDelta(added=(f"pip:Foo_Bar 1.0 {PIP}",)),
        2: VersionDelta(),
        3: VersionDelta(
            added=("openssl 3.0.13-0ubuntu3.4 amd64",),
            removed=("openssl 3.0.13-0ubuntu3.1 amd64",),
        ),
    } | {n: VersionDelta() for n in range(4, versions + 1)}
    record = PackageRecord(base=("openssl 3.0.13-0ubuntu3.1 amd64",), versions=deltas)
    write_line(root, "pod", tuple(built), record)
    for n in range(1, versions + 1):
        write(
            root / "increments" / "pod" / f"{n:04d}-x.Dockerfile.j2",
            "# x\nRUN echo {{ version }}\n",
        )
    write_line(root, "old", (version("old", 1),), None)


def site(root: Path, *args: str) -> dict[str, int | str]:
    result = imagectl(root, "site", "--json", *args)
    assert result.code == 0, result.stdout + result.stderr
    made: dict[str, int | str] = json.loads(result.stdout)
    return made


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)
            if name == "content" and value and "url=" in value:
                self.targets.append(value.split("url=", 1)[1])


def test_every_page_is_there_and_every_link_resolves(tmp_path: Path) -> None:
    fixture(tmp_path)
    made = site(tmp_path)
    out = tmp_path / "site"
    assert made["out"] == str(out)
    pod = out / "lines" / "pod"
    for name in ("index.html", "v1.html", "v3.html", "packages.html", "compare-v1.html"):
        assert (pod / name).is_file(), name
    assert not (pod / "v2.html").exists()  # skipped: no image, no page
    assert (out / "digests" / f"{digest('pod-published').replace(':', '-')}.html").is_file()
    pages = sorted(out.rglob("*.html"))
    assert len(pages) == int(made["pages"]) - 1  # and style.css
    for page in pages:
        links = Links()
        links.feed(page.read_text(encoding="utf-8"))
        for target in links.targets:
            assert "://" not in target, (page, target)  # nothing from anywhere else
            if target == "data:,":
                continue  # the empty icon: so a browser asks for no favicon.ico
            assert (page.parent / target.split("#")[0]).resolve().is_file(), (page, target)


def test_what_each_page_says(tmp_path: Path) -> None:
    fixture(tmp_path)
    site(tmp_path)
    pod = tmp_path / "site" / "lines" / "pod"
    v1 = (pod / "v1.html").read_text()
    assert "RUN echo 1" in v1  # the increment as rendered for v1
    assert "1 deb, 1 pip" in v1
    line = (pod / "index.html").read_text()
    assert "skipped: burned" in line
    assert "<svg" in line
    assert "layers (dashed" in line
    packages = (pod / "packages.html").read_text()
    assert "openssl 3.0.13-0ubuntu3.1 amd64</td><td>v1</td>" in packages
    assert "openssl 3.0.13-0ubuntu3.4 amd64</td><td>v3</td>" in packages
    compare = (pod / "compare-v1.html").read_text()
    assert "3.0.13-0ubuntu3.1 → 3.0.13-0ubuntu3.4" in compare
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="lines/old/index.html"' in index
    assert 'href="lines/pod/index.html"' in index


def test_names_with_markup_are_escaped_never_injected(tmp_path: Path) -> None:
    fixture(tmp_path)
    site(tmp_path)
    for page in (tmp_path / "site").rglob("*.html"):
        text = page.read_text()
        assert "<script" not in text, page
    assert "&lt;script&gt;" in (tmp_path / "site" / "lines" / "pod" / "index.html").read_text()


def test_a_second_run_renders_only_what_changed(tmp_path: Path) -> None:
    fixture(tmp_path, versions=5)
    first = site(tmp_path)
    assert first["rendered"] == first["pages"]
    assert site(tmp_path)["rendered"] == 0
    pod = tmp_path / "site" / "lines" / "pod"
    kept = {name: (pod / name).stat().st_ino for name in ("v1.html", "v3.html", "v4.html")}
    v5 = (pod / "v5.html").stat().st_ino
    fixture(tmp_path, versions=6)  # one version more
    again = site(tmp_path)
    assert 0 < int(again["rendered"]) < int(again["pages"])
    # the old versions' pages are the very files of the site before (linked, not rendered);
    # v5's has a link to v6 now, so it is new
    assert {name: (pod / name).stat().st_ino for name in kept} == kept
    assert (pod / "v5.html").stat().st_ino != v5
    assert 'href="v6.html"' in (pod / "v5.html").read_text()
    assert (pod / "v6.html").is_file()


def test_an_interrupted_site_leaves_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture(tmp_path)
    site(tmp_path)
    out = tmp_path / "site"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fixture(tmp_path, versions=4)

    def broken(*_args: object, **_kwargs: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(sites, "version_page", broken)
    with pytest.raises(KeyboardInterrupt):
        sites.build_site(open_project(tmp_path), out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []


@pytest.mark.parametrize("case", ["file", "foreign", "no parent"])
def test_an_output_folder_that_cannot_be_used_is_refused(tmp_path: Path, case: str) -> None:
    fixture(tmp_path)
    out = tmp_path / "out"
    if case == "file":
        out.write_text("x")
    elif case == "foreign":
        (out / "notes.txt").parent.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        out = tmp_path / "no" / "out"
    result = imagectl(tmp_path, "site", "--out", str(out))
    assert result.code == 1
    assert str(out if case != "no parent" else out.parent) in result.stderr
    if case == "foreign":
        assert (out / "notes.txt").read_text() == "mine"  # never deleted


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The fixture's site over HTTP on 127.0.0.1, with every request and its status."""
    fixture(tmp_path)
    site(tmp_path)
    seen: list[tuple[str, int]] = []
    root = str(tmp_path / "site")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=root, **kwargs)  # type: ignore[arg-type]

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            seen.append((self.path, int(code)))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    if browser is None:  # scripts/test installs Debian's chromium
        pytest.fail("chromium is not installed: run scripts/test, which installs it")
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_pages_load_in_a_real_browser(
    served: tuple[str, list[tuple[str, int]]], tmp_path: Path
) -> None:
    base, seen = served
    for path, expected in (
        ("/index.html", "Image lines"),
        ("/lines/pod/index.html", "built on"),
        ("/lines/pod/v3.html", "Changed against v1"),
        ("/lines/pod/compare-v1.html", "compared with v3"),
    ):
        done = chromium("--dump-dom", base + path)
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout, path
    shot = tmp_path / "line.png"
    done = chromium(
        "--window-size=1200,900", f"--screenshot={shot}", base + "/lines/pod/index.html"
    )
    assert done.returncode == 0, done.stderr
    assert not_blank(shot.read_bytes())
    assert seen, "the browser asked for nothing"
    assert all(status == 200 for _, status in seen), seen  # the style sheet too
    assert ("/style.css", 200) in seen


def not_blank(png: bytes) -> bool:
    """A PNG whose pixels are not all one value (a page that drew something)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    data, position = b"", 8
    while position < len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    pixels = zlib.decompress(data)
    return len(set(pixels[1000:200000])) > 2


def test_workers_write_the_same_site_and_a_failing_one_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture(tmp_path, versions=8)
    alone = tmp_path / "alone"
    sites.build_site(open_project(tmp_path), alone)
    monkeypatch.setattr(sites, "PER_WORKER", 1)  # a worker per core even for a few pages
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    forked = tmp_path / "forked"
    sites.build_site(open_project(tmp_path), forked)
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(forked) for p in forked.rglob("*") if p.is_file())
    assert all((alone / f).read_bytes() == (forked / f).read_bytes() for f in files)

    def broken(*_args: object, **_kwargs: object) -> str:
        raise ValueError("a page that cannot be made")

    fixture(tmp_path, versions=9)
    monkeypatch.setattr(sites, "version_page", broken)
    before = {p: p.read_bytes() for p in forked.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="a page that cannot be made"):
        sites.build_site(open_project(tmp_path), forked)
    assert {p: p.read_bytes() for p in forked.rglob("*") if p.is_file()} == before
