"""The archive proof on real signed apt repositories (tests/aptrepo.py) and the real gpgv."""

from __future__ import annotations

import functools
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagectl.adapters import gpg
from imagectl.core.aptkeys import apt_keyring
from imagectl.core.aptproof import InstalledPackage, Proof, prove
from imagectl.core.archive import Download
from imagectl.core.errors import ArchiveError

from .aptrepo import (
    Package,
    Repo,
    SigningKey,
    key_home,
    make_deb,
    make_key,
    make_repo,
    serving,
    sha256,
)
from .conftest import DEBIAN, docker

BASE = "http://mirror.test/repo"
HELLO = Package(name="hello-a", version="1.0-1")
NOARCH = Package(name="hello-data", version="2:3.1", architecture="all")


@pytest.fixture(scope="session")
def key() -> Iterator[SigningKey]:
    with key_home() as home:
        yield make_key(home)


@pytest.fixture(scope="session")
def other_key() -> Iterator[SigningKey]:
    with key_home() as home:
        yield make_key(home, name="someone else")


@pytest.fixture(scope="session")
def dists(key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("dists") / "repo", [HELLO, NOARCH], key=key)


def installed(*packages: Package, architecture: str = "amd64") -> tuple[InstalledPackage, ...]:
    return tuple(
        InstalledPackage(name=p.name, version=p.version, architecture=architecture)
        for p in packages
    )


def checked(
    downloads: Sequence[Download],
    delta: Sequence[InstalledPackage],
    keyrings: Sequence[bytes],
    *,
    detached: bool = False,
    now: datetime | None = None,
) -> Proof:
    verify_detached: Callable[[bytes, bytes], bool] | None = None
    if detached:
        verify_detached = functools.partial(gpg.verify_detached, keyrings=keyrings)
    return prove(
        downloads,
        delta,
        verify=lambda data: gpg.verify_clearsigned(data, keyrings),
        verify_detached=verify_detached,
        now=now,
    )


def apt_downloads(repo: Repo, index: str, *, base: str = BASE) -> list[Download]:
    """What `apt-get update && apt-get install` of every package fetches from a dists repo."""
    return [
        repo.download("dists/stable/InRelease", base=base),
        repo.download(index, base=base),
        *(repo.download(repo.deb_path(package), base=base) for package in repo.packages),
    ]


def test_a_fully_signed_chain_is_complete(dists: Repo, key: SigningKey) -> None:
    downloads = apt_downloads(dists, dists.index_dir() + "Packages.gz")
    proof = checked(downloads, installed(HELLO, NOARCH), [key.public])
    assert proof.complete, proof.missing
    assert [(f.kind, f.verified) for f in proof.files] == [
        ("index", True),
        ("index", True),
        ("deb", True),
        ("deb", True),
    ]
    assert [f.package for f in proof.files[2:]] == ["hello-a=1.0-1/amd64", "hello-data=2:3.1/all"]


def test_by_hash_indexes_are_verified_and_a_wrong_body_at_one_is_not(
    dists: Repo, key: SigningKey, tmp_path: Path
) -> None:
    for name in ("Packages", "Packages.gz", "Packages.xz"):
        proof = checked(apt_downloads(dists, dists.by_hash(name)), installed(HELLO), [key.public])
        assert proof.complete, (name, proof.missing)
        assert "/by-hash/SHA256/" in proof.files[1].url
    served = dists.download(dists.by_hash("Packages.xz"), base=BASE)
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"Package: hello-a\n")
    other = Download(url=served.url, sha256=sha256(wrong.read_bytes()), size=17, path=wrong)
    downloads = apt_downloads(dists, dists.by_hash("Packages.xz"))
    proof = checked([downloads[0], other, *downloads[2:]], installed(HELLO), [key.public])
    assert not proof.files[1].verified
    assert not proof.files[2].verified  # the deb is named only by the index that failed
    assert f"{served.url}: its hash differs from the one its signed Release lists" in proof.missing


def test_a_deb_other_than_its_signed_index_names_raises(
    dists: Repo, key: SigningKey, tmp_path: Path
) -> None:
    evil = make_deb(tmp_path, HELLO, content="not what was signed\n")
    downloads = apt_downloads(dists, dists.index_dir() + "Packages.xz")
    honest = downloads[2]
    served = Download(
        url=honest.url, sha256=sha256(evil.read_bytes()), size=evil.stat().st_size, path=evil
    )
    with pytest.raises(ArchiveError) as raised:
        checked([*downloads[:2], served], installed(HELLO), [key.public])
    assert honest.url in raised.value.message
    assert honest.sha256 in raised.value.message
    assert served.sha256 in raised.value.message
    assert "does not name" in raised.value.hint


def test_a_deb_of_an_unsigned_repo_is_missing(tmp_path: Path, key: SigningKey) -> None:
    repo = make_repo(tmp_path / "repo", [HELLO], key=None)
    downloads = [
        repo.download("dists/stable/Release", base=BASE),
        repo.download(repo.index_dir() + "Packages.gz", base=BASE),
        repo.download(repo.deb_path(HELLO), base=BASE),
    ]
    proof = checked(downloads, installed(HELLO), [key.public], detached=True)
    assert not proof.complete
    assert not any(f.verified for f in proof.files)
    assert proof.missing == tuple(
        sorted(
            (
                f"{BASE}/dists/stable/Release: a Release without signature (no Release.gpg was "
                "captured)",
                f"{BASE}/dists/stable/main/binary-amd64/Packages.gz: an index no verified "
                "Release names",
                f"{BASE}/{repo.deb_path(HELLO)}: a .deb no verified index names",
                "hello-a=1.0-1/amd64 installed but its .deb was not captured (downloaded over "
                "https or copied in?)",
            )
        )
    )


def test_release_with_release_gpg_is_verified_only_by_its_key(
    dists: Repo, key: SigningKey, other_key: SigningKey
) -> None:
    downloads = [
        dists.download("dists/stable/Release", base=BASE),
        dists.download("dists/stable/Release.gpg", base=BASE),
        dists.download(dists.index_dir() + "Packages", base=BASE),
        dists.download(dists.deb_path(HELLO), base=BASE),
    ]
    proof = checked(downloads, installed(HELLO), [key.public], detached=True)
    assert proof.complete, proof.missing
    assert all(f.verified for f in proof.files)
    stranger = checked(downloads, installed(HELLO), [other_key.public], detached=True)
    assert not stranger.complete
    assert not any(f.verified for f in stranger.files)


def test_an_inrelease_altered_after_signing_is_unverified(
    dists: Repo, key: SigningKey, tmp_path: Path
) -> None:
    """The signed text is gpgv's, so a hash swapped into the InRelease verifies nothing."""
    downloads = apt_downloads(dists, dists.index_dir() + "Packages")
    signed = downloads[0].path.read_bytes()
    listed = sha256((dists.root / dists.index_dir() / "Packages").read_bytes()).encode()
    assert listed in signed
    forged = tmp_path / "InRelease"
    forged.write_bytes(signed.replace(listed, b"0" * 64, 1))
    assert gpg.verify_clearsigned(forged.read_bytes(), [key.public]) is None
    assert gpg.verify_clearsigned(signed, [key.public]) is not None


def test_a_message_of_another_key_put_before_a_good_one_verifies_nothing(
    dists: Repo, key: SigningKey, other_key: SigningKey, tmp_path: Path
) -> None:
    """Two clearsigned messages in one InRelease: gpgv must not hand on the first (a stranger's,
    whose key it lacks) on the strength of the second; text around one message is dropped."""
    signed = (dists.root / "dists/stable/InRelease").read_bytes()
    stranger = make_repo(tmp_path / "stranger", [HELLO], key=other_key)
    planted = (stranger.root / "dists/stable/InRelease").read_bytes()
    assert gpg.verify_clearsigned(planted + signed, [key.public]) is None
    text = gpg.verify_clearsigned(b"SHA256:\n planted\n\n" + signed + b"\nplanted\n", [key.public])
    assert text is not None
    assert b"planted" not in text


def test_an_index_signed_by_another_key_is_unverified(dists: Repo, other_key: SigningKey) -> None:
    downloads = apt_downloads(dists, dists.index_dir() + "Packages.xz")
    proof = checked(downloads, installed(HELLO), [other_key.public])
    assert not any(f.verified for f in proof.files)
    assert (
        f"{BASE}/dists/stable/InRelease: its signature does not verify against the image's keyrings"
    ) in proof.missing
    assert f"{BASE}/{dists.deb_path(HELLO)}: a .deb no verified index names" in proof.missing


@pytest.mark.parametrize("folder", ["./", ""])
def test_a_flat_repo(tmp_path: Path, key: SigningKey, folder: str) -> None:
    """`deb URL ./`: apt asks for URL/./InRelease; Filename: ./x.deb is beside it."""
    repo = make_repo(tmp_path / "repo", [HELLO, NOARCH], key=key, layout="flat")
    downloads = [
        repo.download(name, base=BASE, url_path=f"{folder}{name}")
        for name in ("InRelease", "Packages.xz", HELLO.deb_name, NOARCH.deb_name)
    ]
    proof = checked(downloads, installed(HELLO, NOARCH), [key.public])
    assert proof.complete, proof.missing
    assert proof.files[0].url == f"{BASE}/{folder}InRelease"  # as captured


def test_a_delta_package_without_its_deb_is_missing(dists: Repo, key: SigningKey) -> None:
    downloads = apt_downloads(dists, dists.index_dir() + "Packages.xz")[:-1]  # no hello-data
    proof = checked(downloads, installed(HELLO, NOARCH), [key.public])
    assert proof.missing == (
        "hello-data=2:3.1/amd64 installed but its .deb was not captured (downloaded over https "
        "or copied in?)",
    )
    other_version = InstalledPackage(name="hello-a", version="1.0-2", architecture="amd64")
    assert not checked(downloads, [other_version], [key.public]).complete
    other_arch = InstalledPackage(name="hello-a", version="1.0-1", architecture="arm64")
    assert not checked(downloads, [other_arch], [key.public]).complete


def test_an_arch_all_deb_covers_any_architecture(dists: Repo, key: SigningKey) -> None:
    downloads = apt_downloads(dists, dists.index_dir() + "Packages.xz")
    for architecture in ("amd64", "arm64", "all"):
        proof = checked(downloads, installed(NOARCH, architecture=architecture), [key.public])
        assert proof.complete, proof.missing


def test_an_armored_keyring_verifies_and_stray_files_do_not_spoil_it(
    dists: Repo, key: SigningKey, other_key: SigningKey
) -> None:
    downloads = apt_downloads(dists, dists.index_dir() + "Packages.xz")
    keyrings = [b"a README in /usr/share/keyrings\n", b"", other_key.public, key.armored]
    assert checked(downloads, installed(HELLO), keyrings).complete
    assert not checked(downloads, installed(HELLO), [other_key.armored]).complete


def test_a_release_past_its_valid_until_is_unverified(tmp_path: Path, key: SigningKey) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    repo = make_repo(tmp_path / "repo", [HELLO], key=key, valid_until=until)
    downloads = apt_downloads(repo, repo.index_dir() + "Packages.gz")
    keyrings = [key.public]
    assert checked(downloads, installed(HELLO), keyrings, now=until - timedelta(minutes=1)).complete
    late = checked(downloads, installed(HELLO), keyrings, now=until + timedelta(minutes=1))
    assert not any(f.verified for f in late.files)
    assert any("InRelease: it was valid until" in line for line in late.missing), late.missing
    assert checked(downloads, installed(HELLO), keyrings).complete  # no `now`: not judged


def test_percent_escaped_urls_and_a_url_fetched_twice(tmp_path: Path, key: SigningKey) -> None:
    """apt asks for `1.0%7erc1` of a `~` version; an index fetched twice is judged twice."""
    tilde = Package(name="hello-b", version="1.0~rc1-1")
    repo = make_repo(tmp_path / "repo", [tilde], key=key)
    downloads = apt_downloads(repo, repo.index_dir() + "Packages.xz")
    escaped = Download(
        url=downloads[2].url.replace("~", "%7e"),
        sha256=downloads[2].sha256,
        size=downloads[2].size,
        path=downloads[2].path,
    )
    bad = tmp_path / "truncated"
    bad.write_bytes(downloads[1].path.read_bytes()[:10])
    cut = Download(url=downloads[1].url, sha256=sha256(bad.read_bytes()), size=10, path=bad)
    proof = checked([downloads[0], cut, downloads[1], escaped], installed(tilde), [key.public])
    assert [f.verified for f in proof.files] == [True, False, True, True]
    assert proof.files[3].package == "hello-b=1.0~rc1-1/amd64"
    assert proof.missing == (f"{cut.url}: its hash differs from the one its signed Release lists",)


def test_a_signature_by_a_key_expired_since_is_unverified(tmp_path: Path) -> None:
    """gpgv exits 0 and says VALIDSIG for an expired key; its EXPKEYSIG (not GOODSIG) refuses,
    as it is to apt: keys must be valid when the downloads are proved."""
    with key_home() as home:
        brief = make_key(home, expire="seconds=2")
        repo = make_repo(tmp_path / "repo", [HELLO], key=brief)
        downloads = apt_downloads(repo, repo.index_dir() + "Packages")
        assert checked(downloads, installed(HELLO), [brief.public]).complete
        time.sleep(3)
        proof = checked(downloads, installed(HELLO), [brief.public])
    assert not proof.complete
    assert not proof.files[0].verified


def test_apt_keyrings_are_those_apt_reads_without_retired_keys() -> None:
    trusted = (
        "/etc/apt/trusted.gpg",
        "/etc/apt/trusted.gpg.d/debian-archive-bookworm-stable.asc",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
        "/etc/apt/keyrings/vendor.gpg",
    )
    untrusted = (
        "/usr/share/keyrings/debian-archive-removed-keys.gpg",
        "/usr/share/keyrings/ubuntu-archive-removed-keys.gpg",
        "/etc/apt/trusted.gpg.d/README",
        "/etc/apt/trusted.gpg.d/old.gpg~",
        "/etc/apt/trusted.gpg.d/sub/deep.gpg",
        "/home/user/key.gpg",
    )
    assert all(apt_keyring(path) for path in trusted)
    assert not any(apt_keyring(path) for path in untrusted)


@pytest.mark.engine
def test_real_apt_accepts_both_layouts_and_what_it_fetched_proves(
    engine: str, key: SigningKey, tmp_path: Path
) -> None:
    """apt-get update and install over http from a dists repo (binary key) and a flat one
    (armored key); every download apt made proves, and covers what it installed."""
    served = tmp_path / "served"
    make_repo(served / "repo", [HELLO, NOARCH], key=key)
    flat = Package(name="hello-flat", version="0.1")
    make_repo(served / "flat", [flat], key=key, layout="flat")
    context = tmp_path / "context"
    context.mkdir()
    (context / "archive.gpg").write_bytes(key.public)
    (context / "archive.asc").write_bytes(key.armored)
    gateway = docker("network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}")
    tag = f"{engine}/imagectl-test/apt-{uuid.uuid4().hex[:10]}:latest"
    with serving(served, gateway) as (url, fetched):
        (context / "Dockerfile").write_text(
            f"FROM {DEBIAN}\n"
            "COPY archive.gpg archive.asc /etc/apt/keyrings/\n"
            "RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* \\\n"
            f" && echo 'deb [signed-by=/etc/apt/keyrings/archive.gpg] {url}/repo stable main' \\\n"
            "    > /etc/apt/sources.list.d/test.list \\\n"
            f" && echo 'deb [signed-by=/etc/apt/keyrings/archive.asc] {url}/flat ./' \\\n"
            "    >> /etc/apt/sources.list.d/test.list \\\n"
            " && apt-get update && apt-get install -y hello-a hello-data hello-flat \\\n"
            " && test -f /usr/share/hello-a/README && test -f /usr/share/hello-flat/README\n"
        )
        try:
            built = subprocess.run(
                ["docker", "buildx", "build", "--no-cache", "--progress", "plain", "-t", tag,
                 str(context)],
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
        finally:
            docker("rmi", tag, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "repo/dists/stable/InRelease" in fetched
    assert any("/by-hash/SHA256/" in path for path in fetched), fetched  # Acquire-By-Hash: yes
    assert any(path.startswith("flat/") and path.endswith("InRelease") for path in fetched)
    downloads = []
    for path in fetched:
        data = (served / path).read_bytes()
        downloads.append(
            Download(url=f"{url}/{path}", sha256=sha256(data), size=len(data), path=served / path)
        )
    proof = checked(downloads, installed(HELLO, NOARCH, flat), [key.public])
    assert proof.complete, proof.missing
    assert {f.package for f in proof.files if f.kind == "deb"} == {
        "hello-a=1.0-1/amd64",
        "hello-data=2:3.1/all",
        "hello-flat=0.1/amd64",
    }


def test_a_file_name_with_a_literal_percent_matches_the_url_apt_asks_for() -> None:
    """`apt-get download` names an epoch's colon `%3a` in the file; apt asks for `%253a`."""
    from imagectl.core.aptproof import _as_url, normalise  # noqa: PLC0415

    asked = normalise("http://h/r/./vim_2%253a9.0_all.deb")
    assert normalise("http://h/r/" + _as_url("vim_2%3a9.0_all.deb")) == asked
    assert normalise("http://h/r/" + "vim_2%3a9.0_all.deb") != asked  # unescaped: no match


def test_armored_keys_are_dearmored_as_gpg_does(key: SigningKey) -> None:
    """The keyrings' armor is decoded here (no gpg process per keyring): byte for byte what
    `gpg --dearmor` gives, for a key with armor headers and one without."""
    from imagectl.adapters.gpg import dearmored  # noqa: PLC0415

    plain = key.armored
    with_headers = plain.replace(
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: a header\n",
    )
    for armored in (plain, with_headers):
        expected = subprocess.run(
            ["gpg", "--dearmor"], input=armored, capture_output=True, check=True
        ).stdout
        assert dearmored(armored) == expected == key.public
    assert dearmored(b"not armor") == b""
