"""The Docker adapter: the engine's images over the Engine API (`engine_api`, one request on
the engine's socket per call), builds through `docker buildx build` (BuildKit's client).

python-on-whales is not used: it wraps the docker CLI, costs ~0.45 s to import, and each of its
calls is a CLI process (20-50 ms). The Docker SDK for Python costs ~0.2 s to import (requests,
urllib3) on every command; the subset of the API imagectl needs is small enough to speak
directly (see `engine_api` and README, design notes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagectl.adapters import docker_layers
from imagectl.adapters.docker_config import (
    EngineEndpoint,
    buildx_plugin,
    context_endpoint,
    engine_endpoint,
    registry_auth_header,
)
from imagectl.adapters.engine_api import (
    ApiError,
    EngineApi,
    EngineUnreachableError,
    api_failure,
    calling,
    engine_hint,
    query,
    quote,
)
from imagectl.adapters.process import last_line, run, stream, without_names
from imagectl.core.errors import BuildError, EngineError, RegistryError
from imagectl.core.layerfiles import FileSelection, LayerChange, merged_files
from imagectl.core.model import Builder
from imagectl.core.ports import FileEntry, ImageConfig, ImageInfo, Say, TestRun
from imagectl.core.references import names_in, parse_reference, pinned

XATTR = "SCHILY.xattr."  # how tar (PAX) carries a file's extended attributes
# Files `docker export` adds to every container; never part of an image's own content.
EXPORT_NOISE = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
# The docker CLI's own words when it cannot reach the daemon (buildx is still a CLI).
DAEMON_DOWN = ("cannot connect to the docker daemon", "is the docker daemon running")
# docker's wording for a push refused by an immutable tag (ECR's TAG_INVALID prints as "tag
# invalid", Harbor's 412 as "unknown: ..."), read with names cut out. Only for the message:
# publish decides by looking the tag up again after any failed push.
IMMUTABLE = ("immutable", "imagetagalreadyexists", "tag invalid", "412 precondition")
# Seconds to wait for a context's engine to say who it is (a tcp engine may not answer at all).
ENGINE_ID_TIMEOUT = 10
PUSH_AUTH = ("unauthorized", "denied", "authentication required", "no basic auth credentials")


class DockerBuilder:
    """Builds through `docker buildx build` (BuildKit) or the legacy `docker build`."""

    def __init__(
        self,
        builder: Builder | None = None,
        *,
        named: str = "",
        origin: str = "--builder",
        api: EngineApi | None = None,
    ) -> None:
        self._builder = builder or _builder_from_env()
        self.named = named  # a buildx builder by name (a remote BuildKit, a farm); "" = current
        # The docker context buildx runs in (after check()): a builder of the docker driver is
        # a docker context, which `buildx build --builder` accepts only as the current one.
        self.context = ""
        self.engine_version = ""  # the server's version, known after check()
        self.origin = origin  # where the name was given, for the errors about it
        self.api = api or EngineApi()

    @property
    def builder(self) -> Builder:
        if self._builder is None:
            self._builder = "buildx" if _has_buildx() else "legacy"
        return self._builder

    def describe(self) -> str:
        """The engine line: endpoint, server version, builder (after check())."""
        named = f" ({self.named})" if self.named else ""
        return (
            f"engine {self.api.endpoint.describe()}, Docker {self.engine_version or '?'}, "
            f"builder {self.builder}{named}"
        )

    def check(self) -> None:
        with calling("asking for its version"):
            # /_ping answers at once and names the server; /version asks containerd and runc
            # for theirs (~5 ms). Meanwhile /info, which capture and layer reads need, is asked.
            answer = self.api.call("GET", "/_ping")
            self.api.prefetch_info()
            self.engine_version = server_version(answer.headers.get("server", ""))
            if not self.engine_version:
                self.engine_version = str(self.api.json("GET", "/version").get("Version") or "")
        if not self.named:
            return
        if self.builder != "buildx":
            raise EngineError(
                f"the builder {self.named!r} is a buildx builder, and buildx is not in use.",
                hint="Install the buildx plugin (scripts/engine up does), or build without "
                "--builder.",
            )
        found = run(("docker", "buildx", "inspect", self.named))
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
        fields = inspected_fields(found.stdout)
        self._check_same_engine(fields)
        self.context = builder_context(fields)

    def _check_same_engine(self, fields: Mapping[str, str]) -> None:
        """A builder of the docker driver builds in, and `--load`s into, its own engine. When
        that is not the engine imagectl reads images from (DOCKER_HOST, the docker context),
        every build would land where imagectl never looks: refuse before building."""
        context = builder_context(fields)
        if not context:
            return  # other drivers --load into the current engine, whichever that is
        theirs = _engine_host(context)
        ours = _engine_host("")
        if theirs and ours and theirs != ours and not self._same_engine(context, theirs):
            raise EngineError(
                f"the builder {self.named!r} builds on the engine at {theirs}, but imagectl "
                f"works with the engine at {ours}: its images would never reach this one.",
                hint="Use a builder of this engine (`docker buildx ls`), or point DOCKER_HOST "
                f"or DOCKER_CONTEXT at {theirs} for the whole command.",
                command=("docker", "buildx", "inspect", self.named),
            )

    def _same_engine(self, context: str, host: str) -> bool:
        """Whether the context's engine is this one under another address (unix:///run/...
        for unix:///var/run/..., a second socket or port of the same daemon): the engines' own
        IDs say, over the Engine API. One that does not answer is not this one."""
        endpoint = EngineEndpoint(host=host) if context == "default" else None
        try:
            theirs = EngineApi(endpoint or context_endpoint(context)).json(
                "GET", "/info", timeout=ENGINE_ID_TIMEOUT
            )
            ours = self.api.json("GET", "/info", timeout=ENGINE_ID_TIMEOUT)
        except (ApiError, EngineUnreachableError, EngineError, ValueError):
            return False
        return same_engine(theirs, ours)

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
        """Build and return the new image id; output goes to `on_output` line by line.

        `contexts` are named build contexts (`--build-context NAME=FOLDER`, buildx only).

        `proxy` (an http URL) goes to the build as the predefined proxy arguments, which stay
        out of the cache key and the image's history.

        `secrets` maps a secret id to where BuildKit reads it ("env:NAME" or "file:PATH"):
        imagectl passes the reference on and never reads, logs or records the value.
        """
        if (secrets or contexts) and self.builder != "buildx":
            raise EngineError(
                f"{'build secrets' if secrets else 'an offline rebuild'} need BuildKit, and "
                "only the legacy builder is in use.",
                hint="Install the buildx plugin (scripts/engine up does) or unset "
                "IMAGECTL_BUILDER=legacy.",
            )
        with tempfile.TemporaryDirectory(prefix="imagectl-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            command, env = self._command(
                dockerfile, context, iidfile, secrets, no_cache=no_cache, labels=labels or {},
                proxy=proxy, contexts=contexts or {},
            )  # fmt: skip
            code, output = stream(command, env=env, on_output=on_output)
            if code != 0:
                if daemon_down(output):
                    raise EngineError(
                        f"the Docker engine ({engine_endpoint().describe()}) does not answer "
                        "while building.",
                        hint=engine_hint(),
                        command=tuple(command),
                        exit_code=code,
                        stderr=output,
                    )
                raise build_failure(
                    builder=self.builder,
                    named=self.named,
                    command=tuple(command),
                    code=code,
                    output=output,
                    dockerfile=dockerfile.name,
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
        proxy: str = "",
        contexts: Mapping[str, Path] | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        common = [
            *(["--no-cache"] if no_cache else []),
            *(flag for arg in _proxy_args(proxy) for flag in ("--build-arg", arg)),
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
            for name, folder in (contexts or {}).items():
                flags += ["--build-context", f"{name}={folder}"]
            return [*buildx_command(self.context), "build", *flags, *common], env
        env["DOCKER_BUILDKIT"] = "0"
        return ["docker", "build", *common], env


def build_failure(
    *,
    builder: Builder,
    named: str,
    command: tuple[str, ...],
    code: int,
    output: str,
    dockerfile: str,
) -> EngineError:
    """What a failed build is blamed on. BuildKit names the Dockerfile line of every failure an
    instruction causes (a step exiting non-zero, a COPY of a missing file, a FROM it cannot
    resolve, a syntax error); a buildx build that names none failed in the builder or the
    engine, and the increment is not to be "fixed" for it. The legacy builder never names a
    line: its failures stay the increment's, as they always were."""
    line = _failing_line(output, dockerfile)
    if builder == "buildx" and line is None:
        which = f"the builder {named!r}" if named else "the current buildx builder"
        return EngineError(
            f"the buildx build exited with code {code} without naming a failing instruction: "
            f"{which} or the engine failed, not the increment.",
            hint="Nothing was recorded. buildx's output is shown below; check the builder "
            f"(`docker buildx inspect{f' {named}' if named else ''}`, `docker buildx ls`) and "
            "the engine, then build again.",
            details=output,
            command=command,
            exit_code=code,
            stderr=output,
        )
    return BuildError(
        f"the {builder} build exited with code {code}.",
        hint="The failing step's output is shown below; fix the increment (it was never "
        "recorded) and build again.",
        details=output,
        command=command,
        exit_code=code,
        dockerfile_line=line,
    )


def same_engine(one: Any, other: Any) -> bool:
    """Whether two engines' `GET /info` answers are the same daemon: its ID (kept in its data
    root) is the same; an answer without one proves nothing."""
    ids = [found.get("ID") if isinstance(found, dict) else None for found in (one, other)]
    return bool(ids[0]) and ids[0] == ids[1]


def inspected_fields(inspected: str) -> dict[str, str]:
    """`docker buildx inspect`'s "Key: value" lines as a mapping (a key seen twice, such as
    the builder's and its node's Name, keeps the last value)."""
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in inspected.splitlines())
        if value.strip()
    }


def builder_context(fields: Mapping[str, str]) -> str:
    """The docker context a builder is, from its `docker buildx inspect` fields: a builder of
    the docker driver is the BuildKit inside a context's engine, its node's endpoint that
    context's name; "" for every other driver (a BuildKit of its own, reached from any
    context)."""
    return fields.get("Endpoint", "") if fields.get("Driver") == "docker" else ""


def server_version(header: str) -> str:
    """The version in the engine's Server header ("Docker/26.1.5+dfsg1 (linux)"), else ""."""
    product, _, rest = header.partition("/")
    return rest.split(" ", 1)[0] if product == "Docker" and rest else ""


def buildx_command(context: str) -> list[str]:
    """buildx in the current context: its plugin binary run directly (what `docker buildx`
    execs: the same program, engine and docker context, without the docker CLI's own start and
    its call for the plugin's metadata, two Go processes and about 50 ms a build). In `context`
    when one is given, through `docker --context NAME buildx`: buildx builds with a builder of
    the docker driver only in its own context, and says "use `docker --context=NAME buildx`"
    otherwise (even for a context of the very engine imagectl uses)."""
    plugin = None if context else buildx_plugin()
    if plugin is not None:
        return [str(plugin)]
    return ["docker", *(["--context", context] if context else []), "buildx"]


def daemon_down(text: str, names: tuple[str, ...] = ()) -> bool:
    cleaned = without_names(text, names)
    return any(marker in cleaned for marker in DAEMON_DOWN)


class DockerImages:
    """The engine's image store over the Engine API (about 1 ms a call on the local socket)."""

    def __init__(self, builder: DockerBuilder | None = None) -> None:
        # Reading a whole file tree is fastest through BuildKit's tar exporter, when there.
        self._builder = builder or DockerBuilder()
        self.api = self._builder.api
        self._store: docker_layers.LocalStore | bool | None = False  # False: not asked yet

    def inspect_image(self, ref: str) -> ImageInfo | None:
        with calling(f"inspecting {ref}"):
            answer = self.api.call("GET", f"/images/{quote(ref)}/json", ok=(404,))
        if answer.status == 404:
            return None
        return image_info(json.loads(answer.body))

    def _raw_image(self, ref: str) -> dict[str, Any] | None:
        with calling(f"inspecting {ref}"):
            answer = self.api.call("GET", f"/images/{quote(ref)}/json", ok=(404,))
        return None if answer.status == 404 else dict(json.loads(answer.body))

    def pull(self, ref: str) -> None:
        name = parse_reference(ref)
        source = pinned(name.repository, name.digest) if name.digest else ref
        headers = {"X-Registry-Auth": registry_auth_header(name.host)}
        path = f"/images/create{query(fromImage=source)}"
        try:
            for _ in self.api.messages("POST", path, headers=headers, timeout=None):
                pass
        except ApiError as exc:
            raise EngineError(
                f"the Docker engine could not pull {ref} (HTTP {exc.status}): {exc.message}.",
                hint="Check that the registry serves it and that `docker login` was done.",
                command=("POST", path),
                exit_code=exc.status,
                stderr=exc.message,
            ) from exc
        except EngineUnreachableError as exc:
            raise api_failure(exc, doing=f"pulling {ref}") from exc

    def push(self, ref: str, *, on_output: Say) -> str:
        """Push `ref` (the engine uploads it); the manifest digest the registry stored."""
        name = parse_reference(ref)
        path = f"/images/{quote(name.repository)}/push{query(tag=name.tag or 'latest')}"
        headers = {"X-Registry-Auth": registry_auth_header(name.host)}
        digest = ""
        try:
            for message in self.api.messages("POST", path, headers=headers, timeout=None):
                aux = message.get("aux")
                if isinstance(aux, dict) and str(aux.get("Digest", "")).startswith("sha256:"):
                    digest = str(aux["Digest"])
                if message.get("status"):
                    on_output(" ".join(str(message[k]) for k in ("id", "status") if k in message))
        except EngineUnreachableError as exc:
            raise api_failure(exc, doing=f"pushing {ref}") from exc
        except ApiError as exc:
            text = without_names(exc.message, names_in(ref))
            failure = push_failure(ref, text, exc.message, command=("POST", path), code=exc.status)
            raise failure from exc
        if not digest:
            raise RegistryError(f"the engine pushed {ref} but reported no digest.")
        return digest

    def tag(self, image_id: str, ref: str) -> None:
        name = parse_reference(ref)
        path = f"/images/{quote(image_id)}/tag{query(repo=name.repository, tag=name.tag)}"
        with calling(f"tagging {image_id} as {ref}"):
            self.api.call("POST", path)

    def remove_leftovers(self) -> tuple[str, ...]:
        from imagectl.adapters.docker_containers import remove_leftovers  # noqa: PLC0415

        try:
            return remove_leftovers(self.api)
        except EngineError:
            return ()  # best effort: the command itself names the engine's fault if it needs it

    def remove_image(self, ref: str) -> None:
        """Remove a tag (or an untagged image); one that is gone or in use is left as it is."""
        with calling(f"removing {ref}"):
            self.api.call("DELETE", f"/images/{quote(ref)}", ok=(404, 409))

    # -- reading package databases --------------------------------------------------------

    def layer_changes(
        self, image: str, wanted: FileSelection, *, above: int
    ) -> tuple[LayerChange, ...] | None:
        store = self._local_store()
        raw = self._raw_image(image) if store is not None else None
        folders = docker_layers.layer_folders(store, raw) if store and raw else None
        if folders is None:
            return None
        changes = []
        try:
            for folder in folders[above:]:
                change = docker_layers.read_layer(folder, wanted)
                if change is None:
                    return None
                changes.append(change)
        except PermissionError:
            return None  # a data root this process may not read: the container reads it
        return tuple(changes)

    def read_files(self, image: str, wanted: FileSelection) -> dict[str, bytes]:
        """The selected files of the merged image: from its layers when this host holds them,
        else from a reader container the engine runs (`docker_containers`)."""
        changes = self.layer_changes(image, wanted, above=0)
        if changes is not None:
            return merged_files(changes)
        from imagectl.adapters.docker_containers import read_in_container  # noqa: PLC0415

        return read_in_container(self.api, image, wanted)

    def _local_store(self) -> docker_layers.LocalStore | None:
        if self._store is False:
            forced = os.environ.get("IMAGECTL_LAYER_READS", "").strip().lower()
            if forced == "off":
                self._store = None
            else:
                with calling("asking for its storage"):
                    self._store = docker_layers.local_store(self.api.info())
        return self._store if isinstance(self._store, docker_layers.LocalStore) else None

    def capture_address(self) -> str | None:
        """The address of the engine's default bridge, where its build containers reach this
        host; None when the engine runs elsewhere (a proxy here would not be on their path)."""
        with calling("asking where it runs"):
            if not docker_layers.engine_on_this_host(self.api.info()):
                return None
        with calling("asking for its bridge network"):
            answer = self.api.call("GET", "/networks/bridge", ok=(404,))
        if answer.status == 404:
            return None
        configs = json.loads(answer.body).get("IPAM", {}).get("Config") or []
        gateways = [c.get("Gateway", "") for c in configs if isinstance(c, dict)]
        gateway = next((g for g in gateways if g and ":" not in g), None)
        # An engine of this host in its own network namespace (a second dockerd) has a bridge
        # this process cannot listen on: its builds do not reach this host's proxy either.
        return gateway if gateway is not None and _bindable(gateway) else None

    def is_local(self) -> bool:
        """Whether the engine runs on this host (its data root is this host's)."""
        return self._local_store() is not None

    # -- whole trees (verify, checkpoint) ----------------------------------------------------

    def file_tree(self, image: str) -> dict[str, FileEntry]:
        """Every path of `image` with type, mode, owner, link target and content hash.

        With BuildKit the tar exporter gives the exact tree; `docker export` (the fallback)
        adds .dockerenv and /etc/hosts and friends, which are left out of both.
        """
        with self._tree_stream(image) as stream_:
            return _tree_from(stream_)

    @contextmanager
    def _tree_stream(self, image: str) -> Iterator[Any]:
        """`image`'s files as one tar stream (a file-like object to read)."""
        if self._builder.builder == "buildx":
            with tempfile.TemporaryDirectory(prefix="imagectl-tree-") as tmp:
                Path(tmp, "Dockerfile").write_text(f"FROM {image}\n")
                command = ["docker", "buildx", "build", "-q", "--output", "type=tar,dest=-", tmp]
                with subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                ) as proc:
                    assert proc.stdout is not None
                    yield proc.stdout
                    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    code = proc.wait()
                if code != 0:
                    raise EngineError(
                        f"buildx failed while reading the file tree of {image}: "
                        f"{last_line(stderr)}.",
                        command=tuple(command),
                        exit_code=code,
                        stderr=stderr,
                    )
            return
        from imagectl.adapters.docker_containers import created  # noqa: PLC0415

        with created(self.api, image, purpose="export") as container:
            path = f"/containers/{container}/export"
            with calling(f"exporting {image}"), self.api.stream("GET", path) as answer:
                yield _ChunkReader(answer.chunks())

    def import_rootfs(self, source: str, *, changes: list[str], tag: str) -> str:
        """A one-layer image with `source`'s files and the given config changes, tagged `tag`."""
        name = parse_reference(tag)
        params = query(fromSrc="-", repo=name.repository, tag=name.tag)
        params += "".join(f"&changes={quote(change)}" for change in changes)
        image_id = ""
        with (
            self._tree_stream(source) as tree,
            calling(f"flattening {source}"),
        ):
            body = iter(lambda: tree.read(1 << 20), b"")
            for message in self.api.messages(
                "POST", f"/images/create{params}", body=body, timeout=None
            ):
                found = str(message.get("status") or "")
                if found.startswith("sha256:"):
                    image_id = found
        if not image_id:
            imported = self.inspect_image(tag)
            image_id = imported.image_id if imported is not None else ""
        if not image_id:
            raise EngineError(f"the engine imported {source} as {tag} but reported no image id.")
        return image_id

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
                raise EngineError(
                    f"docker failed while applying the config to {image}: "
                    f"{last_line(without_names(done.stderr, (image, tag)))}.",
                    command=tuple(command),
                    exit_code=done.returncode,
                    stderr=done.stderr,
                )
            return iidfile.read_text().strip()

    def run_test(self, image: str, script: Path, *, start: bool, timeout: float) -> TestRun:
        from imagectl.adapters.docker_containers import run_test  # noqa: PLC0415

        return run_test(
            self.api, image, script, start=start, timeout=timeout, local=self.is_local()
        )


def image_info(image: Mapping[str, Any]) -> ImageInfo:
    return ImageInfo(
        image_id=str(image["Id"]),
        layers=tuple(str(layer) for layer in (image.get("RootFS") or {}).get("Layers") or ()),
        size=int(image.get("Size") or 0),
        repo_digests=tuple(str(d) for d in image.get("RepoDigests") or ()),
        config=ImageConfig.from_docker(image.get("Config") or {}),
    )


def push_failure(
    ref: str, text: str, reason: str, *, command: tuple[str, ...], code: int
) -> RegistryError:
    """What the engine's complaint about a push amounts to (`text` has the names cut out)."""
    error: RegistryError
    if any(marker in text for marker in IMMUTABLE):
        from imagectl.core.errors import TagImmutableError  # noqa: PLC0415

        error = TagImmutableError(
            f"the registry refused to change the immutable tag {ref} ({reason}).",
            hint="An immutable tag cannot be pushed again; imagectl checks what it names.",
        )
    elif any(marker in text for marker in PUSH_AUTH):
        from imagectl.core.errors import RegistryAuthError  # noqa: PLC0415

        error = RegistryAuthError(
            f"the registry refused the push of {ref} ({reason}).",
            hint=f"Log in with `docker login {parse_reference(ref).host}`; imagectl uses "
            "docker's credential store.",
        )
    else:
        error = RegistryError(
            f"docker could not push {ref} ({reason}).",
            hint="Check the registry's health and logs, then run again; the lock records "
            "nothing that was not pushed.",
        )
    error.command, error.exit_code, error.stderr = command, code, reason
    return error


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks (an API stream), for tarfile."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def _engine_host(context: str) -> str:
    """The engine address of a docker context ("" for the current one, which DOCKER_HOST and
    DOCKER_CONTEXT choose); "" when the endpoint is not a context (a plain address)."""
    named = [context] if context else []
    found = run(("docker", "context", "inspect", *named, "--format", "{{.Endpoints.docker.Host}}"))
    if found.returncode != 0:
        return context if "://" in context else ""
    return found.stdout.strip()


def _failing_line(output: str, name: str) -> int | None:
    """The Dockerfile line BuildKit's error names ("Dockerfile:7"); imagectl wrote that file,
    so its name is ours, never a user's."""
    found = re.findall(rf"^{re.escape(name)}:(\d+)$", output, flags=re.MULTILINE)
    return int(found[-1]) if found else None


def _bindable(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _proxy_args(proxy: str) -> list[str]:
    """Every spelling of the predefined proxy arguments, and no exceptions: each http request
    of the build goes through `proxy`, and each https one tunnels through it, so that the
    archive can name what it could not keep (an empty no_proxy overrides the engine's own)."""
    if not proxy:
        return []
    names = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")
    return [*(f"{name}={proxy}" for name in names), "no_proxy=", "NO_PROXY="]


def _secret_flags(secrets: Mapping[str, str]) -> list[str]:
    flags = []
    for secret_id, source in sorted(secrets.items()):
        kind, _, where = source.partition(":")
        flags += [
            "--secret",
            f"id={secret_id},env={where}" if kind == "env" else f"id={secret_id},src={where}",
        ]
    return flags


def _tree_from(source: Any) -> dict[str, FileEntry]:
    tree: dict[str, FileEntry] = {}
    with tarfile.open(fileobj=source, mode="r|") as archive:
        for member in archive:
            name = member.name.removeprefix("./").rstrip("/")
            if not name or name in EXPORT_NOISE:
                continue
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
    return tree


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


def _has_buildx() -> bool:
    if buildx_plugin() is not None:  # finding the file saves a `docker buildx version`
        return True
    try:
        result = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
