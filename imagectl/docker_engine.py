"""The Docker adapter: every engine call goes through the docker CLI and one runner.

python-on-whales is not used: it wraps the same CLI, costs ~0.45 s to import on every
command, and its exceptions carry less than `run_docker` keeps (command, exit code, stderr).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imagectl.errors import BuildError, EngineError
from imagectl.model import Builder
from imagectl.ports import FileEntry, ImageConfig, ImageInfo, Say
from imagectl.process import last_line, run, stream, without_names

ENGINE_HINT = (
    "Start it with `scripts/engine up` (or check DOCKER_HOST), then run the command again."
)
# Files `docker export` adds to every container; never part of an image's own content.
EXPORT_NOISE = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
XATTR = "SCHILY.xattr."  # how tar (PAX) carries a file's extended attributes
DAEMON_DOWN = ("cannot connect to the docker daemon", "is the docker daemon running")


def run_docker(
    *args: str, doing: str, names: Sequence[str] = (), ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    """Run one short docker CLI call; raise EngineError (command, exit code, stderr) unless
    its exit code is in `ok`. `names` are the user-supplied references in the command: they are
    cut out of docker's text before it is read for the kind of failure."""
    command = ("docker", *args)
    done = run(command)
    if done.returncode not in ok:
        raise engine_error(command, done.returncode, done.stderr, doing=doing, names=names)
    return done


def engine_error(
    command: Sequence[str], code: int, stderr: str, *, doing: str, names: Sequence[str] = ()
) -> EngineError:
    """The EngineError for a failed docker call: "does not answer" or what docker said."""
    if daemon_down(stderr, names):
        return EngineError(
            f"the Docker engine does not answer while {doing}.",
            hint=ENGINE_HINT,
            command=tuple(command),
            exit_code=code,
            stderr=stderr,
        )
    return EngineError(
        f"docker failed while {doing}: {last_line(stderr)}.",
        command=tuple(command),
        exit_code=code,
        stderr=stderr,
    )


def daemon_down(text: str, names: Sequence[str] = ()) -> bool:
    cleaned = without_names(text, names)
    return any(marker in cleaned for marker in DAEMON_DOWN)


class DockerBuilder:
    """Builds through `docker buildx build` (BuildKit) or the legacy `docker build`."""

    def __init__(self, builder: Builder | None = None, *, named: str = "") -> None:
        self._builder = builder or _builder_from_env()
        self.named = named  # a buildx builder by name (a remote BuildKit, a farm); "" = current

    @property
    def builder(self) -> Builder:
        if self._builder is None:
            self._builder = "buildx" if _has_buildx() else "legacy"
        return self._builder

    def check(self) -> None:
        run_docker("version", "--format", "{{.Server.Version}}", doing="asking for its version")
        if not self.named:
            return
        if self.builder != "buildx":
            raise EngineError(
                f"the builder {self.named!r} is a buildx builder, and buildx is not in use.",
                hint="Install the buildx plugin (scripts/engine up does), or build without "
                "--builder.",
            )
        found = run_docker(
            "buildx", "inspect", self.named, doing=f"looking up the builder {self.named}",
            names=(self.named,), ok=(0, 1),
        )  # fmt: skip
        if found.returncode != 0:
            raise EngineError(
                f"there is no buildx builder named {self.named!r}.",
                hint="`docker buildx ls` lists the builders; create one with `docker buildx "
                "create --name NAME ...`, or fix --builder / [build] builder in imagectl.toml.",
                command=("docker", "buildx", "inspect", self.named),
                exit_code=found.returncode,
                stderr=found.stderr,
            )

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        on_output: Say,
        secrets: Mapping[str, str] | None = None,
        no_cache: bool = False,
    ) -> str:
        """Build and return the new image id; output goes to `on_output` line by line.

        `secrets` maps a secret id to where BuildKit reads it ("env:NAME" or "file:PATH"):
        imagectl passes the reference on and never reads, logs or records the value.
        """
        if secrets and self.builder != "buildx":
            raise EngineError(
                "build secrets need BuildKit, and only the legacy builder is in use.",
                hint="Install the buildx plugin (scripts/engine up does) or unset "
                "IMAGECTL_BUILDER=legacy.",
            )
        with tempfile.TemporaryDirectory(prefix="imagectl-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            command, env = self._command(dockerfile, context, iidfile, secrets, no_cache=no_cache)
            code, output = stream(command, env=env, on_output=on_output)
            if code != 0:
                if daemon_down(output):
                    raise engine_error(command, code, output, doing="building")
                raise BuildError(
                    f"the {self.builder} build exited with code {code}.",
                    hint="The failing step's output is shown below; fix the increment (it was "
                    "never recorded) and build again.",
                    details=output,
                    command=tuple(command),
                    exit_code=code,
                    dockerfile_line=_failing_line(output, dockerfile.name),
                )
            image_id = iidfile.read_text().strip() if iidfile.exists() else ""
            if not image_id.startswith("sha256:"):
                raise BuildError("the build finished but reported no image id.", details=output)
            return image_id

    def _command(
        self,
        dockerfile: Path,
        context: Path,
        iidfile: Path,
        secrets: Mapping[str, str] | None,
        *,
        no_cache: bool,
    ) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        common = [
            *(["--no-cache"] if no_cache else []),
            "--iidfile",
            str(iidfile),
            "-f",
            str(dockerfile),
            str(context),
        ]
        if self.builder == "buildx":
            env.pop("DOCKER_BUILDKIT", None)
            named = ["--builder", self.named] if self.named else []
            flags = [*named, "--progress=plain", "--load", *_secret_flags(secrets or {})]
            return ["docker", "buildx", "build", *flags, *common], env
        env["DOCKER_BUILDKIT"] = "0"
        return ["docker", "build", *common], env


class DockerImages:
    """The engine's image store, through the docker CLI (about 20 ms a call)."""

    def __init__(self, builder: DockerBuilder | None = None) -> None:
        # Reading a whole file tree is fastest through BuildKit's tar exporter, when there.
        self._builder = builder or DockerBuilder()

    def inspect_image(self, ref: str) -> ImageInfo | None:
        done = run_docker(
            "image", "inspect", "--format", "{{json .}}", ref, doing=f"inspecting {ref}",
            names=(ref,), ok=(0, 1),
        )  # fmt: skip
        if done.returncode != 0:
            if "no such image" in without_names(done.stderr, (ref,)):
                return None
            raise engine_error(
                ("docker", "image", "inspect", ref), 1, done.stderr, doing=f"inspecting {ref}",
                names=(ref,),
            )  # fmt: skip
        image = json.loads(done.stdout)
        return ImageInfo(
            image_id=str(image["Id"]),
            layers=tuple(str(layer) for layer in (image.get("RootFS") or {}).get("Layers") or ()),
            size=int(image.get("Size") or 0),
            repo_digests=tuple(str(d) for d in image.get("RepoDigests") or ()),
            config=ImageConfig.from_docker(image.get("Config") or {}),
        )

    def pull(self, ref: str) -> None:
        run_docker("pull", "--quiet", ref, doing=f"pulling {ref}", names=(ref,))

    def tag(self, image_id: str, ref: str) -> None:
        run_docker("tag", image_id, ref, doing=f"tagging {image_id} as {ref}", names=(ref,))

    def remove_image(self, ref: str) -> None:
        run_docker("rmi", ref, doing=f"removing {ref}", names=(ref,), ok=(0, 1))

    def read_files(self, image: str, wanted: Callable[[str], bool]) -> dict[str, bytes]:
        """The wanted regular files of `image`, from one `docker export` of a created (never
        started) container: every path is seen, only the wanted ones are read."""
        container = self._create(image)
        found: dict[str, bytes] = {}

        def visit(name: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
            if member.isfile() and wanted(name):
                handle = archive.extractfile(member)
                found[name] = handle.read() if handle else b""

        try:
            _walk_tar(["docker", "export", container], visit, doing=f"reading files of {image}")
        finally:
            run_docker("rm", "-f", container, doing="removing a container", ok=(0, 1))
        return found

    def _create(self, image: str) -> str:
        created = run_docker(
            "create", image, "true", doing=f"creating a container of {image}", names=(image,)
        )
        return created.stdout.strip()

    def _tree_command(self, image: str, tmp: str) -> tuple[list[str], str]:
        """The command that streams `image`'s files as tar, and a container to remove after."""
        if self._builder.builder == "buildx":
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
            try:
                return _tree_from(command)
            finally:
                if container:
                    run_docker("rm", "-f", container, doing="removing a container", ok=(0, 1))

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
                    run_docker("rm", "-f", container, doing="removing a container", ok=(0, 1))
            if imported.returncode != 0 or producer.returncode != 0:
                raise engine_error(
                    command, imported.returncode, imported.stderr, doing=f"flattening {source}",
                    names=(source, tag),
                )  # fmt: skip
            return imported.stdout.strip()

    def apply_config(self, image: str, *, instructions: list[str], tag: str) -> str:
        """`FROM image` and instructions that only set config, built by the engine's own
        builder (the image is local: a remote builder would not see it), tagged `tag`."""
        with tempfile.TemporaryDirectory(prefix="imagectl-config-") as tmp:
            dockerfile, iidfile = Path(tmp) / "Dockerfile", Path(tmp) / "iid"
            dockerfile.write_text("\n".join([f"FROM {image}", *instructions]) + "\n")
            (Path(tmp) / "context").mkdir()
            if self._builder.builder == "buildx":
                command = ["docker", "buildx", "build", "--progress=plain", "--load"]
            else:
                command = ["docker", "build"]
            command += ["--iidfile", str(iidfile), "-t", tag, "-f", str(dockerfile)]
            done = run([*command, str(Path(tmp) / "context")])
            if done.returncode != 0 or not iidfile.exists():
                raise engine_error(
                    command, done.returncode, done.stderr, doing=f"applying the config to {image}",
                    names=(image, tag),
                )  # fmt: skip
            return iidfile.read_text().strip()


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


def _tree_from(command: list[str]) -> dict[str, FileEntry]:
    tree: dict[str, FileEntry] = {}

    def visit(name: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        content = ""
        if member.isfile():
            handle = archive.extractfile(member)
            content = hashlib.sha256(handle.read()).hexdigest() if handle else ""
        tree[name] = FileEntry(
            kind=member.type.decode(),
            mode=member.mode,
            uid=member.uid,
            gid=member.gid,
            link=member.linkname,
            sha256=content,
            device=(member.devmajor, member.devminor),
            xattrs=tuple(
                sorted(
                    (key.removeprefix(XATTR), value)
                    for key, value in member.pax_headers.items()
                    if key.startswith(XATTR)
                )
            ),
        )

    _walk_tar(command, visit, doing="reading the file tree")
    return tree


def _walk_tar(
    command: list[str],
    visit: Callable[[str, tarfile.TarInfo, tarfile.TarFile], None],
    *,
    doing: str,
) -> None:
    """Stream the tar `command` writes; `visit` each member by its path from the root (the
    files `docker export` adds to every container left out)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for member in archive:
                name = member.name.removeprefix("./").rstrip("/")
                if name and name not in EXPORT_NOISE:
                    visit(name, member, archive)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = proc.wait()
    if code != 0:
        raise engine_error(command, code, stderr, doing=doing)


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
