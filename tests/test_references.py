"""Image references (core/references.py): the one place that takes them apart and makes them."""

from __future__ import annotations

import pytest

from imagectl.core.references import (
    ImageRef,
    digest_of,
    is_pinned,
    names_in,
    parse_reference,
    pinned,
    repository_of,
    without_digest,
)

DIGEST = "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("localhost:5000/pods/noble:v3", ("localhost:5000", "pods/noble", "v3", "")),
        (f"localhost:5000/pods/noble:v3@{DIGEST}", ("localhost:5000", "pods/noble", "v3", DIGEST)),
        (f"registry.example/a@{DIGEST}", ("registry.example", "a", "", DIGEST)),
        ("localhost/a/b", ("localhost", "a/b", "", "")),
        ("busybox:1.36", ("docker.io", "library/busybox", "1.36", "")),
        ("org/app", ("docker.io", "org/app", "", "")),
    ],
)
def test_a_reference_is_split_as_registries_address_it(
    ref: str, parts: tuple[str, str, str, str]
) -> None:
    host, path, tag, digest = parts
    assert parse_reference(ref) == ImageRef(host=host, path=path, tag=tag, digest=digest)


@pytest.mark.parametrize(
    ("ref", "repository"),
    [
        ("localhost:5000/pods/noble:v3", "localhost:5000/pods/noble"),
        (f"localhost:5000/pods/noble:v3@{DIGEST}", "localhost:5000/pods/noble"),
        (f"localhost:5000/pods/noble@{DIGEST}", "localhost:5000/pods/noble"),
        ("localhost:5000/noble", "localhost:5000/noble"),  # the port is not a tag
        ("busybox:1.36", "busybox"),
    ],
)
def test_the_repository_as_written_agrees_with_the_parsed_one(ref: str, repository: str) -> None:
    assert repository_of(ref) == repository
    assert parse_reference(ref).repository == repository


def test_pinning_and_unpinning_are_inverse() -> None:
    tag = "localhost:5000/pods/noble:v3"
    assert pinned(tag, "") == tag  # a local image: no digest to pin by
    ref = pinned(tag, DIGEST)
    assert (ref, is_pinned(ref), is_pinned(tag)) == (f"{tag}@{DIGEST}", True, False)
    assert (without_digest(ref), digest_of(ref), digest_of(tag)) == (tag, DIGEST, "")


def test_every_echoed_form_of_a_reference_is_named_but_never_a_bare_word() -> None:
    ref = f"localhost:5000/pods/noble:v3@{DIGEST}"
    assert names_in(ref) == (
        ref,
        "localhost:5000/pods/noble:v3",
        "localhost:5000/pods/noble",
        "pods/noble",
    )
    assert names_in("localhost:5000/tls:v1") == (
        "localhost:5000/tls:v1",
        "localhost:5000/tls:v1",
        "localhost:5000/tls",
    )
