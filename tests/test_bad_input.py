"""A corpus of bad input, each case run through the CLI as a user meets it.

Every case breaks an image repository in one way and expects imagectl to refuse: a non-zero exit,
one paragraph on stderr naming the offending file (relative to the repository) and saying what
is wrong, no traceback, not a byte of the repository written, and no tag made or moved, neither
in the engine nor in the registry.

Four groups:

- FILE_CASES need no engine: a never-built repository, run with DOCKER_HOST pointing nowhere, so
  a case imagectl fails to refuse up front fails loudly instead of building anything;
- BUILT_CASES break a copy of one repository whose three versions were built once per module
  (v1 and v2 published, v3 only local);
- FRESH_CASES need the engine on a repository of their own;
- ACCEPTED_CASES are odd inputs imagectl decides to accept (a damaged cache, editor leftovers,
  CRLF and byte-order marks, a symlink within increments/): exit 0, nothing written or tagged.

A representative subset of the broken lines also goes through every command that reads a line
(verify, checkpoint, backport, publish, squash, test), not only build and plan.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagectl.core.config import check_secret_sources
from imagectl.core.errors import ConfigError
from imagectl.core.model import ImageLine
from imagectl.core.templates import MAX_RENDERED_BYTES

from .conftest import BUSYBOX, REGISTRY, Result, docker, imagectl
from .helpers import git_init, make_line, write

LINE = "line"
NEVER_BUILT = f"{REGISTRY}/imagectl-test/never-built"
ONE = "# Write one\nRUN echo one >> /applied\n"
GREET = '# Greet\n{% include "_shared/greet.j2" %}\n'
SNIPPET = "RUN echo {{ greeting }} >> /applied\n"
FILES = "# Ship a file\nCOPY hello.txt /hello.txt\n"
LOCK = "lock/line.lock.toml"
LINE_FILE = "images/line.toml"
FIX = "increments/_shared/fix.Dockerfile.j2"  # what `backport` is run with
REGISTRY_API = "http://127.0.0.1:5000/v2"  # the registry behind localhost:5000, without a proxy
BOM = "\ufeff"
TIMEOUT = 60  # s for one command: a case that hangs (a FIFO read) fails instead

# A break gets the repository root and the repository name its line file names.
Break = Callable[[Path, str], None]
# An accepted case's own check of what the command printed.
Check = Callable[[Path, Result], None]


@dataclass(frozen=True)
class Case:
    id: str
    breaks: Break
    paths: tuple[str, ...]  # each must appear in stderr; {root} and {parent} are filled in
    phrase: str
    args: tuple[str, ...] = ("build", "next", "--all")
    code: int = 1
    where: str = "."  # what -C names, relative to the repository root
    relative: bool = True  # stderr names files relative to the repository, never its absolute path
    next_version: int | None = None  # the tag that must not appear; default: the one after the head
    check: Check | None = None  # accepted cases (code 0): what else must hold


def make_repository(root: Path, repository: str) -> None:
    """Three increments: a file, one including a shared snippet with a var, a folder."""
    make_line(
        root,
        LINE,
        repository=repository,
        base=BUSYBOX,
        increments={"0001-one": ONE, "0002-greet": GREET},
        variables='greeting = "hello"\n',
    )
    write(root / "increments" / "_shared" / "greet.j2", SNIPPET)
    write(root / "increments" / LINE / "0003-files" / "Dockerfile.j2", FILES)
    write(root / "increments" / LINE / "0003-files" / "hello.txt", "hello\n")
    write(root / FIX, "# A shared fix\nRUN echo fix >> /applied\n")


# -- how a repository gets broken --------------------------------------------------------------


def put(rel: str, text: str) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        write(root / rel, text)

    return breaks


def put_bytes(rel: str, data: bytes) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    return breaks


def put_line(rel: str, body: str) -> Break:
    """Write another line file; {repository} and {base} stand for the working values."""

    def breaks(root: Path, repository: str) -> None:
        write(root / rel, body.format(repository=repository, base=BUSYBOX))

    return breaks


def fifo(rel: str) -> Break:
    """A named pipe: whoever opens it for reading waits for a writer that never comes."""

    def breaks(root: Path, _repository: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(root / rel)

    return breaks


def resave(rel: str, *, crlf: bool = False, bom: bool = False) -> Break:
    """Save a file again as another editor would: CRLF line ends, a UTF-8 byte-order mark."""

    def breaks(root: Path, _repository: str) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        if crlf:
            text = text.replace("\n", "\r\n")
        path.write_bytes((BOM if bom else "").encode() + text.encode())

    return breaks


def line_file(body: str) -> Break:
    """Replace the line file; {repository} and {base} stand for the working values."""

    def breaks(root: Path, repository: str) -> None:
        write(root / LINE_FILE, body.format(repository=repository, base=BUSYBOX))

    return breaks


def replace(rel: str, old: str, new: str, *, count: int = 1) -> Break:
    """Replace the first `count` occurrences of `old`, which must be there."""

    def breaks(root: Path, _repository: str) -> None:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        assert text.count(old) >= count, f"{old!r} not in {rel}:\n{text}"
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    return breaks


def sub(rel: str, pattern: str, new: str, *, count: int = 1) -> Break:
    """Replace the first `count` matches of the multi-line regex `pattern`, which must match."""

    def breaks(root: Path, _repository: str) -> None:
        path = root / rel
        text, made = re.subn(
            pattern, new, path.read_text(encoding="utf-8"), count=count, flags=re.M
        )
        assert made == count, f"{pattern!r} matched {made} times in {rel}"
        path.write_text(text, encoding="utf-8")

    return breaks


def remove(rel: str) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return breaks


def rename(old: str, new: str) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        (root / old).rename(root / new)

    return breaks


def swap(first: str, second: str) -> Break:
    """Swap the numbers of two increments: 0002-a and 0003-b become 0003-a and 0002-b."""

    def breaks(root: Path, _repository: str) -> None:
        folder = root / "increments" / LINE
        a, b = folder / first, folder / second
        a_new = folder / (b.name[:4] + a.name[4:])
        b_new = folder / (a.name[:4] + b.name[4:])
        a.rename(folder / "swapping")
        b.rename(b_new)
        (folder / "swapping").rename(a_new)

    return breaks


def symlink(rel: str, target: str) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        (root / rel).symlink_to(target)

    return breaks


def both(*steps: Break) -> Break:
    def breaks(root: Path, repository: str) -> None:
        for step in steps:
            step(root, repository)

    return breaks


def nothing(_root: Path, _repository: str) -> None:
    pass


def inc(name: str) -> str:
    return f"increments/{LINE}/{name}"


# -- group 1: files only, no engine ------------------------------------------------------------

FILE_CASES = [
    Case(
        "line-file-malformed-toml",
        line_file('repository = "{repository}\nbase = "{base}"\n'),
        (LINE_FILE,),
        "is not valid TOML",
    ),
    Case(
        "line-file-unknown-key",
        line_file('repository = "{repository}"\nbase = "{base}"\ncolour = "red"\n'),
        (LINE_FILE,),
        "unknown key colour",
    ),
    Case(
        "line-file-missing-repository",
        line_file('base = "{base}"\n'),
        (LINE_FILE,),
        "the key 'repository' is missing",
    ),
    Case(
        "line-file-missing-base",
        line_file('repository = "{repository}"\n'),
        (LINE_FILE,),
        "the key 'base' is missing",
    ),
    Case(
        "line-file-repository-uppercase",
        line_file('repository = "localhost:5000/Pods/Line"\nbase = "{base}"\n'),
        (LINE_FILE,),
        "'localhost:5000/Pods/Line' is not a valid image repository name",
    ),
    Case(
        "line-file-repository-with-tag",
        line_file('repository = "{repository}:latest"\nbase = "{base}"\n'),
        (LINE_FILE,),
        "is not a valid image repository name",
    ),
    Case(
        "line-file-repository-not-a-string",
        line_file('repository = 5000\nbase = "{base}"\n'),
        (LINE_FILE,),
        "repository must be a non-empty string",
    ),
    Case(
        "line-file-bad-base-reference",
        line_file(
            'repository = "{repository}"\nbase = "localhost:5000/busybox:latest@sha256:12"\n'
        ),
        (LINE_FILE,),
        "base = 'localhost:5000/busybox:latest@sha256:12' is not a valid image reference",
    ),
    Case(
        "line-file-vars-not-a-table",
        line_file('repository = "{repository}"\nbase = "{base}"\nvars = "greeting=hello"\n'),
        (LINE_FILE,),
        "[vars] must be a table",
    ),
    Case(
        "line-file-reserved-var",
        line_file('repository = "{repository}"\nbase = "{base}"\n[vars]\nversion = "9"\n'),
        (LINE_FILE,),
        "[vars] defines version, which imagectl sets itself",
    ),
    Case(
        "line-file-bad-name",
        put("images/Line_Two.toml", f'repository = "{NEVER_BUILT}-two"\nbase = "{BUSYBOX}"\n'),
        ("images/Line_Two.toml",),
        "the line name 'Line_Two' is not valid",
    ),
    Case(
        "line-file-not-utf8",
        put_bytes(LINE_FILE, b'repository = "\xff\xfe"\n'),
        (LINE_FILE,),
        "cannot be read",
    ),
    Case(
        "no-line-files",
        remove(LINE_FILE),
        ("images",),
        "this repository has no image lines yet",
    ),
    Case(
        "increments-duplicate-number",
        put(inc("0003-again.Dockerfile.j2"), "RUN true\n"),
        (f"increments/{LINE}",),
        "two increments share number 0003",
    ),
    Case(
        "increments-gap-in-numbering",
        put(inc("0005-five.Dockerfile.j2"), "RUN true\n"),
        (f"increments/{LINE}",),
        "increment numbering has a gap: 0005-five.Dockerfile.j2 follows 0003",
    ),
    Case(
        "increment-wrong-suffix",
        put(inc("0004-four.Dockerfile"), "RUN true\n"),
        (inc("0004-four.Dockerfile"),),
        "is numbered like an increment but is neither a *.Dockerfile.j2 file nor a folder",
    ),
    Case(
        "increment-folder-without-dockerfile-j2",
        put(inc("0004-dir/Dockerfile"), "RUN true\n"),
        (inc("0004-dir"),),
        "the increment folder has no Dockerfile.j2",
    ),
    Case(
        "increment-bad-name",
        put(inc("0004-Four.Dockerfile.j2"), "RUN true\n"),
        (inc("0004-Four.Dockerfile.j2"),),
        "increment name 'Four' is not valid",
    ),
    Case(
        "increment-symlink-to-a-file-outside-the-folder",
        symlink(inc("0003-files/passwd"), "/etc/passwd"),
        (inc("0003-files/passwd"),),
        "points outside the increment folder",
    ),
    Case(
        "increment-symlink-to-a-folder-outside-the-folder",
        symlink(inc("0003-files/etc"), "/etc"),
        (inc("0003-files/etc"),),
        "points outside the increment folder",
    ),
    Case(
        "cli-build-unknown-line",
        nothing,
        (),
        "no image line named nope (images/<line>.toml). Known lines: line.",
        args=("build", "next", "nope"),
    ),
    Case(
        "cli-history-unknown-line",
        nothing,
        (),
        "no image line named nope (images/<line>.toml). Known lines: line.",
        args=("history", "nope"),
    ),
    Case(
        "cli-missing-directory",
        nothing,
        ("{root}/missing",),
        "is not a folder",
        args=("plan",),
        where="missing",
        relative=False,
    ),
    Case(
        "cli-not-an-image-repository",
        nothing,
        ("{parent}",),
        "no image repository found at",
        args=("plan",),
        where="..",
        relative=False,
    ),
    Case(
        "cli-jobs-not-a-number",
        nothing,
        (),
        "argument -j/--jobs: invalid int value: 'many'",
        args=("build", "next", "--all", "--jobs", "many"),
        code=2,
    ),
    Case(
        "cli-backport-missing-fix",
        nothing,
        ("increments/_shared/nope.Dockerfile.j2",),
        "is not a file in increments/_shared/",
        args=("backport", "increments/_shared/nope.Dockerfile.j2"),
    ),
    Case(
        "cli-backport-fix-outside-shared",
        nothing,
        (inc("0001-one.Dockerfile.j2"),),
        "is not a file in increments/_shared/",
        args=("backport", inc("0001-one.Dockerfile.j2")),
    ),
    Case(
        "template-not-utf8",
        put_bytes(inc("0004-new.Dockerfile.j2"), b"# New\nRUN echo caf\xe9\n"),
        (inc("0004-new.Dockerfile.j2"),),
        "is not UTF-8 text (byte 0xe9 on line 2, offset 18)",
    ),
    Case(
        # read by Jinja's loader, not by discovery: used to be a UnicodeDecodeError traceback
        "shared-snippet-not-utf8",
        both(
            put_bytes("increments/_shared/latin1.j2", b"RUN echo caf\xe9\n"),
            put(inc("0004-new.Dockerfile.j2"), '# New\n{% include "_shared/latin1.j2" %}\n'),
        ),
        ("increments/_shared/latin1.j2",),
        "is not UTF-8 text (byte 0xe9",
    ),
    Case(
        "increment-name-with-spaces",
        put(inc("0004-my new step.Dockerfile.j2"), "RUN true\n"),
        (inc("0004-my new step.Dockerfile.j2"),),
        "increment name 'my new step' is not valid",
    ),
    Case(
        "increment-name-with-unicode",
        put(inc("0004-caf\u00e9.Dockerfile.j2"), "RUN true\n"),
        (inc("0004-caf\u00e9.Dockerfile.j2"),),
        "increment name 'caf\u00e9' is not valid",
    ),
    Case(
        # used to be passed over in silence: an increment that would never be built
        "increment-without-a-number",
        put(inc("new.Dockerfile.j2"), "# New\nRUN true\n"),
        (inc("new.Dockerfile.j2"),),
        "is named like an increment but does not start with a number of four ASCII digits",
    ),
    Case(
        # Arabic-Indic digits: int() reads them as 4, the build order would not
        "increment-numbered-with-other-digits",
        put(inc("\u0660\u0660\u0660\u0664-new.Dockerfile.j2"), "# New\nRUN true\n"),
        (inc("\u0660\u0660\u0660\u0664-new.Dockerfile.j2"),),
        "does not start with a number of four ASCII digits",
    ),
    Case(
        # refused (a link within increments/ is accepted, see ACCEPTED_CASES): the lock hashes
        # the content, and a target outside increments/ can change outside the line's history
        "template-symlink-outside-increments",
        both(
            put("outside.Dockerfile.j2", "# Outside\nRUN true\n"),
            symlink(inc("0004-new.Dockerfile.j2"), "../../outside.Dockerfile.j2"),
        ),
        (inc("0004-new.Dockerfile.j2"), "../../outside.Dockerfile.j2"),
        "outside increments/",
    ),
    Case(
        "shared-snippet-symlink-outside-increments",
        both(
            put("outside.j2", "RUN true\n"),
            symlink("increments/_shared/outside.j2", "../../outside.j2"),
            put(inc("0004-new.Dockerfile.j2"), '# New\n{% include "_shared/outside.j2" %}\n'),
        ),
        ("increments/_shared/outside.j2", "../../outside.j2"),
        "leading outside increments/",
    ),
    Case(
        "template-that-is-a-fifo",
        fifo(inc("0004-new.Dockerfile.j2")),
        (inc("0004-new.Dockerfile.j2"),),
        "is a named pipe (FIFO), not a regular file",
    ),
    Case(
        "fifo-in-a-folder-increment",
        both(
            put(inc("0004-dir/Dockerfile.j2"), "# Dir\nCOPY . /dir/\n"),
            fifo(inc("0004-dir/pipe")),
        ),
        (inc("0004-dir/pipe"),),
        "is a named pipe (FIFO): a build context holds only regular files",
    ),
    Case(
        "line-file-that-is-a-fifo",
        both(remove(LINE_FILE), fifo(LINE_FILE)),
        (LINE_FILE,),
        "is not a regular file",
    ),
    Case(
        "empty-increment",
        put(inc("0004-new.Dockerfile.j2"), ""),
        (inc("0004-new.Dockerfile.j2"),),
        "renders to no instructions",
    ),
    Case(
        "template-includes-itself",
        put(inc("0004-new.Dockerfile.j2"), '# New\n{% include "line/0004-new.Dockerfile.j2" %}\n'),
        (inc("0004-new.Dockerfile.j2"),),
        "the template includes itself, directly or through other templates, without end",
    ),
    Case(
        # comments only besides one RUN: without the limit it builds, 13 MB of Dockerfile
        "template-renders-more-than-10-mib",
        put(
            inc("0004-new.Dockerfile.j2"),
            '# New\n{% for i in range(100000) %}# {{ "padding " * 16 }}{{ i }}\n{% endfor %}'
            "RUN true\n",
        ),
        (inc("0004-new.Dockerfile.j2"),),
        f"renders to more than {MAX_RENDERED_BYTES >> 20} MiB",
    ),
    Case(
        "test-of-no-increment",
        put(inc("0009-nine.test.sh"), "true\n"),
        (inc("0009-nine.test.sh"),),
        "is a test of no file increment: there is no 0009-nine.Dockerfile.j2 beside it",
    ),
    Case(
        "test-that-is-a-fifo",
        fifo(inc("0001-one.test.sh")),
        (inc("0001-one.test.sh"),),
        "is named like a test but is not a regular file",
    ),
    Case(
        "line-file-test-timeout-not-a-number",
        line_file('repository = "{repository}"\nbase = "{base}"\n[tests]\ntimeout = "2m"\n'),
        (LINE_FILE,),
        "[tests] timeout = '2m' is not a number of seconds",
    ),
    Case(
        "two-lines-with-one-repository",
        put_line("images/other.toml", 'repository = "{repository}"\nbase = "{base}"\n'),
        ("images/other.toml", LINE_FILE),
        "two lines cannot share one",
    ),
]

# -- group 2: a built repository (v1..v3) broken; the next tag is v4 ---------------------------

NEW = inc("0004-new.Dockerfile.j2")

BUILT_CASES = [
    Case(
        "template-undefined-variable",
        put(NEW, "# New\nRUN echo {{ nope }}\n"),
        (NEW,),
        "undefined variable: 'nope' is undefined",
    ),
    Case(
        # checked with the pending increments, before anything is built
        "test-template-undefined-variable",
        both(put(NEW, "# New\nRUN true\n"), put(inc("0004-new.test.sh.j2"), "test {{ nope }}\n")),
        (inc("0004-new.test.sh.j2"),),
        "undefined variable: 'nope' is undefined",
    ),
    Case(
        "template-syntax-error",
        put(NEW, "# New\nRUN echo {{ oops\n"),
        (NEW,),
        "template syntax error",
    ),
    Case(
        "template-includes-a-missing-snippet",
        put(NEW, '{% include "_shared/nope.j2" %}\n'),
        (NEW,),
        "includes '_shared/nope.j2', which does not exist under increments/",
    ),
    Case(
        "template-sandbox-escape",
        put(NEW, "RUN echo {{ ''.__class__.__mro__ }}\n"),
        (NEW,),
        "the sandbox refused",
    ),
    Case(
        "template-sandbox-escape-through-globals",
        put(NEW, "RUN echo {{ cycler.__init__.__globals__.os }}\n"),
        (NEW,),
        "the sandbox refused",
    ),
    Case(
        "template-with-its-own-from",
        put(NEW, f"FROM {BUSYBOX}\nRUN true\n"),
        (NEW,),
        f"line 1 of increments/line/0004-new.Dockerfile.j2: the last stage starts `FROM {BUSYBOX}`",
    ),
    Case(
        "template-syntax-error-in-a-shared-snippet",
        both(
            put("increments/_shared/broken.j2", "RUN echo {% if %}\n"),
            put(NEW, '{% include "_shared/broken.j2" %}\n'),
        ),
        ("increments/_shared/broken.j2",),
        "template syntax error",
    ),
    Case(
        "template-undefined-variable-in-a-shared-snippet",
        both(
            put("increments/_shared/undefined.j2", "RUN echo {{ missing_var }}\n"),
            put(NEW, '{% include "_shared/undefined.j2" %}\n'),
        ),
        (NEW, "line 1 of increments/_shared/undefined.j2"),
        "undefined variable: 'missing_var' is undefined",
    ),
    Case(
        "drift-edited-built-increment",
        put(inc("0001-one.Dockerfile.j2"), "# Write ONE\nRUN echo ONE >> /applied\n"),
        (inc("0001-one.Dockerfile.j2"),),
        "instead of editing 0001-one",
    ),
    Case(
        "drift-edited-context-file-of-a-built-folder-increment",
        put(inc("0003-files/hello.txt"), "hello, edited\n"),
        (inc("0003-files"),),
        "was edited after v3 was built from it",
    ),
    Case(
        "drift-deleted-last-built-increment",
        remove(inc("0003-files")),
        (inc("0003-files"),),
        "v3 was built from increments/line/0003-files, which no longer exists",
    ),
    Case(
        "drift-deleted-built-increment-in-the-middle",
        remove(inc("0002-greet.Dockerfile.j2")),
        (inc("0002-greet.Dockerfile.j2"),),
        "which no longer exists",
    ),
    Case(
        "drift-renamed-built-increment",
        rename(inc("0002-greet.Dockerfile.j2"), inc("0002-hello.Dockerfile.j2")),
        (inc("0002-greet.Dockerfile.j2"), inc("0002-hello.Dockerfile.j2")),
        "(renamed or renumbered)",
    ),
    Case(
        "drift-swapped-numbers-of-built-increments",
        swap("0002-greet.Dockerfile.j2", "0003-files"),
        (inc("0002-greet.Dockerfile.j2"), inc("0003-greet.Dockerfile.j2")),
        "(renamed or renumbered)",
    ),
    Case(
        "drift-renumbered-last-built-increment",
        rename(inc("0003-files"), inc("0004-files")),
        (inc("0003-files"), inc("0004-files")),
        "(renamed or renumbered)",
    ),
    Case(
        "drift-edited-shared-snippet-of-a-built-increment",
        put("increments/_shared/greet.j2", "RUN echo {{ greeting }}! >> /applied\n"),
        (inc("0002-greet.Dockerfile.j2"),),
        "renders differently than when v2 was built",
    ),
    Case(
        "drift-changed-var-used-by-a-built-increment",
        replace(LINE_FILE, 'greeting = "hello"', 'greeting = "bye"'),
        (inc("0002-greet.Dockerfile.j2"), LINE_FILE),
        "renders differently than when v2 was built",
    ),
    Case(
        "drift-changed-repository-of-a-built-line",
        sub(LINE_FILE, r'^repository = ".*"$', f'repository = "{NEVER_BUILT}-moved"'),
        (LINE_FILE, LOCK),
        "A line's repository cannot move once built",
    ),
    Case(
        # like the repository: v1 was built on the pinned base; another base is another line
        "drift-changed-base-of-a-built-line",
        both(
            sub(LINE_FILE, r"^base = .*$", f'base = "{REGISTRY}/debian:bookworm"'),
            put(NEW, "# New\nRUN true\n"),
        ),
        (LINE_FILE, LOCK),
        "records base 'localhost:5000/busybox:latest'",
    ),
    Case(
        "lock-invalid-toml",
        sub(LOCK, r"^layers = (\d+)$", r"layers = \1 \1"),
        (LOCK,),
        "is not valid TOML",
    ),
    Case(
        "lock-not-utf8",
        put_bytes(LOCK, b"schema = 1\nline = '\xff'\n"),
        (LOCK,),
        "is not valid TOML",
    ),
    Case(
        "lock-newer-schema",
        sub(LOCK, r"^schema = 1$", "schema = 2"),
        (LOCK,),
        "was written with lock schema 2, newer than this imagectl knows",
    ),
    Case(
        "lock-missing-schema",
        sub(LOCK, r"^schema = 1\n", ""),
        (LOCK,),
        "has no integer 'schema' key",
    ),
    Case(
        "lock-wrong-field-type",
        sub(LOCK, r"^layers = \d+$", 'layers = "many"'),
        (LOCK,),
        "versions[0].layers must be int, not 'many'",
    ),
    Case(
        "lock-versions-out-of-order",
        both(
            sub(LOCK, r"^version = 1$", "version = 9"),
            sub(LOCK, r"^version = 2$", "version = 1"),
            sub(LOCK, r"^version = 9$", "version = 2"),
        ),
        (LOCK,),
        "versions[0] is version 2, expected 1",
    ),
    Case(
        "lock-missing-required-field",
        sub(LOCK, r"^image_id = .*\n", ""),
        (LOCK,),
        "versions[0] has no 'image_id'",
    ),
    Case(
        "lock-versions-not-an-array",
        both(
            sub(LOCK, r"^\[\[versions\]\]\n(?:.*\n)*", ""),
            sub(LOCK, r"^schema = 1$", 'schema = 1\nversions = "v1, v2, v3"'),
        ),
        (LOCK,),
        "'versions' must be an array of tables",
    ),
    Case(
        "lock-invalid-toml-in-history",
        sub(LOCK, r"^layers = (\d+)$", r"layers = \1 \1"),
        (LOCK,),
        "is not valid TOML",
        args=("history", LINE, "--json"),
    ),
    Case(
        "lock-newer-schema-in-publish",
        sub(LOCK, r"^schema = 1$", "schema = 2"),
        (LOCK,),
        "newer than this imagectl knows",
        args=("publish",),
    ),
    Case(
        "lock-wrong-field-type-in-squash",
        sub(LOCK, r"^layers = \d+$", 'layers = "many"'),
        (LOCK,),
        "versions[0].layers must be int",
        args=("squash",),
    ),
    Case(
        "lock-missing-schema-in-resolve",
        sub(LOCK, r"^schema = 1\n", ""),
        (LOCK,),
        "has no integer 'schema' key",
        args=("resolve", "sha256:0123456789ab"),
    ),
    # A hand-edited digest or image id: v4 builds on v3, so without the check it would build.
    Case(
        "lock-malformed-digest",
        both(
            sub(LOCK, r'^digest = "sha256:[0-9a-f]{64}"$', 'digest = "sha256:1234"'),
            put(NEW, "# New\nRUN true\n"),
        ),
        (LOCK,),
        "versions[0].digest = 'sha256:1234' is not a digest",
    ),
    Case(
        "lock-malformed-image-id",
        both(
            sub(LOCK, r'^image_id = "sha256:([0-9a-f]{12})[0-9a-f]{52}"$', r'image_id = "\1"'),
            put(NEW, "# New\nRUN true\n"),
        ),
        (LOCK,),
        "versions[0].image_id = ",
    ),
    Case(
        "lock-malformed-base-digest",
        both(
            sub(LOCK, r'^base_digest = "sha256:[0-9a-f]{64}"$', 'base_digest = "sha256:ZZ"'),
            put(NEW, "# New\nRUN true\n"),
        ),
        (LOCK,),
        "base_digest = 'sha256:ZZ' is not a digest",
    ),
    Case(
        # read as it is, the line would look never built and plan v1 again
        "lock-folder-that-is-a-file",
        both(remove("lock"), put("lock", "line.lock.toml\n")),
        ("lock: ",),
        "is a file, not the folder that holds each line's lock/<line>.lock.toml",
    ),
]

# -- group 3: the engine, on a repository of their own ------------------------------------------


def lose_v1(root: Path, repository: str) -> None:
    """Build v1 (of a content no other test builds), then remove its only tag: image gone."""
    write(root / "increments" / LINE / "0001-one.Dockerfile.j2", f"RUN echo {uuid.uuid4()}\n")
    git_init(root)
    built = imagectl(root, "build", "next", "--quiet")
    assert built.code == 0, built.stderr
    lost = docker("image", "inspect", "--format", "{{.Id}}", f"{repository}:v1")
    docker("rmi", f"{repository}:v1")
    assert docker("image", "inspect", lost, check=False) == "[]"


def unset_secret(root: Path, _repository: str) -> None:
    """A build secret read from an environment variable nobody set."""
    assert "NOPE_UNSET" not in os.environ
    with (root / LINE_FILE).open("a", encoding="utf-8") as handle:
        handle.write('[secrets]\ntoken = "env:NOPE_UNSET"\n')
    write(
        root / inc("0001-one.Dockerfile.j2"),
        "# Use the token\nRUN --mount=type=secret,id=token cat /run/secrets/token || true\n",
    )


FRESH_CASES = [
    Case(
        "base-image-missing",
        sub(LINE_FILE, r"^base = .*$", 'base = "localhost:5000/no/such:base"'),
        (LINE_FILE,),
        "the base image localhost:5000/no/such:base is neither in the engine nor in the registry",
    ),
    Case(
        "lock-names-an-image-neither-engine-nor-registry-has",
        lose_v1,
        (LOCK,),
        "which is neither in the engine nor (published) in the registry",
        next_version=2,
    ),
    Case(
        "base-pinned-to-a-digest-no-registry-has",
        sub(LINE_FILE, r"^base = .*$", f'base = "{REGISTRY}/busybox@sha256:{"0" * 64}"'),
        (LINE_FILE,),
        f"the base image {REGISTRY}/busybox@sha256:{'0' * 64} is neither in the engine nor in "
        "the registry",
    ),
    Case(
        # refused before any build by workflows.build_next calling config.check_secret_sources
        "secret-from-an-unset-env-variable",
        unset_secret,
        (LINE_FILE,),
        "the environment variable NOPE_UNSET is not set",
        args=("build", "next"),
    ),
]


# -- group 4: odd input that is accepted, on a copy of the built repository ----------------------

STATE = ".imagectl"
CACHES = (
    f"{STATE}/render-hashes-v2.json",
    f"{STATE}/render-bodies.json",
)
POISON = f"sha256:{'0' * 64}"


def garbage_caches(root: Path, _repository: str) -> None:
    for rel in CACHES:
        assert (root / rel).is_file(), rel
        (root / rel).write_bytes(b"\x00\xff{not json")


def misshapen_caches(root: Path, _repository: str) -> None:
    hashes, bodies = (root / rel for rel in CACHES)
    hashes.write_text(json.dumps(dict.fromkeys(json.loads(hashes.read_text()), 5)))
    bodies.write_text("[" * 100_000)  # deeper than json nests: a RecursionError


def poison_table(rel: str, value: str) -> Break:
    """Every entry of a render table, under its own key, says something else: were the cache
    trusted, the drift check (hashes) or the reference (bodies) would be wrong."""

    def breaks(root: Path, _repository: str) -> None:
        path = root / rel
        table = json.loads(path.read_text())
        assert table, rel
        path.write_text(json.dumps({key: [value, "0" * 16] for key in table}))

    return breaks


def recorded_before_inputs_hashes(root: Path, _repository: str) -> None:
    """The lock as imagectl wrote it before it recorded inputs hashes: its drift check must
    render (or ask the render cache) instead of trusting an unchanged hash of the inputs."""
    lock = root / LOCK
    kept = [
        line
        for line in lock.read_text().splitlines(keepends=True)
        if not line.startswith(("inputs_hash = ", "includes = "))
    ]
    assert len(kept) < len(lock.read_text().splitlines()), "no inputs hash recorded"
    lock.write_text("".join(kept))


def comment_in_a_version(root: Path, _repository: str) -> None:
    """A hand-written comment inside a version's table: not the form imagectl writes, so the
    fast reader hands the lock to tomllib, which reads it as before."""
    lock = root / LOCK
    text = lock.read_text()
    assert "\nlayers = " in text
    lock.write_text(text.replace("\nlayers = ", "\n# checked by hand\nlayers = ", 1))


def caches_rebuilt(root: Path, _result: Result) -> None:
    for rel in CACHES:
        text = (root / rel).read_text()
        assert all(isinstance(json.loads(part), dict) for part in text.split("\n")), rel


def renders_clean(*wanted: str) -> Check:
    """`render` printed a Dockerfile without a byte-order mark or CR, with each of `wanted`."""

    def check(_root: Path, result: Result) -> None:
        assert BOM not in result.stdout
        assert "\r" not in result.stdout
        for text in wanted:
            assert text in result.stdout, result.stdout

    return check


ACCEPTED_CASES = [
    # A damaged .imagectl/ is ignored and rebuilt, never trusted: the command succeeds.
    Case(
        "cache-garbage-bytes",
        garbage_caches,
        (),
        "",
        args=("squash", "--check"),  # reads (and so rebuilds) every cache
        code=0,
        check=caches_rebuilt,
    ),
    Case("cache-misshapen-json", misshapen_caches, (), "", args=("plan",), code=0),
    Case("lock-comment-in-a-version", comment_in_a_version, (), "", args=("plan",), code=0),
    Case(
        "cache-render-hashes-poisoned",
        both(recorded_before_inputs_hashes, poison_table(CACHES[0], f"{POISON} {POISON}")),
        (),
        "",
        code=0,
    ),
    Case(
        "cache-render-bodies-poisoned",
        poison_table(CACHES[1], "# poisoned\nRUN echo poisoned\n"),
        (),
        "",
        args=("squash", "--check"),
        code=0,
    ),
    # Editor leftovers beside increments and line files are passed over, not refused. (Inside a
    # folder increment they are context files like any other: the build would send them.)
    Case(
        "editor-leftovers",
        both(
            put(inc("0003-x.Dockerfile.j2~"), "# backup\nRUN echo old\n"),
            put_bytes(inc(".0003-x.swp"), b"b0VIM 9.0\x00"),
            put(inc("#0004-new.Dockerfile.j2#"), "# autosave\nRUN true\n"),
            put(inc("0004-new.Dockerfile.j2.bak"), "# backup\nRUN true\n"),
            symlink("images/.#line.toml", "someone@host.4242:1700000000"),
        ),
        (),
        "",
        code=0,
    ),
    # CRLF and a byte-order mark are accepted: normalised away before rendering, so a built
    # increment re-saved by another editor instructs the same and is not drift.
    Case(
        "built-increments-resaved-with-crlf",
        both(
            resave(inc("0001-one.Dockerfile.j2"), crlf=True),
            resave(inc("0002-greet.Dockerfile.j2"), crlf=True),
            resave("increments/_shared/greet.j2", crlf=True),
        ),
        (),
        "",
        code=0,
    ),
    Case(
        "built-increments-resaved-with-a-bom",
        both(
            resave(inc("0001-one.Dockerfile.j2"), bom=True),
            resave(inc("0003-files/Dockerfile.j2"), bom=True, crlf=True),
        ),
        (),
        "",
        code=0,
    ),
    Case(
        "new-increment-with-a-bom-and-crlf",
        put_bytes(NEW, f"{BOM}# New\r\nRUN echo new >> /applied\r\n".encode()),
        (),
        "",
        args=("render", LINE),
        code=0,
        check=renders_clean("# New\nRUN echo new >> /applied\n"),
    ),
    Case(
        "template-symlink-within-increments",
        symlink(NEW, "../_shared/fix.Dockerfile.j2"),
        (),
        "",
        args=("render", LINE),
        code=0,
        check=renders_clean("RUN echo fix >> /applied"),
    ),
]


# -- running a case ------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the repository (links as their target), but git's and imagectl's state."""
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", STATE)]
        for name in [*filenames, *dirnames]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                files[rel] = b"-> " + os.readlink(path).encode()
            elif stat.S_ISFIFO(path.lstat().st_mode):
                files[rel] = b"<fifo>"  # never opened: that would block
            elif path.is_file():
                files[rel] = path.read_bytes()
    return files


def tags(repository: str) -> list[str]:
    listing = docker(
        "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", repository, check=False
    )
    return sorted(listing.splitlines())


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def registry_tags(repository: str) -> dict[str, str]:
    """What the registry serves for `repository`: {tag: manifest digest}, {} when it has none."""
    assert repository.startswith(f"{REGISTRY}/"), repository
    api = f"{REGISTRY_API}/{repository.removeprefix(f'{REGISTRY}/')}"
    try:
        with _NO_PROXY.open(f"{api}/tags/list", timeout=10) as answer:
            listed: list[str] = json.load(answer).get("tags") or []
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # NAME_UNKNOWN: nothing was ever pushed there
            return {}
        raise
    served: dict[str, str] = {}
    for tag in listed:
        request = urllib.request.Request(
            f"{api}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES}
        )
        with _NO_PROXY.open(request, timeout=10) as answer:
            served[tag] = answer.headers["Docker-Content-Digest"]
    return served


def assert_one_paragraph(stderr: str, code: int) -> None:
    if code == 2:  # argparse: the usage, then one error line
        lines = stderr.rstrip("\n").splitlines()
        assert lines[0].startswith("usage: imagectl"), stderr
        assert all(line.strip() for line in lines), stderr
        assert ": error: " in lines[-1], stderr
        return
    head = stderr.split("---- last output ----", maxsplit=1)[0]
    # The engine line ("engine unix:///..., Docker 26.1.5, builder buildx") that commands which
    # talk to the engine print first is progress, not part of the error.
    lines = [line for line in head.strip().splitlines() if not line.startswith("engine ")]
    assert len(lines) == 1, f"not one paragraph:\n{stderr}"
    assert lines[0].startswith("imagectl: "), stderr


def run_case(
    case: Case,
    root: Path,
    repository: str,
    *,
    env: dict[str, str] | None = None,
    engine: bool,
    next_version: int,
) -> None:
    before = snapshot(root)
    tags_before = tags(repository) if engine else []
    served_before = registry_tags(repository) if engine else {}
    next_tag = f"{repository}:v{case.next_version or next_version}"
    result = imagectl(root / case.where, *case.args, env=env, timeout=TIMEOUT)
    shown = f"exit {result.code}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    # What matters most first: refused, nothing recorded, no tag made or moved ...
    assert result.code == case.code, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k.startswith("lock/")} == {
        k: v for k, v in before.items() if k.startswith("lock/")
    }, f"the lock changed\n{shown}"
    assert after == before, f"the repository changed\n{shown}"
    if engine:
        assert tags(repository) == tags_before, f"a tag was made or moved\n{shown}"
        assert docker("image", "ls", "-q", next_tag) == "", shown
        assert registry_tags(repository) == served_before, (
            f"a tag was pushed or moved in the registry\n{shown}"
        )
    if case.code == 0:  # accepted: nothing to say on stderr but warnings, and its own checks
        if case.check is not None:
            case.check(root, result)
        return
    # ... then the message: one paragraph, what is wrong, and where (relative to the repository).
    if "--json" in case.args:  # the error is one object on stdout, its fields the paragraph's
        error = json.loads(result.stdout)
        said = f"{error['path']}: {error['error']} {error['hint']}"
    else:
        assert_one_paragraph(result.stderr, case.code)
        said = result.stderr
    assert case.phrase in said, shown
    for path in case.paths:
        assert path.format(root=root, parent=root.parent) in said, shown
    if case.relative:
        assert str(root) not in said, f"names an absolute path, not a relative one\n{shown}"


def case_id(case: Case) -> str:
    return case.id


@pytest.mark.parametrize("case", FILE_CASES, ids=case_id)
def test_bad_input_refused_before_touching_the_engine(case: Case, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_repository(root, NEVER_BUILT)
    case.breaks(root, NEVER_BUILT)
    # No engine answers here: whatever imagectl does not refuse up front fails differently.
    nowhere = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    run_case(case, root, NEVER_BUILT, env=nowhere, engine=False, next_version=1)


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[tuple[Path, str]]:
    """One repository with v1..v3 built, v1 and v2 published, shared by the module (each case
    breaks a copy): a command that should refuse but pushes v3 changes what the registry serves."""
    repository = f"{engine}/imagectl-test/{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("built") / "repo"
    make_repository(root, repository)
    git_init(root)
    # squash --check renders every built increment (stale: no reference is committed), which
    # fills the render caches that the cache cases damage.
    steps = (("build", "next"), ("build", "next"), ("publish",), ("build", "next"))
    for args in (*steps, ("squash", "--check")):
        done = imagectl(root, *args) if args[0] == "squash" else imagectl(root, *args, "--quiet")
        assert done.code in ((0, 3) if args[0] == "squash" else (0,)), done.stderr
    assert len(tags(repository)) == 3, tags(repository)
    served = sorted(registry_tags(repository))
    # v1 and v2, and the referrers tag (sha256-<digest>) listing each one's SBOM
    assert [t for t in served if not t.startswith("sha256-")] == ["v1", "v2"]
    assert len([t for t in served if t.startswith("sha256-")]) == len(["v1", "v2"])
    yield root, repository
    for line in tags(repository):
        docker("rmi", "--no-prune", line.split()[0], check=False)


def run_on_a_copy(case: Case, tmp_path: Path, built_repo: tuple[Path, str]) -> None:
    template, repository = built_repo
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    case.breaks(root, repository)
    built = tags(repository)
    try:
        run_case(case, root, repository, engine=True, next_version=4)
    finally:  # keep the shared repository as it was for the next case, whatever happened
        for line in set(tags(repository)) - set(built):
            docker("rmi", "--no-prune", line.split()[0], check=False)


@pytest.mark.engine
@pytest.mark.parametrize("case", BUILT_CASES, ids=case_id)
def test_bad_input_on_a_built_line(
    case: Case, tmp_path: Path, built_repo: tuple[Path, str]
) -> None:
    run_on_a_copy(case, tmp_path, built_repo)


@pytest.mark.engine
@pytest.mark.parametrize("case", FRESH_CASES, ids=case_id)
def test_bad_input_on_the_engine(case: Case, tmp_path: Path, repo_name: str) -> None:
    root = tmp_path / "repo"
    make_repository(root, repo_name)
    case.breaks(root, repo_name)
    run_case(case, root, repo_name, engine=True, next_version=1)


@pytest.mark.engine
@pytest.mark.parametrize("case", ACCEPTED_CASES, ids=case_id)
def test_odd_input_accepted_on_a_built_line(
    case: Case, tmp_path: Path, built_repo: tuple[Path, str]
) -> None:
    run_on_a_copy(case, tmp_path, built_repo)


# -- every command that reads a line refuses a broken one ---------------------------------------

# Broken files or lock of a built line, one of each kind: the line file, a built increment, a
# shared input of one, the lock's syntax, fields and folder, a pending increment's bytes.
COMMAND_CASE_IDS = (
    "line-file-malformed-toml",
    "drift-edited-built-increment",
    "drift-changed-var-used-by-a-built-increment",
    "lock-invalid-toml",
    "lock-malformed-digest",
    "lock-folder-that-is-a-file",
    "template-not-utf8",
)
COMMAND_CASES = [case for case in (*FILE_CASES, *BUILT_CASES) if case.id in COMMAND_CASE_IDS]
# What each command would do were the break not refused: build and tag a reference (verify),
# tag v4 (checkpoint), write an increment (backport), push v3 (publish), write the reference,
# run tests on a version the broken line may not describe (test).
COMMANDS = {
    "verify": ("verify", LINE),
    "checkpoint": ("checkpoint", LINE),
    "backport": ("backport", FIX),
    "publish": ("publish",),
    "squash": ("squash",),
    "test": ("test", LINE),
}


@pytest.mark.engine
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", COMMAND_CASES, ids=case_id)
def test_broken_line_refused_by_every_command(
    case: Case, command: str, tmp_path: Path, built_repo: tuple[Path, str]
) -> None:
    run_on_a_copy(dataclasses.replace(case, args=COMMANDS[command]), tmp_path, built_repo)


def test_check_secret_sources_names_the_file_and_the_source(tmp_path: Path) -> None:
    line = ImageLine(
        name=LINE,
        config_path=Path(LINE_FILE),
        repository=NEVER_BUILT,
        base=BUSYBOX,
        secrets={"token": "env:NOPE_UNSET", "key": f"file:{tmp_path}/key"},
    )
    with pytest.raises(ConfigError, match=r"the file .*/key does not exist") as raised:
        check_secret_sources(line, {"NOPE_UNSET": "set"})
    assert raised.value.path == LINE_FILE
    (tmp_path / "key").write_text("not shown\n")
    with pytest.raises(ConfigError, match="the environment variable NOPE_UNSET is not set"):
        check_secret_sources(line, {})
    check_secret_sources(line, {"NOPE_UNSET": ""})  # set, if empty: BuildKit passes it on


def test_the_corpus_is_counted_and_its_ids_unique() -> None:
    groups = (FILE_CASES, BUILT_CASES, FRESH_CASES, ACCEPTED_CASES)
    ids = [case.id for group in groups for case in group]
    assert [len(group) for group in groups] == [45, 36, 4, 10]
    assert len(ids) == 95
    assert len(set(ids)) == len(ids)
    assert {case.id for case in COMMAND_CASES} == set(COMMAND_CASE_IDS)
