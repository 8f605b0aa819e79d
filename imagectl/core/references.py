"""Image references (`host:5000/a/b:v3@sha256:...`), parsed once into their parts (pure)."""

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


def split_reference(ref: str) -> ImageRef:
    """`host:5000/a/b:v3@sha256:...` -> its parts; a name without a host is Docker Hub's. The
    tag stays "" when the reference names none (a digest, or the implied latest)."""
    name, _, digest = ref.partition("@")
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
    plain = ref.split("@", 1)[0]
    head, _, tail = plain.rpartition("/")
    repository = f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]
    path = repository.split("/", 1)[1] if "/" in repository else ""
    return (ref, plain, repository, *([path] if "/" in path else []))
