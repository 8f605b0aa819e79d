"""In-memory fakes of the ports (image builder, image store, registry, git), so that the
decisions (adopt or refuse a tag, the publish race, the CI job's retries) are tested in
milliseconds; the engine tests prove the real adapters."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from imagectl.core.artifacts import (
    MANIFEST,
    ArchiveFile,
    Artifact,
    Descriptor,
    archive_manifest,
    archive_parts,
    artifact_manifest,
    blob_digest,
    descriptor_of,
)
from imagectl.core.errors import GitError, RegistryError, TagImmutableError
from imagectl.core.layerfiles import FileSelection, LayerChange
from imagectl.core.model import Builder
from imagectl.core.ports import (
    FileEntry,
    ImageConfig,
    ImageInfo,
    RemoteImage,
    RemoteLayers,
    Say,
    TestRun,
)

_ids = itertools.count(1)


def fake_id(label: str) -> str:
    return "sha256:" + hashlib.sha256(f"{label}-{next(_ids)}".encode()).hexdigest()


@dataclass(frozen=True)
class TestCall:
    """One test the fake engine ran: on which image, which script, its text."""

    __test__ = False  # not a pytest class

    image: str
    script: str  # the file name it ran under
    text: str
    start: bool
    timeout: float


@dataclass
class FakeImages:
    """The engine's image store: images by id, tags naming ids. Tests pass unless `test_codes`
    names their script (its file name) with another exit code, or None for a timeout."""

    images: dict[str, ImageInfo] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    test_codes: dict[str, int | None] = field(default_factory=dict)
    test_calls: list[TestCall] = field(default_factory=list)
    # Where a capture proxy listens: loopback, so the fakes exercise a real (idle) proxy;
    # None plays an engine on another host.
    capture_host: str | None = "127.0.0.1"

    def capture_address(self) -> str | None:
        return self.capture_host

    def add(self, *, layers: tuple[str, ...], tag: str = "", digest: str = "") -> ImageInfo:
        image_id = fake_id("image")
        repo = tag.rsplit(":", 1)[0] if tag else ""
        info = ImageInfo(
            image_id=image_id,
            layers=layers,
            size=100 * len(layers),
            repo_digests=(f"{repo}@{digest}",) if digest else (),
        )
        self.images[image_id] = info
        if tag:
            self.tags[tag] = image_id
        return info

    def inspect_image(self, ref: str) -> ImageInfo | None:
        self.calls.append(f"inspect {ref}")
        image_id = self.tags.get(ref, ref)
        if "@" in ref and ref not in self.tags:
            repo, _, digest = ref.partition("@")
            found = [
                i
                for i in self.images.values()
                if f"{repo.rsplit(':', 1)[0]}@{digest}" in i.repo_digests
            ]
            return found[0] if found else None
        return self.images.get(image_id)

    def pull(self, ref: str) -> None:
        self.calls.append(f"pull {ref}")

    def tag(self, image_id: str, ref: str) -> None:
        self.calls.append(f"tag {ref}")
        self.tags[ref] = image_id

    def read_files(self, image: str, wanted: FileSelection) -> dict[str, bytes]:
        return {}

    def layer_changes(
        self, image: str, wanted: FileSelection, *, above: int
    ) -> tuple[LayerChange, ...] | None:
        return None  # a store whose layers cannot be read one by one

    def file_tree(self, image: str) -> dict[str, FileEntry]:
        return {}

    def apply_config(self, image: str, *, instructions: list[str], tag: str) -> str:
        raise NotImplementedError

    def import_rootfs(self, source: str, *, changes: list[str], tag: str) -> str:
        raise NotImplementedError

    def remove_leftovers(self) -> tuple[str, ...]:
        return ()

    def remove_image(self, ref: str) -> None:
        self.tags.pop(ref, None)

    def run_test(self, image: str, script: Path, *, start: bool, timeout: float) -> TestRun:
        text = script.read_text()
        self.test_calls.append(TestCall(image, script.name, text, start, timeout))
        code = self.test_codes.get(script.name, 0)
        return TestRun(exit_code=code, output=f"ran {script.name}\n", seconds=0.01)


@dataclass
class FakeBuilder:
    """Builds by adding one layer on top of the Dockerfile's last FROM, as the engine would."""

    images: FakeImages
    builder: Builder = "buildx"
    built: list[str] = field(default_factory=list)  # the Dockerfiles it was given
    proxies: list[str] = field(default_factory=list)  # the proxy each build was given
    engine_version: str = "26.1.5-fake"

    def check(self) -> None:
        return None

    def describe(self) -> str:
        return f"engine fake, Docker {self.engine_version}, builder {self.builder}"

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
        text = dockerfile.read_text()
        self.proxies.append(proxy)
        self.built.append(text)
        parent_ref = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")][-1]
        parent = self.images.inspect_image(parent_ref)
        assert parent is not None, f"the fake engine has no {parent_ref}"
        # Deterministic, like BuildKit's cache: the same Dockerfile on the same parent gives
        # the same image again (what a rerun after a crash sees).
        body = "\n".join(line for line in text.splitlines() if not line.startswith("FROM "))
        key = hashlib.sha256(f"{parent.image_id}\n{body}".encode()).hexdigest()
        # Labels go into the config, so they change the image id, never its layers.
        config = ImageConfig(labels={**parent.config.labels, **(labels or {})})
        image_id = (
            "sha256:"
            + hashlib.sha256(f"{key}\n{sorted(config.labels.items())}".encode()).hexdigest()
        )
        if image_id not in self.images.images:
            self.images.images[image_id] = ImageInfo(
                image_id=image_id,
                layers=(*parent.layers, f"sha256:{key[::-1]}"),
                size=1,
                config=config,
            )
        return image_id


@dataclass
class FakeRegistry:
    """Tags naming (manifest digest, image id); `after_push` lets a test race another pusher."""

    tags: dict[str, RemoteImage] = field(default_factory=dict)
    immutable: bool = False
    after_push: dict[str, RemoteImage] = field(default_factory=dict)
    pushes: list[str] = field(default_factory=list)
    images: FakeImages | None = None
    referred: dict[str, list[Descriptor]] = field(default_factory=dict)  # subject -> referrers
    artifacts: dict[str, Artifact] = field(default_factory=dict)  # by manifest digest
    layered: dict[str, RemoteLayers] = field(default_factory=dict)  # repo@digest -> its layers
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> content
    blob_reads: list[str] = field(default_factory=list)  # digests, in the order opened
    archives: dict[str, bytes] = field(default_factory=dict)  # host/repo:tag -> manifest
    blob_uploads: list[str] = field(default_factory=list)  # digests, in the order sent
    copied: set[str] = field(default_factory=set)  # repo@digest of each image copied

    def lookup(self, ref: str) -> RemoteImage | None:
        return self.tags.get(ref)

    def exists(self, ref: str) -> str | None:
        if "@" in ref:
            digest = ref.split("@", 1)[1]
            stored = (
                digest in self.artifacts
                or any(r.digest == digest for r in self.tags.values())
                or ref in self.copied
                or any(blob_digest(m) == digest for m in self.archives.values())
            )
            return digest if stored else None
        if ref in self.archives:
            return blob_digest(self.archives[ref])
        found = self.tags.get(ref)
        return found.digest if found else None

    def attach(self, subject: str, artifact: Artifact) -> str:
        """As the registry does: the artifact's manifest by digest, listed once per subject."""
        digest = subject.split("@", 1)[1]
        manifest = artifact_manifest(
            artifact, Descriptor(media_type=MANIFEST, digest=digest, size=1)
        )
        found = Descriptor(
            media_type=MANIFEST, digest=blob_digest(manifest), size=len(manifest),
            artifact_type=artifact.artifact_type, annotations=artifact.annotations,
        )  # fmt: skip
        listed = self.referred.setdefault(subject, [])
        if found not in listed:
            listed.append(found)
        self.artifacts[found.digest] = artifact
        return found.digest

    def referrers(self, subject: str) -> tuple[Descriptor, ...]:
        return tuple(self.referred.get(subject, ()))

    def image_layers(self, ref: str) -> RemoteLayers | None:
        return self.layered.get(ref)

    @contextlib.contextmanager
    def open_blob(self, ref: str, blob: Descriptor) -> Iterator[IO[bytes]]:
        self.blob_reads.append(blob.digest)
        yield io.BytesIO(self.blobs[blob.digest])

    def put_archive(
        self,
        ref: str,
        *,
        artifact_type: str,
        config: bytes,
        config_media_type: str,
        files: Sequence[ArchiveFile],
    ) -> str:
        """As the adapter does: blobs stored once, the tag never overwritten."""
        config_blob = descriptor_of(config, config_media_type)
        layers = tuple(file.descriptor() for file in files)
        manifest = archive_manifest(artifact_type=artifact_type, config=config_blob, layers=layers)
        digest = blob_digest(manifest)
        there = self.archives.get(ref)
        if there is not None and blob_digest(there) != digest:
            raise RegistryError(
                f"the archive tag {ref} already names {blob_digest(there)}; the archive as "
                f"given now is {digest}.",
                hint="An archive tag is never overwritten.",
            )
        if there is None:
            contents = [(config_blob.digest, config)]
            contents += [(f"sha256:{file.sha256}", file.path.read_bytes()) for file in files]
            for blob, data in contents:
                if blob not in self.blobs:
                    self.blob_uploads.append(blob)
                    self.blobs[blob] = data
            self.archives[ref] = manifest
        return digest

    def read_archive(self, ref: str) -> tuple[bytes, tuple[Descriptor, ...]] | None:
        wanted = ref.split("@", 1)[1] if "@" in ref else ""
        for name, manifest in self.archives.items():
            if name == ref or (wanted and blob_digest(manifest) == wanted):
                config, layers = archive_parts(manifest)
                return self.blobs[config.digest], layers
        return None

    def copy_image(self, source: str, repository: str) -> str:
        digest = self.exists(source)
        if digest is None:
            raise RegistryError(f"{source} is not in the registry, so it cannot be copied.")
        self.copied.add(f"{repository}@{digest}")
        return digest

    def push(self, ref: str, *, on_output: Say) -> str:
        if self.immutable and ref in self.tags:
            raise TagImmutableError(f"the registry refused to change the immutable tag {ref}.")
        assert self.images is not None
        image_id = self.images.tags[ref]
        digest = fake_id("manifest")
        self.pushes.append(ref)
        self.tags[ref] = RemoteImage(digest=digest, config_digest=image_id)
        # As the engine does: a pushed image knows its registry digest, so repo:vN@digest finds it.
        info = self.images.images[image_id]
        pushed = f"{ref.rsplit(':', 1)[0]}@{digest}"
        self.images.images[image_id] = replace(info, repo_digests=(*info.repo_digests, pushed))
        if ref in self.after_push:  # someone else pushed the same tag right after us
            self.tags[ref] = self.after_push[ref]
        return digest


@dataclass
class FakeGit:
    """Git for the CI job: `pushes` says, attempt by attempt, whether a push is accepted;
    `rebases` whether a rebase onto the moved upstream applies."""

    pushes: list[bool] = field(default_factory=list)
    rebases: list[bool] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    upstream: str = "u0"
    head: str = "u0"
    dirty: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    remote: str = ""

    def commit_of(self, path: Path) -> str:
        return "c" * 40

    def commit_time(self, commit: str) -> str:
        return "2026-11-25T12:00:00Z"

    def remote_url(self) -> str:
        return self.remote

    def identity(self) -> str:
        return "CI <ci@example.org>"

    def dirty_paths(self) -> tuple[str, ...]:
        return self.dirty

    def changed_paths(self, folder: str) -> tuple[str, ...]:
        return self.changed

    def commit(self, paths: tuple[str, ...], message: str) -> str:
        self.log.append(f"commit {' '.join(paths)}")
        self.head = f"{self.head}+lock"
        return self.head

    def rev(self, ref: str) -> str:
        return self.head if ref == "HEAD" else self.upstream

    def fetch(self, remote: str, branch: str) -> None:
        self.log.append("fetch")

    def push(self, remote: str, branch: str) -> bool:
        accepted = self.pushes.pop(0) if self.pushes else True
        self.log.append(f"push {'ok' if accepted else 'rejected'}")
        if accepted:
            self.upstream = self.head
        else:
            self.upstream = f"{self.upstream}'"  # someone else pushed first
        return accepted

    def rebase_onto(self, upstream: str) -> bool:
        applies = self.rebases.pop(0) if self.rebases else True
        self.log.append(f"rebase {'ok' if applies else 'conflict'}")
        if applies:
            self.head = f"{self.upstream}+lock"
        return applies

    def reset_hard(self, ref: str) -> None:
        self.log.append(f"reset {ref}")
        self.head = self.upstream


def with_digest(info: ImageInfo, repository: str, digest: str) -> ImageInfo:
    return replace(info, repo_digests=(*info.repo_digests, f"{repository}@{digest}"))


__all__ = ["FakeBuilder", "FakeGit", "FakeImages", "FakeRegistry", "GitError", "with_digest"]
