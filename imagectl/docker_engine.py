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
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imagectl.errors import BuildError, EngineError
from imagectl.model import Builder
from imagectl.ports import FileEntry, ImageConfig, ImageInfo, Say, TestRun
from imagectl.process import last_line, run, run_merged, stream, without_names

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_endpoint() -> str:
    """Which engine the docker CLI talks to: DOCKER_HOST, a named context, or the local one."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    context = os.environ.get("DOCKER_CONTEXT") or _current_context()
    if context and context != "default":
        return f"docker context {context}"
    return DEFAULT_SOCKET


def _current_context() -> str:
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        return str(json.loads((folder / "config.json").read_text()).get("currentContext") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def engine_hint() -> str:
    """What to do when the engine does not answer; `scripts/engine` only for the local one."""
    endpoint = engine_endpoint()
    if endpoint == DEFAULT_SOCKET:
        return (
            "Start it (in imagectl's own checkout: `scripts/engine up`), then run the command "
            "again."
        )
    return f"Check that the engine at {endpoint} runs and answers, then run the command again."


# Files `docker export` adds to every container; never part of an image's own content.
EXPORT_NOISE = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
XATTR = "SCHILY.xattr."  # how tar (PAX) carries a file's extended attributes
DAEMON_DOWN = ("cannot connect to the docker daemon", "is the docker daemon running")
TEST_MOUNT = "/imagectl-test"  # where a test script is mounted, read-only, in its container


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
            f"the Docker engine ({engine_endpoint()}) does not answer while {doing}.",
            hint=engine_hint(),
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

    def __init__(
        self, builder: Builder | None = None, *, named: str = "", origin: str = "--builder"
    ) -> None:
        self._builder = builder or _builder_from_env()
        self.named = named  # a buildx builder by name (a remote BuildKit, a farm); "" = current
        self.engine_version = ""  # the server's version, known after check()
        self.origin = origin  # where the name was given, for the errors about it

    @property
    def builder(self) -> Builder:
        if self._builder is None:
            self._builder = "buildx" if _has_buildx() else "legacy"
        return self._builder

    def describe(self) -> str:
        """The engine line: endpoint, server version, builder (after check())."""
        named = f" ({self.named})" if self.named else ""
        return (
            f"engine {engine_endpoint()}, Docker {self.engine_version or '?'}, "
            f"builder {self.builder}{named}"
        )

    def check(self) -> None:
        answer = run_docker(
            "version", "--format", "{{.Server.Version}}", doing="asking for its version"
        )
        self.engine_version = answer.stdout.strip()
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
                hint=f"The name comes from {self.origin}. `docker buildx ls` lists the "
                "builders; create one with `docker buildx create --name NAME ...`, or fix the "
                "name.",
                command=("docker", "buildx", "inspect", self.named),
                exit_code=found.returncode,
                stderr=found.stderr,
            )
        self._check_same_engine(found.stdout)

    def _check_same_engine(self, inspected: str) -> None:
        """A builder of the docker driver builds in, and `--load`s into, its own engine. When
        that is not the engine imagectl reads images from (DOCKER_HOST, the docker context),
        every build would land where imagectl never looks: refuse before building."""
        fields = {
            key.strip(): value.strip()
            for key, _, value in (line.partition(":") for line in inspected.splitlines())
            if value
        }
        if fields.get("Driver") != "docker" or not fields.get("Endpoint"):
            return  # other drivers --load into the current engine, whichever that is
        theirs = _engine_host(fields["Endpoint"], doing=f"looking up the builder {self.named}")
        ours = _engine_host("", doing="looking up the current docker context")
        if theirs and ours and theirs != ours:
            raise EngineError(
                f"the builder {self.named!r} builds on the engine at {theirs}, but imagectl "
                f"works with the engine at {ours}: its images would never reach this one.",
                hint="Use a builder of this engine (`docker buildx ls`), or point DOCKER_HOST "
                f"or DOCKER_CONTEXT at {theirs} for the whole command.",
                command=("docker", "buildx", "inspect", self.named),
            )

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        on_output: Say,
        secrets: Mapping[str, str] | None = None,
        no_cache: bool = False,
        labels: Mapping[str, str] | None = None,
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
            command, env = self._command(
                dockerfile, context, iidfile, secrets, no_cache=no_cache, labels=labels or {}
            )
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
        labels: Mapping[str, str],
    ) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        common = [
            *(["--no-cache"] if no_cache else []),
            *(flag for key, value in labels.items() for flag in ("--label", f"{key}={value}")),
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


class TestContainers:
    """Test scripts in throwaway containers: `docker create` + `docker start -a` for a test
    (no network: a test checks the image, not the world), `docker run -d` with the image's own
    entrypoint and command then `docker exec` for a start-up test (the network a pod gets)."""

    __test__ = False  # not a pytest class

    def run_test(self, image: str, script: Path, *, start: bool, timeout: float) -> TestRun:
        name = f"imagectl-test-{uuid.uuid4().hex[:12]}"
        inside = f"{TEST_MOUNT}/{script.name}"
        mount = ["--label", "imagectl.test=1", "-v", f"{script}:{inside}:ro"]
        began = time.monotonic()
        try:
            if start:
                code, output = _started_test(name, mount, image, inside, timeout=timeout)
            else:
                run_docker(
                    "create", "--name", name, "--network", "none", "--entrypoint", "/bin/sh",
                    *mount, image, inside, doing=f"creating a container of {image}",
                    names=(image,),
                )  # fmt: skip
                code, output = run_merged(("docker", "start", "-a", name), timeout=timeout)
            if daemon_down(output):
                raise engine_error(("docker", "start", name), code or 1, output, doing="testing")
        finally:
            run_docker("rm", "-f", name, doing="removing a test container", ok=(0, 1))
        return TestRun(exit_code=code, output=output, seconds=time.monotonic() - began)


def _started_test(
    name: str, mount: list[str], image: str, inside: str, *, timeout: float
) -> tuple[int | None, str]:
    """A pod started as the platform starts it, then the test run in it with `docker exec`.
    A pod whose entrypoint cannot even start (exit 126, 127, or 125 naming the runtime) fails
    the test, with docker's reason; the daemon not answering is an EngineError."""
    started = run_docker(
        "run", "-d", "--name", name, *mount, image, doing=f"starting a container of {image}",
        names=(image,), ok=(0, 125, 126, 127),
    )  # fmt: skip
    if started.returncode != 0:
        if started.returncode == 125 and "oci runtime" not in without_names(
            started.stderr, (image,)
        ):
            raise engine_error(
                ("docker", "run", "-d", image), 125, started.stderr,
                doing=f"starting a container of {image}", names=(image,),
            )  # fmt: skip
        return started.returncode, f"the pod did not start: {started.stderr.strip()}\n"
    code, output = run_merged(("docker", "exec", name, "/bin/sh", inside), timeout=timeout)
    if code != 0:
        output += _container_story(name)
    return code, output


def _container_story(name: str) -> str:
    """What a started container said and whether it still runs: why a start-up test failed."""
    state = run_docker(
        "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name,
        doing="inspecting a test container", ok=(0, 1),
    ).stdout.split()  # fmt: skip
    logs = run_docker("logs", "--tail", "40", name, doing="reading its logs", ok=(0, 1))
    said = (logs.stdout + logs.stderr).rstrip()
    story = "\n---- the started container"
    if state and state[0] != "running":
        story += f" ({state[0]}, exit code {state[1]}: its entrypoint or command ended)"
    return f"{story} said (docker logs) ----\n{said or '(nothing)'}\n"


class DockerImages(TestContainers):
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


def _engine_host(context: str, *, doing: str) -> str:
    """The engine address of a docker context ("" for the current one, which DOCKER_HOST and
    DOCKER_CONTEXT choose); "" when the endpoint is not a context (a plain address)."""
    named = [context] if context else []
    found = run_docker(
        "context", "inspect", *named, "--format", "{{.Endpoints.docker.Host}}", doing=doing,
        names=tuple(named), ok=(0, 1),
    )  # fmt: skip
    if found.returncode != 0:
        return context if "://" in context else ""
    return found.stdout.strip()


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
