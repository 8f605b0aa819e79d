"""Image references (`host:5000/a/b:v3@sha256:...`): the one place that takes them apart or
puts them together (pure).

The lock, the config and the Dockerfiles keep references as the text a person wrote; every
question about one (its repository, its digest, is it pinned) and every pinned reference made
is answered here, so the build, the reference Dockerfile, resolve and the adapters agree."""

from __future__ import annotations

from dataclasses import dataclass

DOCKER_HUB = "docker.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRef:
    """A reference split as registries and the engine address it."""

    host: str  # with port, as docker names it (the key of docker's credential store)
    path: str  # the repository inside the registry, e.g. pods/noble
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """The repository as written in a reference: host/path (Docker Hub's without host)."""
        if self.host == DOCKER_HUB:
            return self.path.removeprefix("library/")
        return f"{self.host}/{self.path}"

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.host == DOCKER_HUB else self.host


def is_pinned(ref: str) -> bool:
    """Whether `ref` names its image by digest (`...@sha256:...`)."""
    return "@" in ref


def pinned(ref: str, digest: str) -> str:
    """`ref` pinned by `digest`, or `ref` itself when there is no digest (a local image)."""
    return f"{ref}@{digest}" if digest else ref


def digest_of(ref: str) -> str:
    """The digest a pinned reference names, "" for a tag."""
    return ref.partition("@")[2]


def without_digest(ref: str) -> str:
    """The reference as written before its `@digest`."""
    return ref.partition("@")[0]


def repository_of(ref: str) -> str:
    """The repository as written: `host:5000/a/b:v3@sha256:...` -> `host:5000/a/b`. Kept as
    written (no Docker Hub expansion), since it is compared with repositories as written."""
    head, slash, last = without_digest(ref).rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}"


def parse_reference(ref: str) -> ImageRef:
    """`host:5000/a/b:v3@sha256:...` -> its parts; a name without a host is Docker Hub's. The
    tag stays "" when the reference names none (a digest, or the implied latest)."""
    name, digest = without_digest(ref), digest_of(ref)
    head, slash, last = name.rpartition("/")
    repository, _, tag = last.partition(":")
    full = f"{head}{slash}{repository}"
    first = full.split("/", 1)[0]
    if "/" in full and ("." in first or ":" in first or first == "localhost"):
        host, path = full.split("/", 1)
    else:
        host, path = DOCKER_HUB, full if "/" in full else f"library/{full}"
    return ImageRef(host=host, path=path, tag=tag, digest=digest)


def names_in(ref: str) -> tuple[str, ...]:
    """Every form in which docker or a registry echoes `ref`: whole, without digest, without
    tag, and the path without the host (Harbor's messages). Never a bare word: cutting "tls" out
    of the text would cut docker's own "tls:" too."""
    plain, repository = without_digest(ref), repository_of(ref)
    path = repository.split("/", 1)[1] if "/" in repository else ""
    return (ref, plain, repository, *([path] if "/" in path else []))
