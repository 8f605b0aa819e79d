"""Frozen values shared by the core: image lines, increments, locked versions, plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Builder = Literal["buildx", "legacy"]
TestKind = Literal["test", "start-test"]  # run in a container of the image, or in a started one
TestResult = Literal["passed", "failed", "timed out"]

LOCK_SCHEMA = 1


def utc_now() -> str:
    """The time a version is recorded as built: ISO 8601, UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageLine:
    """One image line as configured in `images/<name>.toml`."""

    name: str
    config_path: Path  # relative to the repository root
    repository: str  # e.g. localhost:5000/pods/bookworm, without tag
    base: str  # the reference v1 is built FROM (tag, maybe with @digest)
    vars: Mapping[str, object] = field(default_factory=dict)
    # Build secret id -> "env:NAME" or "file:PATH"; the values never pass through imagectl.
    secrets: Mapping[str, str] = field(default_factory=dict)
    test_timeout: float = 120.0  # seconds each of its tests may take ([tests] timeout)
    # `[verify] ignore`: paths whose differences verify counts apart from drift. Not an input
    # of any build, so never part of what drift protection hashes.
    verify_ignore: tuple[str, ...] = ()
    # `[withdraw] build_on = "kept"`: the next version is built on the newest version that is
    # not withdrawn (forking the chain) instead of on the newest one.
    build_on_kept: bool = False
    # `[sbom] distro`: the ID-VERSION_ID of its os-release (ubuntu-24.04), for the debs' purls.
    # Not an input of any build.
    sbom_distro: str = ""
    # `[archive]`: keep every version's downloads (and pinned images) beside it in the registry,
    # and with `require = "complete"` tag only versions whose inputs were all captured.
    archive: bool = True
    archive_complete: bool = False

    def tag_for(self, version: int) -> str:
        return f"{self.repository}:v{version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IncrementTest:
    """A test of an increment: a POSIX shell script run in a container of each version built
    from the increment on, or a Jinja template of one (rendered with the line's vars)."""

    path: Path  # relative to the repository root: its name in the lock and in every report
    kind: TestKind
    template: bool  # a *.j2 file, rendered before it runs

    @property
    def name(self) -> str:
        return self.path.as_posix()

    @property
    def script_name(self) -> str:
        """The file name it runs under in the container (the template's, without .j2)."""
        return self.path.name.removesuffix(".j2")


@dataclass(frozen=True, slots=True, kw_only=True)
class Increment:
    """One numbered increment on disk: a template file or a folder with a Dockerfile.j2."""

    number: int
    name: str  # e.g. 0002-pod-init
    path: Path  # relative to the repository root: the file, or the folder
    template: Path  # relative to the repository root
    is_folder: bool
    source_hash: str  # over the template and every context file
    context_hash: str = ""  # a folder's files besides its template; "" for a file increment
    summary: str  # first comment line of the template
    # Its tests: never part of the hashes above, so tests may be added or improved after a build.
    tests: tuple[IncrementTest, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedHashes:
    """What a built increment renders to now, for the drift check."""

    dockerfile: str  # the composed Dockerfile's bytes
    instructions: str  # its instructions, comments and indentation left out


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedTest:
    """A test that ran on a version before it was tagged, as the lock records it."""

    name: str  # the test file, relative to the repository root
    hash: str  # sha256 of the script that ran (a template: as rendered)
    result: TestResult  # "passed": a version is only recorded when every test passed


@dataclass(frozen=True, slots=True, kw_only=True)
class LockedVersion:
    """One built version as recorded in the lockfile."""

    version: int
    tag: str
    increment: str  # path relative to the repository root
    summary: str
    increment_hash: str
    dockerfile_hash: str
    # What the Dockerfile instructs (comments and indentation left out): a comment-only edit
    # of a built increment keeps it, so it is not drift. "" for versions built before.
    instructions_hash: str = ""
    context_hash: str = ""  # a folder increment's files besides its template; "" for a file
    # Everything its render depended on (template, snippets, variables, version, parent), and
    # the snippets it loaded: while the hash is the same, so is the render, and drift is
    # decided without rendering. "" and () for versions built before.
    inputs_hash: str = ""
    includes: tuple[str, ...] = ()
    parent: str  # the reference the Dockerfile's FROM named
    parent_digest: str  # image id or registry digest of that parent
    images: tuple[str, ...] = ()  # other images the increment named, pinned: "ref@sha256:..."
    image_id: str
    layers: int
    size: int
    builder: str
    built_at: str  # ISO 8601, UTC (for a skipped version: when it was skipped)
    commit: str  # last git commit of the increment, or "uncommitted" (changed, or no git)
    digest: str = ""  # registry digest once published
    checkpoint: bool = False  # a one-layer copy of its parent, made by `imagectl checkpoint`
    engine: str = ""  # the Docker engine's version that built it
    # A burned tag: someone else's image held this version's tag, so `imagectl skip` passed
    # over it; the next version is built on the one before. Nothing of it is built or pushed.
    skipped: bool = False
    reason: str = ""
    foreign_digest: str = ""  # what the registry held under the tag when it was skipped
    tests: tuple[RecordedTest, ...] = ()  # every test that ran on it before it was tagged
    # Withdrawn (`imagectl withdraw`): broken in a way its tests missed. Its tag and image stay
    # as they are; `resolve` passes over it, so restored pods no longer land on it.
    withdrawn: bool = False
    withdrawn_reason: str = ""
    withdrawn_by: str = ""  # the git identity of who withdrew it: "Name <email>"
    withdrawn_at: str = ""  # ISO 8601, UTC
    # The digest of its SBOM in the registry (an SPDX artifact whose subject is the version's
    # manifest, found by the referrers tag scheme), once `publish` attached it.
    sbom: str = ""
    # Its input archive: "complete" (every download captured and proved against a signed
    # index), "incomplete" (something was not), "" (none: disabled, or built before). The
    # counts are of what was captured and what is missing; `archive` is the artifact's
    # registry digest once `publish` stored it under `<repository>-inputs:v<N>`.
    archive_state: str = ""
    archive_files: int = 0
    archive_missing: int = 0
    archive: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """The lockfile of one line: the pinned base and every built version, oldest first."""

    line: str
    repository: str
    base: str
    base_digest: str = ""  # registry digest of the base; "" for a base only the engine has
    base_image_id: str = ""
    versions: tuple[LockedVersion, ...] = ()

    @property
    def head(self) -> LockedVersion | None:
        """The newest version that was built (skipped versions have no image)."""
        return next((v for v in reversed(self.versions) if not v.skipped), None)

    @property
    def built_versions(self) -> tuple[LockedVersion, ...]:
        """Every version with an image: all but the skipped ones."""
        return tuple(version for version in self.versions if not version.skipped)

    @property
    def increment_versions(self) -> tuple[LockedVersion, ...]:
        """The versions built from increments, in order: the k-th is increment k's."""
        return tuple(v for v in self.versions if not v.checkpoint and not v.skipped)

    def with_version(self, version: LockedVersion) -> Lock:
        return replace(self, versions=(*self.versions, version))

    def with_base(self, *, digest: str, image_id: str) -> Lock:
        return replace(self, base_digest=digest, base_image_id=image_id)

    def with_published(self, version: int, digest: str) -> Lock:
        versions = tuple(
            replace(v, digest=digest) if v.version == version else v for v in self.versions
        )
        return replace(self, versions=versions)

    def with_archive(self, version: int, digest: str) -> Lock:
        versions = tuple(
            replace(v, archive=digest) if v.version == version else v for v in self.versions
        )
        return replace(self, versions=versions)

    def with_sbom(self, version: int, digest: str) -> Lock:
        versions = tuple(
            replace(v, sbom=digest) if v.version == version else v for v in self.versions
        )
        return replace(self, versions=versions)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildStep:
    """One version to build: increment N on top of version N-1 (or the base)."""

    line: str
    version: int
    tag: str
    increment: Increment
    parent: str  # reference for FROM; for v1 the base before its digest is resolved
    parent_is_base: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LinePlan:
    """What `build next` would do for one line."""

    line: str
    built: int  # versions already in the lock (checkpoints included)
    available: int  # increments on disk
    pending: int  # increments not built yet
    steps: tuple[BuildStep, ...] = ()
    deleted_tests: tuple[str, ...] = ()  # tests the lock says ran, no longer on disk
    repository: str = ""  # where the line's versions are tagged
    unpublished: tuple[int, ...] = ()  # built versions without a registry digest yet
    withdrawn: tuple[tuple[int, str], ...] = ()  # (version, reason) of each withdrawn one

    @property
    def up_to_date(self) -> bool:
        """Nothing to build and nothing to publish: a CI matrix leaves this line out."""
        return not self.steps and not self.unpublished

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "repository": self.repository,
            "up_to_date": self.up_to_date,
            "to_build": [s.version for s in self.steps],
            "to_publish": list(self.unpublished),
            "built": self.built,
            "available": self.available,
            "pending": self.pending,
            "steps": [
                {
                    "version": s.version,
                    "tag": s.tag,
                    "increment": s.increment.path.as_posix(),
                    "parent": s.parent,
                    "summary": s.increment.summary,
                }
                for s in self.steps
            ],
            "deleted_tests": list(self.deleted_tests),
            "withdrawn": [{"version": v, "reason": reason} for v, reason in self.withdrawn],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltVersion:
    """A version `build next` or `checkpoint` just made (and recorded)."""

    line: str
    version: int
    tag: str
    image_id: str
    adopted: bool  # the tag already named exactly this image (a rerun after a crash)

    def to_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "version": self.version,
            "tag": self.tag,
            "image_id": self.image_id,
            "adopted": self.adopted,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    """What building a version needs besides the line: from imagectl.toml and git, once."""

    source: str = ""  # org.opencontainers.image.source, credentials removed
    test_jobs: int = 4  # tests of one version run side by side, at most this many
