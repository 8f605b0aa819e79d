"""The reference Dockerfile, resolving references, back-port planning: pure and on files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagectl.core.backport import plan_backport
from imagectl.core.config import RepositoryLayout, load_lines
from imagectl.core.errors import PlanError
from imagectl.core.increments import discover_increments
from imagectl.core.linerenders import reference_text
from imagectl.core.linestate import load_state
from imagectl.core.model import Lock
from imagectl.core.resolver import resolve_ref

from .conftest import imagectl
from .helpers import locked_version, make_line, write

GOLDEN = Path(__file__).parent / "golden"
BASE = "localhost:5000/busybox:latest"


def golden_repo(root: Path) -> Path:
    make_line(
        root,
        "line",
        repository="localhost:5000/t/line",
        base=BASE,
        increments={
            "0001-args": "# ARG is per increment, ENV carries on\nARG GREETING=hi\n"
            'ENV MOTD="${GREETING} from {{ line }}"\nRUN echo "$MOTD" > /motd\n',
            "0002-continued": "# Long RUN with continuations\nRUN mkdir -p /opt/a \\\n"
            "    && echo one > /opt/a/one \\\n    && echo two > /opt/a/two\n",
            "0004-heredoc": "# A heredoc\nRUN <<EOF\nset -e\necho heredoc > /heredoc\nEOF\n",
            "0005-arg-again": '# Uses GREETING, undeclared\nRUN echo "${GREETING:-none}"\n',
        },
    )
    folder = root / "increments" / "line" / "0003-files"
    write(
        folder / "Dockerfile.j2",
        "# Files from the context\nCOPY --chown=0:0 --chmod=0644 conf/app.conf /etc/app.conf\n"
        'COPY ["run me.sh", "/usr/local/bin/run-me"]\nCOPY --from='
        + BASE
        + " /bin/busybox /opt/busybox\nADD . /opt/ctx/\n",
    )
    write(folder / "conf" / "app.conf", "key = value\n")
    write(folder / "run me.sh", "#!/bin/sh\necho run\n")
    return root


def test_reference_dockerfile_matches_golden(tmp_path: Path) -> None:
    root = golden_repo(tmp_path / "repo")
    layout = RepositoryLayout(root=root)
    (line,) = load_lines(layout)
    text = reference_text(layout, load_state(layout, line))
    golden = GOLDEN / "reference.Dockerfile"
    if os.environ.get("IMAGECTL_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_squash_check_exits_3_when_stale_and_0_when_current(tmp_path: Path) -> None:
    root = golden_repo(tmp_path / "repo")
    stale = imagectl(root, "squash", "--check")
    assert stale.code == 3
    assert "stale" in stale.stdout
    assert imagectl(root, "squash").code == 0
    assert imagectl(root, "squash", "--check").code == 0
    write(root / "increments" / "line" / "0006-more.Dockerfile.j2", "RUN true\n")
    assert imagectl(root, "squash", "--check").code == 3


def published_lock(line: str, count: int, published: int) -> Lock:
    repository = f"localhost:5000/t/{line}"
    versions = tuple(
        locked_version(
            n,
            tag=f"{repository}:v{n}",
            image_id=f"sha256:{line[0] * 4}{n:060x}",
            digest=f"sha256:{'d' * 4}{line[0] * 4}{n:056x}" if n <= published else "",
        )
        for n in range(1, count + 1)
    )
    return Lock(line=line, repository=repository, base=BASE, versions=versions)


LOCKS = (published_lock("aaa", 4, 3), published_lock("bbb", 2, 2))


@pytest.mark.parametrize(
    "ref",
    [
        "localhost:5000/t/aaa:v1",
        f"localhost:5000/t/aaa@sha256:{'d' * 4}{'a' * 4}{1:056x}",
        f"localhost:5000/t/aaa:v1@sha256:{'d' * 4}{'a' * 4}{1:056x}",
        f"sha256:{'a' * 4}{1:060x}",
        f"{'a' * 4}{1:060x}"[:12],
    ],
)
def test_resolve_every_ref_form_to_the_newest_published(ref: str) -> None:
    found = resolve_ref(ref, LOCKS)
    assert (found.line, found.matched.version, found.newest.version) == ("aaa", 1, 3)
    assert found.reference == f"localhost:5000/t/aaa:v3@sha256:{'d' * 4}{'a' * 4}{3:056x}"


def test_resolve_an_unpublished_head_to_itself() -> None:
    found = resolve_ref("localhost:5000/t/aaa:v4", LOCKS)
    assert found.newest.version == 4
    assert found.reference == "localhost:5000/t/aaa:v4"


@pytest.mark.parametrize(
    "ref",
    [
        "localhost:5000/t/aaa:v9",
        "localhost:5000/t/zzz:v1",
        f"localhost:5000/t/bbb@sha256:{'d' * 4}{'a' * 4}{1:056x}",
        "sha256:ffffffffffff",
    ],
)
def test_resolve_unknown_refs(ref: str) -> None:
    with pytest.raises(PlanError, match="no image line built"):
        resolve_ref(ref, LOCKS)


def test_resolve_cli_unknown_is_an_error(tmp_path: Path) -> None:
    root = golden_repo(tmp_path / "repo")
    result = imagectl(root, "resolve", "localhost:5000/t/line:v1")
    assert result.code == 1
    assert "no image line built" in result.stderr


def test_backport_plan_adds_one_increment_per_line_and_skips_done_ones(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for name, count in (("a-pod", 2), ("b-pod", 1), ("c-other", 1)):
        make_line(
            root,
            name,
            repository=f"localhost:5000/t/{name}",
            base=BASE,
            increments={f"{n:04d}-s": "RUN true\n" for n in range(1, count + 1)},
        )
    write(
        root / "increments" / "b-pod" / "0002-fix.Dockerfile.j2",
        '{% include "_shared/fix.Dockerfile.j2" %}\n',
    )
    layout = RepositoryLayout(root=root)
    lines = {name: discover_increments(layout, name) for name in ("a-pod", "b-pod", "c-other")}
    templates = {
        name: tuple((root / i.template).read_text() for i in incs) for name, incs in lines.items()
    }
    plan = plan_backport(
        fix="_shared/fix.Dockerfile.j2",
        summary="Fix it",
        pattern="*-pod",
        lines=lines,
        templates=templates,
    )
    assert [(s.line, str(s.path)) for s in plan.steps] == [
        ("a-pod", "increments/a-pod/0003-fix.Dockerfile.j2")
    ]
    assert plan.already == ("b-pod",)
    assert plan.steps[0].text == '# Back-port: Fix it\n{% include "_shared/fix.Dockerfile.j2" %}\n'


def test_backport_refuses_a_fix_outside_shared(tmp_path: Path) -> None:
    root = golden_repo(tmp_path / "repo")
    result = imagectl(root, "backport", "increments/line/0001-args.Dockerfile.j2")
    assert result.code == 1
    assert "is not a file in increments/_shared/" in result.stderr
