"""Templates render strictly, in the sandbox, with includes from increments/_shared/."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.errors import TemplateError
from imagectl.recipe import check_increment_body, compose_dockerfile
from imagectl.templating import render_template

from .helpers import write


def render(tmp_path: Path, text: str, **variables: object) -> str:
    template = write(tmp_path / "increments" / "line" / "0001-x.Dockerfile.j2", text)
    return render_template(tmp_path / "increments", template, variables)


def test_variables_render(tmp_path: Path) -> None:
    text = render(
        tmp_path, "RUN echo {{ codename }} v{{ version }}\n", codename="bookworm", version=3
    )
    assert text == "RUN echo bookworm v3\n"


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="undefined variable: 'codenam' is undefined") as info:
        render(tmp_path, "# first\nRUN echo {{ codenam }}\n", codename="x")
    message = str(info.value)
    assert "line 2 of increments/line/0001-x.Dockerfile.j2" in message
    assert "[vars]" in message


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="line 3: template syntax error") as info:
        render(tmp_path, "RUN true\n\n{% if x %}\nRUN false\n")
    assert "increments/line/0001-x.Dockerfile.j2" in str(info.value)


def test_shared_include(tmp_path: Path) -> None:
    write(tmp_path / "increments" / "_shared" / "oom.j2", "RUN echo {{ line }}\n")
    text = render(tmp_path, '{% include "_shared/oom.j2" %}', line="pods")
    assert text == "RUN echo pods\n"


def test_missing_include_is_named(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"'_shared/nope\.j2', which does not exist"):
        render(tmp_path, '{% include "_shared/nope.j2" %}')


def test_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="sandbox refused"):
        render(tmp_path, "RUN echo {{ ''.__class__.__mro__[1].__subclasses__() }}\n")


def test_increment_with_its_own_from_is_refused() -> None:
    with pytest.raises(TemplateError, match="line 2 has its own FROM"):
        check_increment_body("RUN true\nFROM debian:bookworm\n", Path("inc.Dockerfile.j2"))


def test_from_inside_a_heredoc_is_content_not_an_instruction() -> None:
    check_increment_body("COPY <<EOF /etc/motd\nFROM here on, be nice\nEOF\n", Path("x"))


def test_unparseable_body_is_refused() -> None:
    with pytest.raises(TemplateError, match="not a valid Dockerfile fragment"):
        check_increment_body("RUN <<EOF\nunterminated\n", Path("x"))


def test_compose_puts_imagectls_from_first() -> None:
    text = compose_dockerfile(
        parent="r:v1@sha256:ab",
        body="RUN true",
        line="l",
        version=2,
        increment=Path("increments/l/0002-x.Dockerfile.j2"),
    )
    assert text.splitlines()[1:] == ["FROM r:v1@sha256:ab", "RUN true"]
