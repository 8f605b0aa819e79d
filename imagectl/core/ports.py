"""The small interfaces the workflows need from the outside world, and the values they return.

Each outside system has one adapter behind one of these Protocols (docker_engine, registry,
git_repo); tests of the decisions pass in-memory fakes (tests/fakes.py) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from imagectl.core.archive import Download, Missing
from imagectl.core.artifacts import ArchiveFile, Artifact, Descriptor
from imagectl.core.layerfiles import FileSelection, LayerChange
from imagectl.core.model import Builder
from imagectl.core.references import digest_of, without_digest

Say = Callable[[str], None]  # one line of progress or output for the user


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck:
    """An image's HEALTHCHECK: the test and its timings (nanoseconds; 0 is Docker's default)."""

    test: tuple[str, ...]  # ("CMD-SHELL", "cmd"), ("CMD", arg, ...) or ("NONE",)
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    @classmethod
    def from_docker(cls, raw: Mapping[str, Any]) -> Healthcheck:
        return cls(
            test=tuple(str(part) for part in raw.get("Test") or ()),
            interval=int(raw.get("Interval") or 0),
            timeout=int(raw.get("Timeout") or 0),
            start_period=int(raw.get("StartPeriod") or 0),
            start_interval=int(raw.get("StartInterval") or 0),
            retries=int(raw.get("Retries") or 0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """Every field of an image's config (Docker's `Config`) that a Dockerfile can set, typed."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    on_build: tuple[str, ...] = ()
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    shell: tuple[str, ...] = ()

    @classmethod
    def from_docker(cls, raw: Mapping[str, Any]) -> ImageConfig:
        """From the `Config` object of `docker image inspect`."""

        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(item) for item in raw.get(key) or ())

        health = raw.get("Healthcheck")
        return cls(
            env=strings("Env"),
            cmd=strings("Cmd"),
            entrypoint=strings("Entrypoint"),
            working_dir=str(raw.get("WorkingDir") or ""),
            user=str(raw.get("User") or ""),
            labels={str(k): str(v) for k, v in (raw.get("Labels") or {}).items()},
            exposed_ports=tuple(sorted(str(p) for p in raw.get("ExposedPorts") or {})),
            volumes=tuple(sorted(str(v) for v in raw.get("Volumes") or {})),
            on_build=strings("OnBuild"),
            stop_signal=str(raw.get("StopSignal") or ""),
            healthcheck=Healthcheck.from_docker(health) if health else None,
            shell=strings("Shell"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    """What imagectl needs to know about one image in the engine."""

    image_id: str
    layers: tuple[str, ...]  # RootFS.Layers diff ids, bottom first
    size: int
    repo_digests: tuple[str, ...] = ()  # e.g. localhost:5000/x@sha256:...
    config: ImageConfig = field(default_factory=ImageConfig)

    def digest_in(self, repository: str) -> str:
        """The registry digest this image has in `repository`, or ""."""
        for entry in self.repo_digests:
            if without_digest(entry) == repository:
                return digest_of(entry)
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteImage:
    """What a registry says a tag names."""

    digest: str  # the manifest digest: what `repo@sha256:...` pins
    config_digest: str  # the image config's digest, which is the engine's image id


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteLayers:
    """An image's layers as its registry stores them: each layer's blob (bottom first) and
    the config's diff ids, the uncompressed layers' digests, which the engine's image calls
    its layers (RootFS.Layers): the same values a layer-prefix check compares."""

    digest: str  # the manifest digest
    image_id: str  # the config's digest
    blobs: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One path of an image's file tree, as compared by verify and checkpoint (never mtimes)."""

    kind: str  # tar member type: "0" file, "2" symlink, "5" directory, ...
    mode: int
    uid: int
    gid: int
    link: str = ""  # symlink or hard link target
    sha256: str = ""  # content hash of a regular file
    device: tuple[int, int] = (0, 0)  # major, minor of a device node
    xattrs: tuple[tuple[str, str], ...] = ()  # extended attributes (name, value), sorted

    def difference(self, other: FileEntry) -> str:
        """The first way `other` differs: type, content, mode, owner, link or xattr ("" if
        equal)."""
        if self.kind != other.kind:
            return "type"
        if self.sha256 != other.sha256 or self.device != other.device:
            return "content"
        if self.mode != other.mode:
            return "mode"
        if (self.uid, self.gid) != (other.uid, other.gid):
            return "owner"
        if self.link != other.link:
            return "link"
        if self.xattrs != other.xattrs:
            return "xattr"
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TestRun:
    """What one test script gave in a container of an image."""

    __test__ = False  # not a pytest class

    exit_code: int | None  # None: it did not end within its timeout and was killed
    output: str  # its stdout and stderr, interleaved; for a start-up test that failed, also the
    # container's own output
    seconds: float

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class ImageBuilder(Protocol):
    """Builds images: BuildKit (buildx) or the legacy builder."""

    @property
    def builder(self) -> Builder: ...

    @property
    def engine_version(self) -> str:
        """The engine's version, known after check()."""
        ...

    def check(self) -> None:
        """Raise EngineError when the engine does not answer."""
        ...

    def describe(self) -> str:
        """One line naming the engine (endpoint, version) and the builder."""
        ...

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        on_output: Say,
        secrets: Mapping[str, str] | None = None,
        no_cache: bool = False,
        labels: Mapping[str, str] | None = None,
        proxy: str = "",
        contexts: Mapping[str, Path] | None = None,
    ) -> str:
        """Build and return the new image id; `labels` are set on it (`--label`); `proxy`
        is the http proxy its steps use (predefined arguments: not in its history)."""
        ...


class ImageStore(Protocol):
    """The engine's images: look up, tag, read, flatten, remove."""

    def inspect_image(self, ref: str) -> ImageInfo | None: ...

    def pull(self, ref: str) -> None: ...

    def tag(self, image_id: str, ref: str) -> None: ...

    def read_files(self, image: str, wanted: FileSelection) -> dict[str, bytes]:
        """The selected regular files of `image` as its containers see them (every layer
        merged). Never the whole image: only the selected files are read."""
        ...

    def layer_changes(
        self, image: str, wanted: FileSelection, *, above: int
    ) -> tuple[LayerChange, ...] | None:
        """What each layer of `image` above its first `above` layers changes among the
        selected files, bottom first; None when this engine's layers cannot be read one by
        one from here (a remote engine, another storage driver)."""
        ...

    def file_tree(self, image: str) -> dict[str, FileEntry]: ...

    def import_rootfs(self, source: str, *, changes: list[str], tag: str) -> str:
        """A one-layer image of `source`'s files (`docker import`, with its --change list)."""
        ...

    def apply_config(self, image: str, *, instructions: list[str], tag: str) -> str:
        """`FROM image` plus Dockerfile instructions that only set config, built, tagged `tag`:
        the same layers, another config. Returns the new image id."""
        ...

    def remove_image(self, ref: str) -> None: ...

    def capture_address(self) -> str | None:
        """Where on this host the engine's build containers reach it; None for a remote one."""
        ...

    def remove_leftovers(self) -> tuple[str, ...]:
        """Remove the containers imagectl processes on this host made and left behind when
        they were killed; say what each was. An engine that is not there has none."""
        ...

    def run_test(self, image: str, script: Path, *, start: bool, timeout: float) -> TestRun:
        """Run the shell script `script` (a file on this host, mounted read-only) with /bin/sh
        in a new container of `image` as its default user; with `start`, in a container started
        with the image's own entrypoint and command, through `docker exec`. The container is
        removed afterwards; a test still running after `timeout` seconds is killed."""
        ...


class Registry(Protocol):
    def lookup(self, ref: str) -> RemoteImage | None:
        """What `ref` names in its registry, or None when the tag is absent."""
        ...

    def exists(self, ref: str) -> str | None:
        """The manifest digest `ref` (a tag or a digest) names now, or None: one HEAD."""
        ...

    def push(self, ref: str, *, on_output: Say) -> str:
        """Push the local `ref`; return the manifest digest the registry stored."""
        ...

    def attach(self, subject: str, artifact: Artifact) -> str:
        """Store `artifact` as a referrer of `subject` (repo@digest), listed under the
        referrers tag; return the artifact manifest's digest (the same for the same artifact)."""
        ...

    def referrers(self, subject: str) -> tuple[Descriptor, ...]:
        """The artifacts listed as referrers of `subject` (repo@digest)."""
        ...

    def image_layers(self, ref: str) -> RemoteLayers | None:
        """The layers of the image `ref` (repo@digest) names, from its manifest and config
        (two small reads), or None when the registry does not have it."""
        ...

    def open_blob(self, ref: str, blob: Descriptor) -> AbstractContextManager[IO[bytes]]:
        """The blob `blob` of `ref`'s repository, streamed as it is read (never held whole);
        read to its end, it is checked against its digest (a RegistryError if it differs)."""
        ...

    def put_archive(
        self,
        ref: str,
        *,
        artifact_type: str,
        config: bytes,
        config_media_type: str,
        files: Sequence[ArchiveFile],
    ) -> str:
        """Store `files` (one layer each, in order, streamed from disk; blobs the repository
        has are not sent again) and `config` as an OCI artifact under the tag `ref`
        (host/repo:tag); return its manifest digest. The same archive again returns the same
        digest; a tag that names another manifest is never overwritten (a RegistryError)."""
        ...

    def read_archive(self, ref: str) -> tuple[bytes, tuple[Descriptor, ...]] | None:
        """The config and the layer descriptors (their titles in the annotations) of the
        archive `ref` (tag or digest) names, or None; the files are read with `open_blob`."""
        ...

    def copy_image(self, source: str, repository: str) -> str:
        """Copy the image (or index) `source` names into `repository` (host/repo), blobs
        mounted across repositories when the registry is the same; kept by digest, no tag.
        Return its manifest digest (the source's)."""
        ...


class Git(Protocol):
    def commit_of(self, path: Path) -> str:
        """The last commit that changed `path`; "uncommitted" if it has changes or no git."""
        ...

    def commit_time(self, commit: str) -> str:
        """When `commit` was made (its committer date), ISO 8601 in UTC: `2026-11-25T12:00:00Z`."""
        ...

    def remote_url(self) -> str:
        """The URL of the remote `origin` (else of the first remote); "" without one."""
        ...

    def identity(self) -> str:
        """The configured git user as "Name <email>"; "" when none is configured."""
        ...


class CiGit(Protocol):
    """The git operations of the CI job (ci_job), on the repository's work tree."""

    def dirty_paths(self) -> tuple[str, ...]: ...
    def changed_paths(self, folder: str) -> tuple[str, ...]: ...
    def commit(self, paths: tuple[str, ...], message: str) -> str: ...
    def rev(self, ref: str) -> str: ...
    def fetch(self, remote: str, branch: str) -> None: ...
    def push(self, remote: str, branch: str) -> bool: ...
    def rebase_onto(self, upstream: str) -> bool: ...
    def reset_hard(self, ref: str) -> None: ...


class Capture(Protocol):
    """A record proxy for one build (core/archive's Download and Missing): listening from the
    start, answering once serve() was called (it may be called while the build runs)."""

    @property
    def url(self) -> str: ...
    def serve(self) -> None: ...
    def captured(self) -> tuple[Download, ...]: ...
    def missing(self) -> tuple[Missing, ...]: ...


class Replay(Protocol):
    """A proxy that serves an archive's files and nothing else, for an offline rebuild."""

    @property
    def url(self) -> str: ...
    def served(self) -> tuple[str, ...]: ...
    def missing(self) -> tuple[Missing, ...]: ...


class Inputs(Protocol):
    """Capturing a build's downloads, replaying them, and checking apt's signatures."""

    def record(self, host: str, store: Path) -> AbstractContextManager[Capture]:
        """A proxy listening on `host` only, keeping every response in `store`."""
        ...

    def replay(self, host: str, files: Mapping[str, Path]) -> AbstractContextManager[Replay]:
        """A proxy listening on `host` only, serving `files` (by URL) and nothing else."""
        ...

    def verify_signed(self, data: bytes, keyrings: Sequence[bytes]) -> bytes | None:
        """The signed text of a clearsigned file (InRelease) when a key of `keyrings`
        verifies it, else None."""
        ...

    def verify_detached(self, data: bytes, signature: bytes, keyrings: Sequence[bytes]) -> bool:
        """Whether `signature` (Release.gpg) is a good signature of `data` by such a key."""
        ...


class Adapters(Protocol):
    """The outside systems a command talks to, one adapter each."""

    @property
    def builder(self) -> ImageBuilder: ...
    @property
    def images(self) -> ImageStore: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def git(self) -> Git: ...
    def ci_git(self) -> CiGit: ...
    @property
    def inputs(self) -> Inputs: ...
