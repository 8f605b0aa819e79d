"""The gpg adapter: does an apt Release file's signature verify against an image's keyrings?

One runner, `_gpg`, runs `gpgv` (armored keyrings are dearmored here first) in a throwaway home
folder, so neither the user's GnuPG home nor an agent is involved. The verdict is read from
gpgv's status lines, as apt reads it: an InRelease signed by several keys verifies when one of
them is a good signature from a keyring key and none is bad; a missing key for another
signature is not a failure (Debian signs with two or three keys at once), an expired or revoked
key is (gpgv then exits 0 all the same, but says EXPKEYSIG or REVKEYSIG instead of GOODSIG).
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagectl.adapters.process import last_line, run
from imagectl.core.errors import ArchiveError

GPG_TIMEOUT = 60.0
ARMOR = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"


def verify_clearsigned(data: bytes, keyrings: Sequence[bytes]) -> bytes | None:
    """The text an InRelease signs, or None when no key of `keyrings` verifies it. The text is
    gpgv's own `--output`, never the file cut apart here: what gpgv checked is what is read."""
    with tempfile.TemporaryDirectory(prefix="imagectl-gpg-") as folder:
        home = Path(folder)
        signed = home / "InRelease"
        signed.write_bytes(data)
        files = _keyring_files(home, keyrings)
        for number, tried in enumerate(_attempts(files)):
            output = home / f"signed-{number}"
            if _good(home, tried, "--output", str(output), str(signed)) and output.exists():
                return output.read_bytes()
        return None


def verify_detached(data: bytes, signature: bytes, keyrings: Sequence[bytes]) -> bool:
    """Whether `signature` (a Release.gpg) is a good signature of `data` (its Release)."""
    with tempfile.TemporaryDirectory(prefix="imagectl-gpg-") as folder:
        home = Path(folder)
        (home / "Release").write_bytes(data)
        (home / "Release.gpg").write_bytes(signature)
        args = (str(home / "Release.gpg"), str(home / "Release"))
        return any(_good(home, tried, *args) for tried in _attempts(_keyring_files(home, keyrings)))


def _attempts(files: tuple[Path, ...]) -> Iterator[tuple[Path, ...]]:
    """Every keyring at once (one gpgv: the usual case), then each alone: one unreadable file
    (a stray README in /usr/share/keyrings) makes gpgv fail with every keyring it is given."""
    if not files:
        return
    yield files
    if len(files) > 1:
        yield from ((file,) for file in files)


def _good(home: Path, keyrings: tuple[Path, ...], *args: str) -> bool:
    """Whether one of `keyrings` verifies."""
    # Exit code 2 also means "one of several signatures has no key": the status lines decide.
    given = [flag for keyring in keyrings for flag in ("--keyring", str(keyring))]
    status = _gpg("gpgv", "--homedir", str(home), "--status-fd", "1", *given, *args)
    words = {line.split()[1] for line in status.splitlines() if line.startswith("[GNUPG:] ")}
    return "GOODSIG" in words and "VALIDSIG" in words and "BADSIG" not in words


def _keyring_files(home: Path, keyrings: Sequence[bytes]) -> tuple[Path, ...]:
    """Each keyring as a file gpgv can read: binary as it is, armored ones dearmored."""
    paths = []
    for number, keyring in enumerate(keyrings):
        if not keyring.strip():
            continue
        path = home / f"keyring-{number}.gpg"
        if keyring.lstrip().startswith(ARMOR):
            binary = dearmored(keyring)
            if not binary:
                continue  # not armor that can be read: it verifies nothing, like a stray file
            path.write_bytes(binary)
        else:
            path.write_bytes(keyring)
        paths.append(path)
    return tuple(paths)


def dearmored(data: bytes) -> bytes:
    """The binary keys of ASCII-armored key blocks (RFC 4880 section 6.2), as `gpg --dearmor`
    gives them, without a gpg process per keyring: the headers up to the blank line and the
    `=XXXX` checksum line left out, the base64 between decoded; b"" for what is not armor."""
    found = bytearray()
    lines = data.decode("ascii", "replace").splitlines()
    inside = in_headers = False
    body: list[str] = []
    for line in (raw.strip() for raw in lines):
        if line.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"):
            inside, in_headers, body = True, True, []
        elif line.startswith("-----END PGP PUBLIC KEY BLOCK-----") and inside:
            try:
                found += base64.b64decode("".join(body), validate=True)
            except binascii.Error:
                return b""
            inside = False
        elif inside and in_headers:
            in_headers = bool(line) and ":" in line  # headers end at the blank line
            if not in_headers and line:
                body.append(line)  # no headers and no blank line: the data starts here
        elif inside and not line.startswith("="):
            body.append(line)
    return bytes(found)


def _gpg(*command: str) -> str:
    """The runner: one gpg program; its stdout, or an ArchiveError naming what ran. Exit codes
    0 (good), 1 (bad signature) and 2 (no key, unreadable input) are verdicts, not failures."""
    try:
        done = run(command, timeout=GPG_TIMEOUT)
    except FileNotFoundError as error:
        raise ArchiveError(
            f"{command[0]} is not installed: apt signatures cannot be checked.",
            hint="Install gpgv and gpg (Debian: apt-get install gpgv gpg).",
        ) from error
    if done.returncode not in (0, 1, 2):
        raise ArchiveError(
            f"{command[0]} exited with code {done.returncode}: {last_line(done.stderr)}",
            hint="A keyring of the image may be unreadable; the details have gpg's words.",
            details=done.stderr,
        )
    return done.stdout
