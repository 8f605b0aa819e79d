"""The Docker adapter: the docker CLI for the hot path, python-on-whales for pulls."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from imagectl.errors import BuildError, EngineError, RegistryError
from imagectl.model import Builder
from imagectl.ports import FileEntry, ImageInfo
from imagectl.registry import registry_failure

ENGINE_HINT = (
    "Start it with `scripts/engine up` (or check DOCKER_HOST), then run the command again."
)
# Files `docker export` adds to every container; never part of an image's own content.
EXPORT_NOISE = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
FAILURE_TAIL = 40  # lines of build output kept for the error message


class DockerEngine:
    """A Docker engine reached through the `docker` CLI."""

    def __init__(self, builder: Builder | None = None) -> None:
        self._builder = builder or _builder_from_env()
        self._docker: Any = None

    @property
    def builder(self) -> Builder:
        if self._builder is None:
            self._builder = "buildx" if _has_buildx() else "legacy"
        return self._builder

    def _client(self) -> Any:
        if self._docker is None:
            # python-on-whales costs ~0.45 s to import: only commands that touch the engine pay it.
            from python_on_whales import DockerClient  # noqa: PLC0415

            self._docker = DockerClient()
        return self._docker

    def check(self) -> None:
        result = _docker("version", "--format", "{{.Server.Version}}")
        if result.returncode != 0:
            raise EngineError(
                f"the Docker engine does not answer ({_first_line(result.stderr)}).",
                hint=ENGINE_HINT,
            )

    def inspect_image(self, ref: str) -> ImageInfo | None:
        # One `docker image inspect` is ~30 ms; going through python-on-whales would first cost
        # its ~0.45 s import on every build, so the hot path calls the CLI directly.
        result = _docker("image", "inspect", "--format", "{{json .}}", ref)
        if result.returncode != 0:
            if "no such image" in result.stderr.lower():
                return None
            raise _engine_failure(result.stderr, f"inspecting {ref}")
        image = json.loads(result.stdout)
        return ImageInfo(
            image_id=str(image["Id"]),
            layers=tuple(str(layer) for layer in (image.get("RootFS") or {}).get("Layers") or ()),
            size=int(image.get("Size") or 0),
            repo_digests=tuple(str(d) for d in image.get("RepoDigests") or ()),
            config=dict(image.get("Config") or {}),
        )

    def pull(self, ref: str) -> None:
        from python_on_whales.exceptions import DockerException  # noqa: PLC0415

        try:
            self._client().image.pull(ref, quiet=True)
        except DockerException as exc:
            raise _engine_error(exc, f"pulling {ref}") from exc

    def tag(self, image_id: str, ref: str) -> None:
        result = _docker("tag", image_id, ref)
        if result.returncode != 0:
            raise _engine_failure(result.stderr, f"tagging {image_id} as {ref}")

    def push(self, ref: str, *, on_output: Callable[[str], None]) -> str:
        """Push `ref` and return the manifest digest docker reports for it."""
        code, output = _stream(["docker", "push", ref], env=dict(os.environ), on_output=on_output)
        if code != 0:
            if _daemon_down(output):
                raise EngineError(
                    f"the Docker engine does not answer while pushing {ref}.", hint=ENGINE_HINT
                )
            raise registry_failure(ref, output)
        match = PUSHED_DIGEST.search(output)
        if match is None:
            raise RegistryError(f"docker pushed {ref} but reported no digest.", details=output)
        return match.group(1)

    def read_file(self, image: str, path: str) -> bytes | None:
        """A file's bytes from a created (never started) container of `image`; None if absent."""
        container = self._create(image)
        try:
            copied = subprocess.run(
                ["docker", "cp", f"{container}:{path}", "-"], capture_output=True, check=False
            )
            if copied.returncode != 0:
                return None
            with tarfile.open(fileobj=io.BytesIO(copied.stdout)) as archive:
                for member in archive:
                    if member.isfile():
                        handle = archive.extractfile(member)
                        return handle.read() if handle else None
            return None
        finally:
            _docker("rm", "-f", container)

    def _create(self, image: str) -> str:
        created = _docker("create", image, "true")
        if created.returncode != 0:
            raise EngineError(
                f"docker could not create a container of {image}: {_first_line(created.stderr)}.",
                hint=ENGINE_HINT,
            )
        return created.stdout.strip()

    def _tree_command(self, image: str, tmp: str) -> tuple[list[str], str]:
        """The command that streams `image`'s files as tar, and a container to remove after."""
        if self.builder == "buildx":
            Path(tmp, "Dockerfile").write_text(f"FROM {image}\n")
            return ["docker", "buildx", "build", "-q", "--output", "type=tar,dest=-", tmp], ""
        container = self._create(image)
        return ["docker", "export", container], container

    def file_tree(self, image: str) -> dict[str, FileEntry]:
        """Every path of `image` with type, mode, owner, link target and content hash.

        With BuildKit the tar exporter gives the exact tree; `docker export` (the fallback)
        adds .dockerenv and /etc/hosts and friends, which are left out of both.
        """
        with tempfile.TemporaryDirectory(prefix="imagectl-tree-") as tmp:
            command, container = self._tree_command(image, tmp)
            return _tree_from(command, cleanup=container)

    def import_rootfs(self, source: str, *, changes: list[str], tag: str) -> str:
        """A one-layer image with `source`'s files and the given config changes, tagged `tag`."""
        with tempfile.TemporaryDirectory(prefix="imagectl-flat-") as tmp:
            export, container = self._tree_command(source, tmp)
            command = ["docker", "import"]
            for change in changes:
                command += ["--change", change]
            command += ["-", tag]
            try:
                with subprocess.Popen(
                    export, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                ) as producer:
                    imported = subprocess.run(
                        command, stdin=producer.stdout, capture_output=True, text=True, check=False
                    )
                    producer.wait()
            finally:
                if container:
                    _docker("rm", "-f", container)
            if imported.returncode != 0 or producer.returncode != 0:
                raise EngineError(f"flattening {source} failed: {_first_line(imported.stderr)}.")
            return imported.stdout.strip()

    def remove_image(self, ref: str) -> None:
        _docker("rmi", ref)

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        on_output: Callable[[str], None],
        secrets: Mapping[str, str] | None = None,
        no_cache: bool = False,
    ) -> str:
        """Build and return the new image id; output goes to `on_output` line by line.

        `secrets` maps a secret id to where BuildKit reads it ("env:NAME" or "file:PATH"):
        imagectl passes the reference on and never reads, logs or records the value.
        """
        with tempfile.TemporaryDirectory(prefix="imagectl-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            env = dict(os.environ)
            if secrets and self.builder != "buildx":
                raise EngineError(
                    "build secrets need BuildKit, and only the legacy builder is in use.",
                    hint="Install the buildx plugin (scripts/engine up does) or unset "
                    "IMAGECTL_BUILDER=legacy.",
                )
            if self.builder == "buildx":
                command = [
                    "docker",
                    "buildx",
                    "build",
                    "--progress=plain",
                    "--load",
                    *(["--no-cache"] if no_cache else []),
                    *_secret_flags(secrets or {}),
                    "--iidfile",
                    str(iidfile),
                    "-f",
                    str(dockerfile),
                    str(context),
                ]
                env.pop("DOCKER_BUILDKIT", None)
            else:
                command = [
                    "docker",
                    "build",
                    *(["--no-cache"] if no_cache else []),
                    "--iidfile",
                    str(iidfile),
                    "-f",
                    str(dockerfile),
                    str(context),
                ]
                env["DOCKER_BUILDKIT"] = "0"
            code, output = _stream(command, env=env, on_output=on_output)
            if code != 0:
                if _daemon_down(output):
                    raise EngineError(
                        f"the Docker engine does not answer ({_first_line(output)}).",
                        hint=ENGINE_HINT,
                    )
                raise BuildError(
                    f"the {self.builder} build exited with code {code}.",
                    hint="The failing step's output is shown below; fix the increment (it was "
                    "never recorded) and build again.",
                    details=output,
                    dockerfile_line=_failing_line(output, dockerfile.name),
                )
            image_id = iidfile.read_text().strip() if iidfile.exists() else ""
            if not image_id.startswith("sha256:"):
                raise BuildError("the build finished but reported no image id.", details=output)
            return image_id


def _failing_line(output: str, name: str) -> int | None:
    """The Dockerfile line BuildKit's error names ("Dockerfile:7"); imagectl wrote that file,
    so its name is ours, never a user's."""
    found = re.findall(rf"^{re.escape(name)}:(\d+)$", output, flags=re.MULTILINE)
    return int(found[-1]) if found else None


def _secret_flags(secrets: Mapping[str, str]) -> list[str]:
    flags = []
    for secret_id, source in sorted(secrets.items()):
        kind, _, where = source.partition(":")
        flags += [
            "--secret",
            f"id={secret_id},env={where}" if kind == "env" else f"id={secret_id},src={where}",
        ]
    return flags


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    """One short docker CLI call, its output captured; the caller judges the exit code."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )


def _tree_from(command: list[str], *, cleanup: str) -> dict[str, FileEntry]:
    tree: dict[str, FileEntry] = {}
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                for member in archive:
                    name = member.name.removeprefix("./").rstrip("/")
                    if not name or name in EXPORT_NOISE:
                        continue
                    content = ""
                    if member.isfile():
                        handle = archive.extractfile(member)
                        content = hashlib.sha256(handle.read()).hexdigest() if handle else ""
                    tree[name] = (
                        member.type.decode(),
                        member.mode,
                        member.uid,
                        member.gid,
                        member.linkname,
                        content,
                        member.devmajor,
                        member.devminor,
                    )
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            code = proc.wait()
    finally:
        if cleanup:
            _docker("rm", "-f", cleanup)
    if code != 0:
        raise EngineError(f"reading the file tree failed: {_first_line(stderr)}.")
    return tree


def _stream(
    command: list[str], *, env: dict[str, str], on_output: Callable[[str], None]
) -> tuple[int, str]:
    """Run `command`, passing each output line on; return the exit code and the last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=FAILURE_TAIL)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_output(line)
        code = process.wait()
    return code, "\n".join(tail)


def _builder_from_env() -> Builder | None:
    chosen = os.environ.get("IMAGECTL_BUILDER", "").strip().lower()
    if chosen in ("buildx", "legacy"):
        return "buildx" if chosen == "buildx" else "legacy"
    if chosen:
        raise EngineError(
            f"IMAGECTL_BUILDER={chosen!r} is not a builder.",
            hint="Use IMAGECTL_BUILDER=buildx or IMAGECTL_BUILDER=legacy.",
        )
    return None


# Where the docker CLI looks for plugins; finding the file saves a `docker buildx version`.
PLUGIN_DIRS = (
    "~/.docker/cli-plugins",
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def _has_buildx() -> bool:
    config = os.environ.get("DOCKER_CONFIG")
    folders = ([f"{config}/cli-plugins"] if config else []) + list(PLUGIN_DIRS)
    if any(os.access(Path(folder).expanduser() / "docker-buildx", os.X_OK) for folder in folders):
        return True
    try:
        result = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _daemon_down(text: str) -> bool:
    lowered = text.lower()
    return "cannot connect to the docker daemon" in lowered or "is the docker daemon" in lowered


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _engine_failure(stderr: str, doing: str) -> EngineError:
    if _daemon_down(stderr):
        return EngineError(f"the Docker engine does not answer while {doing}.", hint=ENGINE_HINT)
    return EngineError(f"docker failed while {doing}: {_first_line(stderr)}.")


def _engine_error(exc: Any, doing: str) -> EngineError:
    stderr = str(getattr(exc, "stderr", "") or exc)
    if _daemon_down(stderr):
        return EngineError(f"the Docker engine does not answer while {doing}.", hint=ENGINE_HINT)
    return EngineError(f"docker failed while {doing}: {_first_line(stderr)}.")
