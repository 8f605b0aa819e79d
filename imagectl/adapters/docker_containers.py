"""Throwaway containers imagectl runs over the Engine API: test scripts (a test, or a pod
started as the platform starts it and a test run in it) and the package reader, a static
busybox copied into a created container of an image to stream its package databases (the
image may have no shell, no find, no tar of its own).

Every container carries labels that say it is imagectl's, why it exists and which process
made it, and is removed when its work ends.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imagectl.adapters.engine_api import (
    ApiError,
    EngineApi,
    EngineUnreachableError,
    MultiplexedStream,
    api_failure,
    calling,
    demultiplexed,
)
from imagectl.core.errors import EngineError
from imagectl.core.faults import pause_point
from imagectl.core.layerfiles import FileSelection
from imagectl.core.owners import owner_gone, owner_of
from imagectl.core.ports import TestRun

TEST_MOUNT = "/imagectl-test"  # where a test script is mounted, read-only, in its container
READER_DIR = ".imagectl-reader"  # where the package reader's busybox goes in its container
BUSYBOX_PLACES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")
ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "arm", 3: "i386", 21: "ppc64", 22: "s390x"}


def labels(purpose: str, image: str) -> dict[str, str]:
    return {
        "imagectl": "1",
        "imagectl.purpose": purpose,
        "imagectl.image": image,
        "imagectl.owner": owner_of(os.getpid()),
        **({"imagectl.test": "1"} if purpose.endswith("test") else {}),
    }


def remove_leftovers(api: EngineApi) -> tuple[str, ...]:
    """Remove the containers whose owning imagectl process on this host is gone (killed while
    it read packages or ran a test: its `finally` never ran); say what each one was."""
    query = json.dumps({"label": ["imagectl.owner"]})
    with calling("listing imagectl's containers"):
        found = api.json("GET", f"/containers/json?all=1&filters={quote(query)}")
    removed = []
    for entry in found if isinstance(found, list) else []:
        names = entry.get("Labels") or {}
        if not owner_gone(str(names.get("imagectl.owner", ""))):
            continue
        remove_container(api, str(entry["Id"]))
        what = names.get("imagectl.purpose", "container")
        image = names.get("imagectl.image") or entry.get("Image", "")
        removed.append(
            f"{what} container {str(entry['Id'])[:12]} of {image} ({entry.get('State')})"
        )
    return tuple(removed)


@contextmanager
def created(
    api: EngineApi, image: str, *, purpose: str, name: str = "", **config: Any
) -> Iterator[str]:
    """A created (not started) container of `image`, removed afterwards whatever happened."""
    body = {"Image": image, "Labels": labels(purpose, image), **config}
    path = f"/containers/create?name={name}" if name else "/containers/create"
    with calling(f"creating a container of {image}"):
        container = str(api.json("POST", path, body=body)["Id"])
    try:
        yield container
    finally:
        remove_container(api, container)


def remove_container(api: EngineApi, container: str) -> None:
    """Remove it (killing it first if it runs); one that is already gone is fine."""
    with calling("removing a container"):
        api.call("DELETE", f"/containers/{container}?force=1&v=1", ok=(404, 409))


# -- the package reader --------------------------------------------------------------------


def read_in_container(api: EngineApi, image: str, wanted: FileSelection) -> dict[str, bytes]:
    """The selected files of `image`: a static busybox, copied into a created container,
    finds them (`wanted.globs`) and streams them as a tar; nothing else of the image is read
    and nothing runs but the reader, without network."""
    busybox = static_busybox()
    script = _reader_script(wanted.globs)
    config: dict[str, Any] = {
        "Entrypoint": [f"/{READER_DIR}/busybox", "sh", "-c", script],
        "Cmd": [],
        "User": "0:0",
        "WorkingDir": "/",
        "NetworkDisabled": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "none"}},
    }
    with created(api, image, purpose="package reader", **config) as container:
        with calling(f"copying the package reader into a container of {image}"):
            api.call(
                "PUT",
                f"/containers/{container}/archive?path=/",
                body=_reader_archive(busybox),
                headers={"Content-Type": "application/x-tar"},
            )
        pause_point("in-package-reader")  # a kill here leaves the created container
        code, out, err, _ = _run_attached(api, container, timeout=600.0)
    if code != 0:
        raise EngineError(
            f"the package reader failed in a container of {image} (exit code {code}): "
            f"{err.decode(errors='replace').strip()[-300:] or 'no output'}.",
            hint="Check that the engine runs containers of this image's platform "
            f"({_machine(busybox)} here); a remote engine of another architecture needs a "
            "busybox of its own (IMAGECTL_BUSYBOX).",
        )
    return _selected_files(out, wanted)


def _reader_script(globs: tuple[str, ...]) -> str:
    """Find the selected files (pseudo file systems and other mounts left out) and tar them;
    busybox's tar takes no file list, so find hands them over in batches (`-exec ... +`),
    each batch an archive of its own, read one after the other."""
    bb = f"/{READER_DIR}/busybox"
    paths = " -o ".join(f"-path '{glob}'" for glob in globs)
    prune = " -o ".join(f"-path {p}" for p in ("/proc", "/sys", "/dev", f"/{READER_DIR}"))
    return (
        f"exec {bb} find / -xdev \\( {prune} \\) -prune -o -type f \\( {paths} \\) "
        f"-exec {bb} tar -cf - {{}} +"
    )


def _selected_files(archive: bytes, wanted: FileSelection) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if not archive:
        return files
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:", ignore_zeros=True) as tar:
        for member in tar:
            name = member.name.lstrip("/").removeprefix("./")
            if member.islnk():
                files[name] = files.get(member.linkname.lstrip("/"), b"")
            elif member.isfile() and wanted.match(name):
                handle = tar.extractfile(member)
                files[name] = handle.read() if handle else b""
    return {name: content for name, content in files.items() if wanted.match(name)}


@cache
def static_busybox() -> Path:
    """A statically linked busybox on this host (Debian's busybox-static), or IMAGECTL_BUSYBOX."""
    chosen = os.environ.get("IMAGECTL_BUSYBOX", "")
    for place in (chosen,) if chosen else BUSYBOX_PLACES:
        path = Path(place)
        if path.is_file() and _is_static_elf(path):
            return path
    raise EngineError(
        "reading an image's packages on this engine needs a statically linked busybox on this "
        f"host, and none was found ({chosen or ', '.join(BUSYBOX_PLACES)}).",
        hint="Install it (`apt-get install busybox-static`; scripts/engine up does) or point "
        "IMAGECTL_BUSYBOX at one.",
    )


@cache
def _reader_archive(busybox: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(READER_DIR)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        data = busybox.read_bytes()
        member = tarfile.TarInfo(f"{READER_DIR}/busybox")
        member.size, member.mode = len(data), 0o755
        tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def _is_static_elf(path: Path) -> bool:
    """An ELF file without a program interpreter (PT_INTERP): it runs in any image."""
    import struct  # noqa: PLC0415

    with path.open("rb") as handle:
        head = handle.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", head, 32)[0],
            *struct.unpack_from("<HH", head, 54),
        )
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    kinds = (struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum))
    return 3 not in kinds  # PT_INTERP


def _machine(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(20)
    return ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "unknown")


# -- test containers -----------------------------------------------------------------------


def run_test(
    api: EngineApi, image: str, script: Path, *, start: bool, timeout: float, local: bool
) -> TestRun:
    """A test script in a new container of `image`: with `start`, in a pod started with the
    image's own entrypoint and command (through an exec); else with /bin/sh instead of the
    entrypoint and no network. The script is bind-mounted read-only (copied in, for an engine
    on another host). The container is removed afterwards; past `timeout` the test is killed."""
    inside = f"{TEST_MOUNT}/{script.name}"
    host: dict[str, Any] = {"Binds": [f"{script}:{inside}:ro"]} if local else {}
    if start:
        config: dict[str, Any] = {"HostConfig": host}
    else:
        config = {
            "Entrypoint": ["/bin/sh"],
            "Cmd": [inside],
            "NetworkDisabled": True,
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": {**host, "NetworkMode": "none"},
        }
    began = time.monotonic()
    purpose = "start-up test" if start else "test"
    with created(api, image, purpose=purpose, name=f"imagectl-test-{secrets.token_hex(6)}",
                 **config) as container:  # fmt: skip
        if not local:
            _copy_script(api, container, script)
        if start:
            code, output = _started_test(api, container, inside, timeout=timeout)
        else:
            code, _, _, both = _run_attached(api, container, timeout=timeout)
            output = both.decode(errors="replace")
    return TestRun(exit_code=code, output=output, seconds=time.monotonic() - began)


def _copy_script(api: EngineApi, container: str, script: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = script.read_bytes()
        member = tarfile.TarInfo(f"{TEST_MOUNT.strip('/')}/{script.name}")
        member.size, member.mode = len(data), 0o444
        tar.addfile(member, io.BytesIO(data))
    with calling("copying a test script into its container"):
        api.call(
            "PUT",
            f"/containers/{container}/archive?path=/",
            body=buffer.getvalue(),
            headers={"Content-Type": "application/x-tar"},
        )


def _run_attached(
    api: EngineApi, container: str, *, timeout: float
) -> tuple[int | None, bytes, bytes, bytes]:
    """Start the container attached: its exit code (None when it was killed after `timeout`
    seconds), stdout, stderr, and both interleaved as they came."""
    path = f"/containers/{container}/attach?stream=1&stdout=1&stderr=1"
    with calling("attaching to a container"):
        attached = api.attached("POST", path)
    try:
        with calling("starting a container"):
            api.call("POST", f"/containers/{container}/start")
        frames, finished = _frames_until(attached, time.monotonic() + timeout)
    finally:
        attached.close()
    if not finished:
        with calling("stopping a test that ran out of time"):
            api.call("POST", f"/containers/{container}/kill", ok=(404, 409))
        return None, *demultiplexed(frames)
    with calling("waiting for a container"):
        code = int(api.json("POST", f"/containers/{container}/wait")["StatusCode"])
    return code, *demultiplexed(frames)


def _frames_until(
    stream: MultiplexedStream, deadline: float
) -> tuple[list[tuple[int, bytes]], bool]:
    """The frames until the stream ends (True) or the deadline passes (False)."""
    frames: list[tuple[int, bytes]] = []
    try:
        stream.set_deadline(max(0.01, deadline - time.monotonic()))
        for frame in stream.frames():
            frames.append(frame)
            stream.set_deadline(max(0.01, deadline - time.monotonic()))
    except TimeoutError:
        return frames, False
    return frames, True


def _started_test(
    api: EngineApi, container: str, inside: str, *, timeout: float
) -> tuple[int | None, str]:
    """A pod started as the platform starts it, then the test run in it with an exec. A pod
    whose entrypoint cannot even start fails the test with the engine's reason and the exit
    code the engine gave it (127: not found, 126: not executable)."""
    try:
        api.call("POST", f"/containers/{container}/start")
    except ApiError as exc:
        state = _state(api, container)
        return int(state.get("ExitCode") or 125), f"the pod did not start: {exc.message}\n"
    except EngineUnreachableError as exc:
        raise api_failure(exc, doing="starting a pod for its start-up test") from exc
    pause_point("in-start-test")  # a kill here leaves the pod running
    exec_body = {"AttachStdout": True, "AttachStderr": True, "Cmd": ["/bin/sh", inside]}
    try:
        made = api.json("POST", f"/containers/{container}/exec", body=exec_body)
    except ApiError as exc:  # the pod stopped before its test could run
        return 1, f"the test could not run in the pod: {exc.message}\n" + _story(api, container)
    except EngineUnreachableError as exc:
        raise api_failure(exc, doing="running a start-up test") from exc
    exec_id = str(made["Id"])
    with calling("running a start-up test"):
        attached = api.attached(
            "POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False}
        )
    try:
        frames, finished = _frames_until(attached, time.monotonic() + timeout)
    finally:
        attached.close()
    output = demultiplexed(frames)[2].decode(errors="replace")
    if not finished:
        return None, output
    with calling("reading a start-up test's exit code"):
        code = int(api.json("GET", f"/exec/{exec_id}/json").get("ExitCode") or 0)
    if code != 0:
        output += _story(api, container)
    return code, output


def _state(api: EngineApi, container: str) -> dict[str, Any]:
    with calling("inspecting a test container"):
        found = api.call("GET", f"/containers/{container}/json", ok=(404,))
    if found.status == 404:
        return {}
    import json  # noqa: PLC0415

    return dict(json.loads(found.body).get("State") or {})


def _story(api: EngineApi, container: str) -> str:
    """What a started container said and whether it still runs: why a start-up test failed."""
    state = _state(api, container)
    with calling("reading a test container's logs"):
        logs = api.call(
            "GET", f"/containers/{container}/logs?stdout=1&stderr=1&tail=40", ok=(404, 501)
        )
    said = _log_text(logs.body).rstrip() if logs.status == 200 else ""
    story = "\n---- the started container"
    if state and state.get("Status") != "running":
        story += (
            f" ({state.get('Status')}, exit code {state.get('ExitCode')}: its entrypoint or "
            "command ended)"
        )
    return f"{story} said (docker logs) ----\n{said or '(nothing)'}\n"


def _log_text(body: bytes) -> str:
    """A multiplexed logs body (a container without a TTY) as text."""
    out, position = bytearray(), 0
    while position + 8 <= len(body):
        size = int.from_bytes(body[position + 4 : position + 8], "big")
        out += body[position + 8 : position + 8 + size]
        position += 8 + size
    return out.decode(errors="replace")
