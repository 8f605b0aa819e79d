"""Real signed apt repositories in a folder, for the archive proof's tests and the engine's.

    key = make_key(tmp / "gpg")                        # a fresh ed25519 key, own GNUPGHOME
    repo = make_repo(tmp / "repo", [Package(name="hello-a", version="1.0-1")], key=key)
    repo.download("pool/main/h/hello-a/hello-a_1.0-1_amd64.deb", base="http://h/repo")

`layout="dists"` writes `dists/<suite>/InRelease` (and Release, Release.gpg), the component's
Packages, Packages.gz and Packages.xz with by-hash copies, and the debs under `pool/`: served
over http, apt takes it as `deb [signed-by=KEY] http://HOST/PATH <suite> main`. `layout="flat"`
writes everything in the one folder: `deb [signed-by=KEY] http://HOST/PATH ./`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import lzma
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

from imagectl.core.archive import Download

Layout = Literal["dists", "flat"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    name: str
    version: str
    architecture: str = "amd64"

    @property
    def deb_name(self) -> str:
        upstream = self.version.partition(":")[2] or self.version  # pool names drop the epoch
        return f"{self.name}_{upstream}_{self.architecture}.deb"


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    home: Path  # a GNUPGHOME holding the secret key
    fingerprint: str
    public: bytes  # binary (what .gpg keyrings hold)
    armored: bytes  # ASCII armored (what .asc keyrings hold)


@dataclass(frozen=True, slots=True, kw_only=True)
class Repo:
    root: Path
    layout: Layout
    suite: str
    component: str
    packages: tuple[Package, ...]
    files: tuple[str, ...] = field(default=())  # every file written, relative to root

    @property
    def release_dir(self) -> str:
        """Where InRelease is, relative to root ("" for flat)."""
        return f"dists/{self.suite}/" if self.layout == "dists" else ""

    def deb_path(self, package: Package) -> str:
        if self.layout == "flat":
            return package.deb_name
        return f"pool/{self.component}/{package.name[0]}/{package.name}/{package.deb_name}"

    def index_dir(self, architecture: str = "amd64") -> str:
        if self.layout == "flat":
            return ""
        return f"dists/{self.suite}/{self.component}/binary-{architecture}/"

    def by_hash(self, name: str = "Packages.xz") -> str:
        """The by-hash path of one index of the component."""
        digest = sha256((self.root / self.index_dir() / name).read_bytes())
        return f"{self.index_dir()}by-hash/SHA256/{digest}"

    def download(self, path: str, *, base: str, url_path: str | None = None) -> Download:
        """What the record proxy captures when apt fetches `path` from `base` (a file's URL may
        differ from its path: `url_path`, e.g. "./InRelease" of a flat repo)."""
        stored = self.root / path
        data = stored.read_bytes()
        url = f"{base.rstrip('/')}/{url_path if url_path is not None else path}"
        return Download(url=url, sha256=sha256(data), size=len(data), path=stored)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(*command: str, env: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(command, capture_output=True, check=False, env=env)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {done.stderr.decode()}")
    return done.stdout


@contextmanager
def key_home() -> Iterator[Path]:
    """A GNUPGHOME with a short path (the agent's socket lives in it, and a socket path is
    limited to 108 bytes, which a pytest tmp_path can pass); the agent is stopped after."""
    home = Path(tempfile.mkdtemp(prefix="gpg-"))
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def make_key(
    home: Path, *, name: str = "imagectl test archive", expire: str = "never"
) -> SigningKey:
    """A fresh signing key in `home`; `expire` as gpg takes it ("never", "1d", "seconds=60")."""
    gpg = ("gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback")
    _run(*gpg, "--passphrase", "", "--quick-gen-key", f"{name} <archive@test.invalid>",
         "ed25519", "sign", expire)  # fmt: skip
    listing = _run(*gpg, "--with-colons", "--list-secret-keys").decode()
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
    )
    return SigningKey(
        home=home,
        fingerprint=fingerprint,
        public=_run(*gpg, "--export", fingerprint),
        armored=_run(*gpg, "--export", "--armor", fingerprint),
    )


def make_deb(folder: Path, package: Package, *, content: str = "") -> Path:
    """A tiny real .deb: one file, /usr/share/<name>/README."""
    build = folder / f"{package.name}-{package.version}-{package.architecture}.build"
    (build / "DEBIAN").mkdir(parents=True)
    (build / "usr" / "share" / package.name).mkdir(parents=True)
    (build / "usr" / "share" / package.name / "README").write_text(
        content or f"{package.name} {package.version}\n"
    )
    (build / "DEBIAN" / "control").write_text(
        f"Package: {package.name}\nVersion: {package.version}\n"
        f"Architecture: {package.architecture}\nMaintainer: Tests <tests@test.invalid>\n"
        f"Description: a package of imagectl's archive tests\n"
    )
    deb = folder / package.deb_name
    deb.parent.mkdir(parents=True, exist_ok=True)
    _run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(build), str(deb))
    shutil.rmtree(build)
    return deb


def make_repo(
    root: Path,
    packages: Sequence[Package],
    *,
    key: SigningKey | None,
    layout: Layout = "dists",
    suite: str = "stable",
    component: str = "main",
    valid_until: datetime | None = None,
    now: datetime | None = None,
) -> Repo:
    """A repository of `packages`, signed by `key` (InRelease and Release.gpg), or unsigned
    (only Release) when `key` is None."""
    repo = Repo(root=root, layout=layout, suite=suite, component=component,
                packages=tuple(packages))  # fmt: skip
    written: list[str] = []
    entries = []
    for package in packages:
        path = repo.deb_path(package)
        deb = make_deb((root / path).parent, package)
        written.append(path)
        data = deb.read_bytes()
        filename = f"./{path}" if layout == "flat" else path
        entries.append(
            f"Package: {package.name}\nVersion: {package.version}\n"
            f"Architecture: {package.architecture}\nMaintainer: Tests <tests@test.invalid>\n"
            f"Filename: {filename}\nSize: {len(data)}\nSHA256: {sha256(data)}\n"
            f"Description: a package of imagectl's archive tests\n"
        )
    packages_text = "\n".join(entries).encode()
    indexes = {
        "Packages": packages_text,
        "Packages.gz": gzip.compress(packages_text, mtime=0),
        "Packages.xz": lzma.compress(packages_text),
    }
    release_dir = root / repo.release_dir
    listed: list[tuple[str, bytes]] = []
    for name, data in indexes.items():
        path = f"{repo.index_dir()}{name}"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
        written.append(path)
        if layout == "dists":
            hashed = root / repo.index_dir() / "by-hash" / "SHA256" / sha256(data)
            hashed.parent.mkdir(parents=True, exist_ok=True)
            hashed.write_bytes(data)
            written.append(str(hashed.relative_to(root)))
        listed.append((path.removeprefix(repo.release_dir), data))
    release = _release_text(repo, listed, valid_until=valid_until, now=now)
    release_dir.mkdir(parents=True, exist_ok=True)
    (release_dir / "Release").write_bytes(release)
    written.append(f"{repo.release_dir}Release")
    if key is not None:
        gpg = ("gpg", "--homedir", str(key.home), "--batch", "--yes", "--pinentry-mode",
               "loopback", "--passphrase", "", "--local-user", key.fingerprint)  # fmt: skip
        source = str(release_dir / "Release")
        _run(*gpg, "--clearsign", "--output", str(release_dir / "InRelease"), source)
        _run(*gpg, "--detach-sign", "--armor", "--output", str(release_dir / "Release.gpg"), source)
        written += [f"{repo.release_dir}InRelease", f"{repo.release_dir}Release.gpg"]
    return Repo(root=root, layout=layout, suite=suite, component=component,
                packages=tuple(packages), files=tuple(written))  # fmt: skip


def _release_text(
    repo: Repo,
    listed: Sequence[tuple[str, bytes]],
    *,
    valid_until: datetime | None,
    now: datetime | None,
) -> bytes:
    date = now or datetime.now(UTC)
    lines = ["Origin: imagectl-tests", "Label: imagectl-tests"]
    if repo.layout == "dists":
        lines += [f"Suite: {repo.suite}", f"Codename: {repo.suite}"]
    lines.append(f"Date: {_rfc2822(date)}")
    if valid_until is not None:
        lines.append(f"Valid-Until: {_rfc2822(valid_until)}")
    lines.append("Architectures: amd64")
    if repo.layout == "dists":
        lines += [f"Components: {repo.component}", "Acquire-By-Hash: yes"]
    lines.append("SHA256:")
    lines += [f" {sha256(data)} {len(data):>8} {path}" for path, data in listed]
    return ("\n".join(lines) + "\n").encode()


def _rfc2822(moment: datetime) -> str:
    """As Debian's archive writes it: "Sat, 09 Nov 2024 10:06:23 UTC" (locale-free)."""
    return format_datetime(moment.astimezone(UTC), usegmt=True).replace(" GMT", " UTC")


@contextmanager
def serving(folder: Path, host: str) -> Iterator[tuple[str, list[str]]]:
    """`folder` over http on `host` (a free port): its URL, and the paths served with a 200."""
    fetched: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            request = re.match(r"GET /(\S+) ", f"{args[0]}") if args else None
            if request and len(args) > 1 and f"{args[1]}" == "200":
                fetched.append(request.group(1))

    server = http.server.ThreadingHTTPServer(
        (host, 0), functools.partial(Handler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}", fetched
    finally:
        server.shutdown()
        server.server_close()
