"""Finding a line's numbered increments on disk and hashing what each one is made of."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from imagectl.core.config import RepositoryLayout
from imagectl.core.errors import ConfigError
from imagectl.core.model import Increment, IncrementTest, TestKind
from imagectl.core.templates import decode_template

TEMPLATE_SUFFIX = ".Dockerfile.j2"
FOLDER_TEMPLATE = "Dockerfile.j2"
# A test's file name after the increment's stem (beside a file increment: NNNN-name.test.sh),
# or the whole name inside a folder increment (test.sh); `.j2` makes it a template.
TEST_NAMES: dict[str, TestKind] = {
    "test.sh": "test",
    "test.sh.j2": "test",
    "start-test.sh": "start-test",
    "start-test.sh.j2": "start-test",
}
# Inside a folder increment the tests are no context files: never hashed, never sent to a build.
FOLDER_TESTS = frozenset(TEST_NAMES)
NUMBERED = re.compile(r"^([0-9]{4})-(.+)$")  # ASCII digits: int() would also take others
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
MAX_CONTEXT_BYTES = 512 * 1024 * 1024  # a build context larger than this is a mistake
# What editors leave beside the files they edit: backups (`x~`, `x.bak`), vim swap files,
# emacs auto-saves (`#x#`); dot files (`.x.swp`, emacs' `.#x` locks) are skipped anyway. They
# are never increments, so they are passed over rather than refused.
EDITOR_LEFTOVER = re.compile(r"(~|\.bak|\.sw[opx])$|^#.*#$")


def discover_increments(layout: RepositoryLayout, line: str) -> tuple[Increment, ...]:
    """The line's increments sorted by number. Numbering is validated by the planner."""
    folder = layout.line_increments_dir(line)
    if not folder.is_dir():
        return ()
    prefix = folder.relative_to(layout.root)
    root = layout.increments_dir.resolve()
    found: list[Increment] = []
    tests: dict[str, list[IncrementTest]] = {}  # beside file increments, by increment name
    # os.scandir and one read per file: `plan` walks thousands of increments on every call.
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or EDITOR_LEFTOVER.search(entry.name):
                continue
            numbered = NUMBERED.match(entry.name)
            test = None if entry.name.endswith(TEMPLATE_SUFFIX) else _test_beside(entry.name)
            if test is not None and numbered:
                rel = prefix / entry.name
                _check_test_file(Path(entry.path), rel, root)
                tests.setdefault(test[0], []).append(
                    IncrementTest(path=rel, kind=test[1], template=rel.name.endswith(".j2"))
                )
                continue
            if not numbered:
                if entry.name.endswith(TEMPLATE_SUFFIX):
                    raise ConfigError(
                        "is named like an increment but does not start with a number of four "
                        "ASCII digits (NNNN-), so it would never be built.",
                        hint=f"Rename it to NNNN-<name>{TEMPLATE_SUFFIX} with the next free "
                        "number, or move it out of the line's folder.",
                        path=prefix / entry.name,
                    )
                continue  # README files and the like live beside increments
            rel = prefix / entry.name
            if entry.is_symlink():  # d_type: no system call for the usual plain file
                _check_inside(Path(entry.path), rel, root)
            found.append(_read_increment(entry, numbered, rel, root=root))
    return tuple(sorted(_with_tests(found, tests, prefix), key=lambda i: (i.number, i.name)))


def _test_beside(name: str) -> tuple[str, TestKind] | None:
    """(increment name, kind) of a test file beside a file increment, e.g. 0004-sshd.test.sh."""
    for suffix, kind in TEST_NAMES.items():
        if name.endswith(f".{suffix}") and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1], kind
    return None


def _with_tests(
    found: list[Increment], tests: dict[str, list[IncrementTest]], prefix: Path
) -> list[Increment]:
    """The file increments with the tests beside them; a test of no increment is refused."""
    by_name = {increment.name: increment for increment in found}
    for name, beside in sorted(tests.items()):
        increment = by_name.get(name)
        if increment is None or increment.is_folder:
            raise ConfigError(
                f"is a test of no file increment: there is no {name}{TEMPLATE_SUFFIX} beside it.",
                hint="Name a test after its increment (NNNN-name.test.sh beside "
                "NNNN-name.Dockerfile.j2; a folder increment keeps its tests inside, as test.sh), "
                "or remove it.",
                path=beside[0].path,
            )
        by_name[name] = replace(increment, tests=_ordered(beside))
    return list(by_name.values())


def _ordered(tests: list[IncrementTest]) -> tuple[IncrementTest, ...]:
    """Plain tests before start-up tests; one file of each kind per increment."""
    ordered = sorted(tests, key=lambda t: (t.kind != "test", t.path.name))
    for first, second in itertools.pairwise(ordered):
        if first.kind == second.kind:
            raise ConfigError(
                f"two {first.kind}s of one increment: {first.path.name} and {second.path.name}.",
                hint="Keep one of them (a template, *.j2, or a plain script).",
                path=second.path,
            )
    return tuple(ordered)


def _check_test_file(path: Path, rel: Path, root: Path) -> None:
    """A test is a regular file within increments/: it is read, hashed and mounted as it is."""
    _check_inside(path, rel, root)
    if not path.is_file():
        raise ConfigError(
            "is named like a test but is not a regular file.",
            hint="A test is a POSIX shell script (or a Jinja template of one); replace what is "
            "there with one, or remove it.",
            path=rel,
        )


def _check_inside(path: Path, rel: Path, root: Path) -> None:
    """A symlinked increment or template must stay under increments/: the lock hashes content,
    and a target outside can change without the line's history showing it."""
    if not path.is_symlink():
        return
    if not path.resolve().is_relative_to(root):
        raise ConfigError(
            f"is a symlink to {os.readlink(path)}, outside increments/: the lock records a hash "
            "of the increment's content, and a link's target can change without the line's "
            "history showing it.",
            hint="Copy the file here instead of linking it (links within increments/ are fine).",
            path=rel,
        )


def _read_increment(
    found: os.DirEntry[str], match: re.Match[str], rel: Path, *, root: Path
) -> Increment:
    # A plain file is read by its path string: `plan` meets thousands, and a Path each costs.
    is_folder = found.is_dir()
    entry = Path(found.path) if is_folder else None
    number = int(match.group(1))
    template: Path | str
    if entry is not None:
        stem = match.group(2)
        template, template_rel = entry / FOLDER_TEMPLATE, rel / FOLDER_TEMPLATE
        if not template.is_file():
            raise ConfigError(
                f"the increment folder has no {FOLDER_TEMPLATE}.",
                hint=f"Add {rel}/{FOLDER_TEMPLATE} with the increment's instructions.",
                path=rel,
            )
    elif found.name.endswith(TEMPLATE_SUFFIX):
        stem = match.group(2).removesuffix(TEMPLATE_SUFFIX)
        template, template_rel = found.path, rel
    else:
        raise ConfigError(
            "is numbered like an increment but is neither a *.Dockerfile.j2 file nor a folder.",
            hint=f"Rename it to {match.group(1)}-<name>{TEMPLATE_SUFFIX} or move it away.",
            path=rel,
        )
    if not NAME.match(stem):
        raise ConfigError(
            f"increment name {stem!r} is not valid: it becomes part of paths, commands and "
            "the lock.",
            hint="Rename it with lowercase ASCII letters, digits, '.', '_' and '-' after the "
            "number (no spaces), e.g. 0004-my-step.Dockerfile.j2.",
            path=rel,
        )
    if entry is not None:
        _check_inside(Path(template), template_rel, root)
    raw = _template_bytes(template, template_rel)
    text = decode_template(raw, template_rel)
    return Increment(
        number=number,
        name=f"{match.group(1)}-{stem}",
        path=rel,
        template=template_rel,
        is_folder=is_folder,
        source_hash=_hash_file_bytes(raw)
        if entry is None
        else hash_increment(entry, skip=FOLDER_TESTS),
        context_hash=(
            "" if entry is None else hash_increment(entry, skip={FOLDER_TEMPLATE, *FOLDER_TESTS})
        ),
        summary=summarize(text),
        tests=() if entry is None else _folder_tests(entry, rel, root),
    )


def _folder_tests(entry: Path, rel: Path, root: Path) -> tuple[IncrementTest, ...]:
    found = []
    for name, kind in TEST_NAMES.items():
        path = entry / name
        if path.exists() or path.is_symlink():
            _check_test_file(path, rel / name, root)
            found.append(IncrementTest(path=rel / name, kind=kind, template=name.endswith(".j2")))
    return _ordered(found)


def _template_bytes(template: Path | str, shown: Path) -> bytes:
    """The file's bytes, in one open: non-blocking, so that a FIFO is refused, not waited on."""
    try:
        fd = os.open(template, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror}).", path=shown) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"is {_kind(info.st_mode)}, not a regular file.",
                hint="A template is a text file; remove what is there and write one.",
                path=shown,
            )
        chunks = []
        while chunk := os.read(fd, max(info.st_size, 1) + 1):
            chunks.append(chunk)
            if len(chunks) == 1 and len(chunk) <= info.st_size:
                break  # a short read of a regular file is its end: no second read to learn it
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"cannot be read ({exc.strerror}).", path=shown) from exc
    finally:
        os.close(fd)


def _hash_file_bytes(raw: bytes) -> str:
    digest = hashlib.sha256(b"file\0" + raw).hexdigest()
    return f"sha256:{digest}"


def hash_increment(entry: Path, *, skip: Collection[str] = ()) -> str:
    """sha256 over the template and, for a folder, every context file (path, mode, bytes);
    `skip` leaves out top-level files (its tests; the template too, for the context alone)."""
    digest = hashlib.sha256()
    if entry.is_file():
        digest.update(b"file\0")
        digest.update(entry.read_bytes())
        return f"sha256:{digest.hexdigest()}"
    for path in context_files(entry):
        rel = path.relative_to(entry).as_posix()
        if rel in skip:
            continue
        digest.update(rel.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link\0" + os.readlink(path).encode() + b"\0")
            continue
        executable = os.access(path, os.X_OK)
        digest.update(b"x\0" if executable else b"-\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


def context_files(folder: Path) -> list[Path]:
    """Every file of a folder increment, sorted; refuses links that escape it and huge contexts."""
    root = folder.resolve()
    files: list[Path] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    raise ConfigError(
                        f"the symlink {path.name} points outside the increment folder "
                        f"(to {target}).",
                        hint="Copy the file into the increment folder instead of linking it.",
                        path=path,
                    )
            else:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode):  # reading a FIFO would block for ever
                    raise ConfigError(
                        f"is {_kind(info.st_mode)}: a build context holds only regular "
                        "files, folders and links.",
                        hint="Remove it from the increment folder; create it in a RUN step "
                        "if the image needs it.",
                        path=path,
                    )
                total += info.st_size
                if total > MAX_CONTEXT_BYTES:
                    raise ConfigError(
                        f"the increment folder holds more than {MAX_CONTEXT_BYTES >> 20} MiB.",
                        hint="Fetch large files in a RUN step or move them out of the context.",
                        path=folder,
                    )
            files.append(path)
    return sorted(files)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    return "something else"


def summarize(template_text: str) -> str:
    """The first comment line of a template, which names what the increment does."""
    for raw in template_text.splitlines():
        line = raw.strip()
        if line.startswith("{#"):
            return line.removeprefix("{#").removesuffix("#}").strip(" -")
        if line.startswith("#"):
            body = line.lstrip("#").strip()
            if re.match(r"^(syntax|escape|check)\s*=", body):
                continue  # a parser directive, not a description
            if body:
                return body
    return ""


def ignore_tests(folders: Collection[Path]) -> Callable[[str, list[str]], list[str]]:
    """For shutil.copytree: leave out the tests at the top of the given folder increments, which
    are no context files (a build must never see them, or a test edit would change an image)."""
    tops = {folder.resolve() for folder in folders}

    def ignore(directory: str, names: list[str]) -> list[str]:
        if Path(directory).resolve() not in tops:
            return []
        return [name for name in names if name in FOLDER_TESTS]

    return ignore
