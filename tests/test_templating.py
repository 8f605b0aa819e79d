"""Templates render strictly, in the sandbox, with includes from increments/_shared/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagectl.core import templating
from imagectl.core.errors import TemplateError
from imagectl.core.recipe import IncrementRecipe, check_increment, compose_dockerfile, rendered_line
from imagectl.core.templates import render_template, render_tracked

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


def check(text: str, parent: str = "p:v1") -> IncrementRecipe:
    return check_increment(text, Path("inc.Dockerfile.j2"), parent=parent, where=rendered_line)


def test_increment_with_a_from_that_is_not_its_parent_is_refused() -> None:
    with pytest.raises(TemplateError, match="RUN stands before the first FROM"):
        check("RUN true\nFROM debian:bookworm\n")
    with pytest.raises(TemplateError, match="line 1 of the rendered increment: the last stage"):
        check("FROM debian:bookworm\nRUN true\n")


def test_from_inside_a_heredoc_is_content_not_an_instruction() -> None:
    recipe = check("COPY <<EOF /etc/motd\nFROM here on, be nice\nEOF\n")
    assert not recipe.own_from


def test_unparseable_body_is_refused() -> None:
    with pytest.raises(TemplateError, match="not a valid Dockerfile fragment"):
        check("RUN <<EOF\nunterminated\n")


def test_compose_puts_imagectls_from_first() -> None:
    text = compose_dockerfile(
        parent="r:v1@sha256:ab",
        recipe=check("RUN true"),
        line="l",
        version=2,
        increment=Path("increments/l/0002-x.Dockerfile.j2"),
    ).text
    assert text.splitlines()[1:] == ["FROM r:v1@sha256:ab", "RUN true"]


PLAIN_TEXTS = [
    "RUN echo x > /f\n",
    "# no newline at the end\nRUN true",
    "RUN printf '}}' && echo '%}' '#}' '{ {' '{ %'\n\n\n",
    "RUN echo caf\u00e9 \u2603 > /f\n   \n\tRUN true\n",
    "",
]


@pytest.mark.parametrize("text", PLAIN_TEXTS)
def test_plain_text_renders_without_jinja_exactly_as_jinja_renders_it(
    tmp_path: Path, text: str
) -> None:
    increments = tmp_path / "increments"
    template = write(increments / "line" / "0001-x.Dockerfile.j2", text)
    via_jinja = templating.render_with_jinja(increments, template, {})
    assert render_tracked(increments, template, {}) == via_jinja
    assert via_jinja[0] == text


def test_only_a_template_with_markup_loads_jinja(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from imagectl.core.templates import render_template; "
        f"root = Path({str(tmp_path / 'increments')!r}); "
        "print(render_template(root, root / sys.argv[1], {'v': 3}).strip(), "
        "'jinja2' in sys.modules)"
    )
    write(tmp_path / "increments" / "line" / "0001-a.Dockerfile.j2", "RUN echo plain\n")
    write(tmp_path / "increments" / "line" / "0002-b.Dockerfile.j2", "RUN echo {{ v }}\n")
    ran = [
        subprocess.run(
            [sys.executable, "-c", script, f"line/{name}"], capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        for name in ("0001-a.Dockerfile.j2", "0002-b.Dockerfile.j2")
    ]  # fmt: skip
    assert ran == ["RUN echo plain False", "RUN echo 3 True"]
