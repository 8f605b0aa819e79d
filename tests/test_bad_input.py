"""A corpus of bad input, each case run through the CLI as a user meets it.

Every case breaks an image repository in one way and expects imagectl to refuse: a non-zero exit,
one paragraph on stderr naming the offending file (relative to the repository) and saying what
is wrong, no traceback, not a byte of the repository written, and no tag made or moved.

Three groups:

- FILE_CASES need no engine: a never-built repository, run with DOCKER_HOST pointing nowhere, so
  a case imagectl fails to refuse up front fails loudly instead of building anything;
- BUILT_CASES break a copy of one repository whose three versions were built once per module;
- FRESH_CASES need the engine on a repository of their own.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import BUSYBOX, REGISTRY, docker, imagectl
from .helpers import git_init, make_line, write

LINE = "line"
NEVER_BUILT = f"{REGISTRY}/imagectl-test/never-built"
ONE = "# Write one\nRUN echo one >> /applied\n"
GREET = '# Greet\n{% include "_shared/greet.j2" %}\n'
SNIPPET = "RUN echo {{ greeting }} >> /applied\n"
FILES = "# Ship a file\nCOPY hello.txt /hello.txt\n"
LOCK = "lock/line.lock.toml"
LINE_FILE = "images/line.toml"

# A break gets the repository root and the repository name its line file names.
Break = Callable[[Path, str], None]


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


# -- how a repository gets broken --------------------------------------------------------------


def put(rel: str, text: str) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        write(root / rel, text)

    return breaks


def put_bytes(rel: str, data: bytes) -> Break:
    def breaks(root: Path, _repository: str) -> None:
        (root / rel).write_bytes(data)

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
]


# -- running a case ------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the repository (links as their target), but git's and imagectl's state."""
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".imagectl")]
        for name in [*filenames, *dirnames]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                files[rel] = b"-> " + os.readlink(path).encode()
            elif path.is_file():
                files[rel] = path.read_bytes()
    return files


def tags(repository: str) -> list[str]:
    listing = docker(
        "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", repository, check=False
    )
    return sorted(listing.splitlines())


def assert_one_paragraph(stderr: str, code: int) -> None:
    if code == 2:  # argparse: the usage, then one error line
        lines = stderr.rstrip("\n").splitlines()
        assert lines[0].startswith("usage: imagectl"), stderr
        assert all(line.strip() for line in lines), stderr
        assert ": error: " in lines[-1], stderr
        return
    head = stderr.split("---- last output ----", maxsplit=1)[0]
    lines = head.strip().splitlines()
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
    next_tag = f"{repository}:v{case.next_version or next_version}"
    result = imagectl(root / case.where, *case.args, env=env)
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
    # ... then the message: one paragraph, what is wrong, and where (relative to the repository).
    assert_one_paragraph(result.stderr, case.code)
    assert case.phrase in result.stderr, shown
    for path in case.paths:
        assert path.format(root=root, parent=root.parent) in result.stderr, shown
    if case.relative:
        assert str(root) not in result.stderr, (
            f"names an absolute path, not a relative one\n{shown}"
        )


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
    """One repository with v1..v3 built, shared by the module (each case breaks a copy)."""
    repository = f"{engine}/imagectl-test/{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("built") / "repo"
    make_repository(root, repository)
    git_init(root)
    built = imagectl(root, "build", "next", "--all", "--quiet")
    assert built.code == 0, built.stderr
    assert len(tags(repository)) == 3, tags(repository)
    yield root, repository
    for line in tags(repository):
        docker("rmi", "--no-prune", line.split()[0], check=False)


@pytest.mark.engine
@pytest.mark.parametrize("case", BUILT_CASES, ids=case_id)
def test_bad_input_on_a_built_line(
    case: Case, tmp_path: Path, built_repo: tuple[Path, str]
) -> None:
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
@pytest.mark.parametrize("case", FRESH_CASES, ids=case_id)
def test_bad_input_on_the_engine(case: Case, tmp_path: Path, repo_name: str) -> None:
    root = tmp_path / "repo"
    make_repository(root, repo_name)
    case.breaks(root, repo_name)
    run_case(case, root, repo_name, engine=True, next_version=1)


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    ids = [case.id for case in (*FILE_CASES, *BUILT_CASES, *FRESH_CASES)]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)
