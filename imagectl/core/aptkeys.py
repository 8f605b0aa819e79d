"""Which files of an image hold the keys its apt trusts: the keyrings an archive proof reads."""

from __future__ import annotations

from pathlib import PurePosixPath

from imagectl.core.layerfiles import FileSelection

# trusted.gpg and trusted.gpg.d are trusted for every source; /usr/share/keyrings and
# /etc/apt/keyrings hold the keys a source's `signed-by=` names.
KEYRING_PLACES = (
    "/etc/apt/trusted.gpg",
    "/etc/apt/trusted.gpg.d",
    "/usr/share/keyrings",
    "/etc/apt/keyrings",
)
KEYRING_SUFFIXES = (".gpg", ".asc")  # apt reads no other file of trusted.gpg.d


def apt_keyring(path: str) -> bool:
    """Whether the file at `path` (absolute, in the image) is a keyring apt may verify with.
    Debian's and Ubuntu's `*-removed-keys.gpg` in /usr/share/keyrings hold retired keys that no
    source names: a signature by one of them proves nothing."""
    file = PurePosixPath(path)
    if str(file) == KEYRING_PLACES[0]:
        return True
    if not any(file.parent == PurePosixPath(place) for place in KEYRING_PLACES[1:]):
        return False
    return file.suffix in KEYRING_SUFFIXES and not file.name.endswith("-removed-keys.gpg")


# Where an archive proof reads them: by `match`; by `find /` in a reader container (its paths
# begin with /); below these folders only in the engine's layer folders.
KEYRINGS = FileSelection(
    match=lambda path: apt_keyring(f"/{path}"),
    globs=tuple(f"{place}*" for place in KEYRING_PLACES),
    roots=tuple(place.lstrip("/") for place in KEYRING_PLACES),
)
