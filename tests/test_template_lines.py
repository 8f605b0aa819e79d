"""Each line of a rendered increment maps back to the line of its template."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagectl.core.templates import describe_line, render_template
from imagectl.core.templating import _MARKER, _mark_source, make_environment, template_lines

from .helpers import write


def lines(*texts: str) -> str:
    """A template written one line per argument."""
    return "".join(f"{text}\n" for text in texts)


APT = lines(
    "RUN apt-get update",
    "RUN apt-get install -y {{ package }}",
    "RUN rm -rf /var/lib/apt/lists/*",
)
MACROS = lines(
    "{% macro apt(packages) -%}",
    "RUN apt-get update \\",
    ' && apt-get install -y {{ packages | join(" ") }}',
    "{%- endmacro %}",
)


def lines_of(tmp_path: Path, text: str, **variables: object) -> tuple[int, ...] | None:
    increments = tmp_path / "increments"
    write(increments / "_shared" / "apt.j2", APT)
    write(increments / "_shared" / "macros.j2", MACROS)
    template = increments / "line" / "0001-x.Dockerfile.j2"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_bytes(text.encode("utf-8"))  # bytes: keep \r\n as written
    lines = template_lines(increments, template, variables)
    if lines is not None:
        rendered = render_template(increments, template, variables)
        assert len(lines) == len(rendered.splitlines())
    return lines


def test_plain_text_maps_one_to_one(tmp_path: Path) -> None:
    assert lines_of(tmp_path, "RUN a\nRUN b\n\nRUN c\n") == (1, 2, 3, 4)


def test_no_trailing_newline_and_empty_output(tmp_path: Path) -> None:
    assert lines_of(tmp_path, "RUN a\nRUN b") == (1, 2)
    assert lines_of(tmp_path, "") == ()
    assert lines_of(tmp_path, "{# nothing #}") == ()


def test_crlf_source(tmp_path: Path) -> None:
    assert lines_of(tmp_path, "RUN a\r\n{% if true %}RUN b{% endif %}\r\nRUN c\r\n") == (1, 2, 3)


def test_if_block_removes_lines(tmp_path: Path) -> None:
    text = "RUN a\n{% if debug %}\nRUN debug\n{% endif %}\nRUN b\n"
    assert lines_of(tmp_path, text, debug=False) == (1, 4, 5)
    assert lines_of(tmp_path, text, debug=True) == (1, 2, 3, 4, 5)


def test_whitespace_control(tmp_path: Path) -> None:
    text = "RUN a\n{% if debug -%}\nRUN debug\n{% endif -%}\nRUN b\n"
    assert lines_of(tmp_path, text, debug=True) == (1, 3, 5)
    assert lines_of(tmp_path, text, debug=False) == (1, 5)
    # `{%-` strips the newline before the tag: the joined line ends on the tag's line.
    text = "RUN a \\\n    {%- if debug %}\n    && b{% endif %}\n"
    assert lines_of(tmp_path, text, debug=True) == (2, 3)
    text = "RUN a\n\n{{- ' b' }}\n{#- gone #}\n\nRUN c\n"
    assert lines_of(tmp_path, text) == (4, 5, 6)


def test_for_loop_lines_map_to_the_body(tmp_path: Path) -> None:
    text = "{% for p in packages -%}\nRUN install {{ p }}\n{% endfor -%}\nRUN done\n"
    assert lines_of(tmp_path, text, packages=["a", "b", "c"]) == (2, 2, 2, 4)
    text = "{% for p in packages %}RUN install {{ p }}\n{% endfor %}RUN done\n"
    assert lines_of(tmp_path, text, packages=["a", "b", "c"]) == (1, 1, 1, 2)


def test_include_maps_to_the_include_line(tmp_path: Path) -> None:
    text = '# first\n{% include "_shared/apt.j2" %}\nRUN after\n'
    assert lines_of(tmp_path, text, package="curl") == (1, 2, 2, 2, 2, 3)
    # An include on the last line, with no newline after it.
    text = '# first\n{% include "_shared/apt.j2" %}'
    assert lines_of(tmp_path, text, package="curl") == (1, 2, 2, 2)


def test_imported_macro_maps_to_the_call_line(tmp_path: Path) -> None:
    text = lines(
        '{% import "_shared/macros.j2" as m -%}',
        "# install",
        '{{ m.apt(["curl", "git"]) }}',
        "RUN done",
    )
    assert lines_of(tmp_path, text) == (2, 3, 3, 4)


def test_multi_line_expression_maps_to_its_last_line(tmp_path: Path) -> None:
    text = "RUN echo {{\n    version\n}} \\\n && true\n"
    assert lines_of(tmp_path, text, version=3) == (3, 4)


def test_comment_spanning_lines(tmp_path: Path) -> None:
    text = "RUN a\n{# a comment\n   over two lines #}\nRUN b\n"
    assert lines_of(tmp_path, text) == (1, 3, 4)


def test_raw_block(tmp_path: Path) -> None:
    text = "{% raw %}\nRUN echo {{ not a variable }}\n{% endraw %}\nRUN b\n"
    assert lines_of(tmp_path, text) == (1, 2, 3, 4)
    text = "{% raw -%}\nRUN echo {{ x }}\n{%- endraw %}\nRUN b\n"
    assert lines_of(tmp_path, text) == (3, 4)


def test_heredoc_body(tmp_path: Path) -> None:
    text = lines(
        "RUN <<EOF",
        "set -e",
        "{% if debug -%}",
        "set -x",
        "{% endif -%}",
        "echo {{ version }}",
        "EOF",
        "RUN b",
    )
    assert lines_of(tmp_path, text, debug=True, version=3) == (1, 2, 4, 6, 7, 8)
    assert lines_of(tmp_path, text, debug=False, version=3) == (1, 2, 6, 7, 8)


def test_no_map_when_the_template_does_not_render(tmp_path: Path) -> None:
    assert lines_of(tmp_path, "RUN {{ missing }}\n") is None
    assert lines_of(tmp_path, "{% if %}\n") is None
    assert lines_of(tmp_path, '{% include "_shared/nope.j2" %}\n') is None


def test_no_map_for_extends(tmp_path: Path) -> None:
    write(tmp_path / "increments" / "_shared" / "base.j2", "RUN a\n{% block b %}{% endblock %}\n")
    text = '{% extends "_shared/base.j2" %}{% block b %}RUN b{% endblock %}'
    assert lines_of(tmp_path, text) is None


def test_no_map_when_a_value_looks_like_a_marker(tmp_path: Path) -> None:
    assert lines_of(tmp_path, "RUN {{ x }}\n", x="\ue0009\ue001") is None
    assert lines_of(tmp_path, "RUN {{ x }}\n", x="\ue000 alone") == (1,)


WHITESPACE_CONTROL = (
    "RUN a\n\n{%- if true %} b{% endif %}\n",
    "{% if true -%}\n\n  RUN a\n{%- endif %}\n",
    "RUN a\n  {{- ' b' -}}  \n\nRUN c\n",
    "RUN a\n\n{#- comment\n -#}\n\nRUN b\n",
    "{% raw -%}\n\n RUN a \n\n{%- endraw %}\n",
    '{% include "_shared/apt.j2" -%}\n\nRUN b\n',
)
OTHERS = (
    "",
    "RUN a",
    "RUN a\r\nRUN b\r\n",
    "{% for p in packages %}RUN {{ p }}\n{% endfor %}",
    '{% import "_shared/macros.j2" as m %}\n{{ m.apt(packages) }}\n',
    "{% filter upper %}\nrun a\n{% endfilter %}\n",
)


def marked_output(tmp_path: Path, text: str) -> tuple[str, str]:
    """(the marked copy's output with markers removed, the normal output)."""
    increments = tmp_path / "increments"
    write(increments / "_shared" / "apt.j2", APT)
    write(increments / "_shared" / "macros.j2", MACROS)
    template = write(increments / "line" / "0001-x.Dockerfile.j2", text)
    variables = {"package": "curl", "packages": ["curl", "git"]}
    env = make_environment(increments)
    marked = _mark_source(env, text)
    assert marked is not None
    output = env.from_string(marked).render(**variables)
    assert _MARKER.search(output) or not output.strip()
    return _MARKER.sub("", output), render_template(increments, template, variables)


@pytest.mark.parametrize("text", WHITESPACE_CONTROL + OTHERS)
def test_markers_never_change_the_output(tmp_path: Path, text: str) -> None:
    stripped, expected = marked_output(tmp_path, text)
    assert stripped == expected


@pytest.mark.parametrize("text", WHITESPACE_CONTROL)
def test_markers_before_every_source_newline_would_change_the_output(
    tmp_path: Path, text: str
) -> None:
    # The cases above depend on whitespace control: blindly marking the source breaks them.
    increments = tmp_path / "increments"
    write(increments / "_shared" / "apt.j2", APT)
    template = write(increments / "line" / "0001-x.Dockerfile.j2", text)
    naive = text.replace("\n", "\ue0001\ue001\n")
    output = make_environment(increments).from_string(naive).render(package="curl")
    assert _MARKER.sub("", output) != render_template(increments, template, {"package": "curl"})


def test_describe_line() -> None:
    shown = Path("increments") / "x" / "0003-y.Dockerfile.j2"
    assert describe_line(shown, (1, 4, 7), 3) == "line 7 of increments/x/0003-y.Dockerfile.j2"
    assert describe_line(shown, None, 3) == "line 3 of the rendered increment"
    assert describe_line(shown, (1, 4, 7), 4) == "line 4 of the rendered increment"
    assert describe_line(shown, (1, 4, 7), 0) == "line 0 of the rendered increment"
