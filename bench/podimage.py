"""The pod-sized base image of benchmark 9, made locally without any network and kept between
runs. A docker image archive (the noble rootfs layer, then the layers of bench/podfiles.py) is
streamed into `docker load`: nothing is written to disk on this side, and since every byte and
timestamp comes from the seed, the same seed gives the same image id. It is tagged
localhost:5000/bench/pod-sized:<size> (never pushed) and reused while its label matches."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.common import REGISTRY, UBUNTU, CommandFailedError, run, say
from bench.podfiles import File, Layer, pod_layers

GENERATOR = 1  # bump when bench/podfiles.py makes other files: the cached image is then remade
SEED = 20_240_101
LABEL = "org.imagectl.bench.pod-sized"  # the recipe; LABEL.files / LABEL.bytes: what it made
MTIME = 1_704_067_200  # every entry's mtime (2024-01-01): the same seed, the same layers
CREATED = "2024-01-01T00:00:00Z"
BLOCK = 512
COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PodSpec:
    data_bytes: int
    data_files: int
    seed: int = SEED

    @property
    def tag(self) -> str:
        gib, mib = divmod(self.data_bytes, 1 << 30)
        size = f"{gib}g" if not mib else f"{self.data_bytes >> 20}m"
        files = (
            f"{self.data_files // 1000}k" if self.data_files % 1000 == 0 else str(self.data_files)
        )
        return f"{REGISTRY}/bench/pod-sized:{size}-{files}"

    def recipe(self, base_id: str) -> str:
        return (
            f"generator {GENERATOR}, seed {self.seed}, {self.data_bytes} data bytes, "
            f"{self.data_files} data files, on {UBUNTU} {base_id}"
        )


@dataclass(frozen=True, slots=True)
class PodImage:
    tag: str
    image_id: str
    made: float | None  # seconds it took to make it in this run; None: the cached one
    size: int  # bytes, as `docker image inspect` gives them
    layers: int
    files: int  # regular files, counted by find in a container of it
    folders: int
    generated_files: int  # what the generator wrote on top of the rootfs (data and metadata)
    generated_bytes: int


def pod_image(work: Path, spec: PodSpec) -> PodImage:
    """The pod-sized image: the cached one when its label matches the recipe, else made now."""
    base_id = str(_inspect(UBUNTU)["Id"])
    recipe = spec.recipe(base_id)
    cached = _labels(spec.tag)
    made = None
    if cached.get(LABEL) != recipe:
        say(f"9 pod-sized: making {spec.tag} ({spec.data_bytes >> 20} MiB, not timed)")
        start = time.perf_counter()
        old = str(_inspect(spec.tag)["Id"]) if cached.get(LABEL) else ""
        _make(work, spec, recipe)
        made = time.perf_counter() - start
        if old and old != _inspect(spec.tag)["Id"]:
            run(["docker", "rmi", old], check=False)  # an older recipe's image: ours, untagged
        say(f"9 pod-sized: made in {made:.0f} s")
    return _measure(spec.tag, made)


def _inspect(image: str) -> dict[str, object]:
    done = run(["docker", "image", "inspect", image], check=False)
    if done.returncode != 0:
        return {}
    found: dict[str, object] = json.loads(done.stdout)[0]
    return found


def _labels(image: str) -> dict[str, str]:
    config = _inspect(image).get("Config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _measure(tag: str, made: float | None) -> PodImage:
    info = _inspect(tag)
    rootfs = info["RootFS"]
    labels = _labels(tag)
    # Counted in the image, not taken from the generator: the rootfs's files are in it too.
    script = "find / -xdev -type f | wc -l; find / -xdev -type d | wc -l"
    counted = run(["docker", "run", "--rm", "--network", "none", tag, "sh", "-c", script])
    files, folders = (int(word) for word in counted.stdout.split())
    return PodImage(
        tag=tag,
        image_id=str(info["Id"]),
        made=made,
        size=int(str(info["Size"])),
        layers=len(rootfs["Layers"]) if isinstance(rootfs, dict) else 0,
        files=files,
        folders=folders,
        generated_files=int(labels.get(f"{LABEL}.files", "0")),
        generated_bytes=int(labels.get(f"{LABEL}.bytes", "0")),
    )


# -- the archive -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Base:
    """The noble image, from `docker save`: its config, its layers' paths in the archive and
    their diff ids, and its dpkg status (which the apt layer extends)."""

    archive: Path
    config: dict[str, object]
    layers: list[str]
    diff_ids: list[str]
    status: str


def _base(work: Path) -> Base:
    archive = work / "pod-base.tar"
    run(["docker", "save", "-o", str(archive), UBUNTU])
    with tarfile.open(archive) as saved:
        (manifest,) = json.loads(_read(saved, "manifest.json"))
        config = json.loads(_read(saved, manifest["Config"]))
        layer = saved.extractfile(manifest["Layers"][-1])
        with tarfile.open(fileobj=layer) as rootfs:
            names = {name.removeprefix("./"): name for name in rootfs.getnames()}
            status = _read(rootfs, names["var/lib/dpkg/status"]).decode()
    return Base(archive, config, list(manifest["Layers"]), config["rootfs"]["diff_ids"], status)


def _copied(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    handle = archive.extractfile(member)
    while handle is not None and (chunk := handle.read(COPY_CHUNK)):
        yield chunk


def _read(archive: tarfile.TarFile, name: str) -> bytes:
    handle = archive.extractfile(name)
    if handle is None:
        raise CommandFailedError(f"{name} is not a file in the saved {UBUNTU}")
    return handle.read()


def _make(work: Path, spec: PodSpec, recipe: str) -> None:
    base = _base(work)
    layers = pod_layers(spec.seed, spec.data_files, spec.data_bytes, base.status)
    labels = {
        LABEL: recipe,
        f"{LABEL}.files": str(sum(len(layer.files) for layer in layers)),
        f"{LABEL}.bytes": str(sum(file.size for layer in layers for file in layer.files)),
    }
    load = subprocess.Popen(
        ["docker", "load", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=COPY_CHUNK,
    )
    assert load.stdin is not None  # PIPE was asked for
    assert load.stdout is not None
    assert load.stderr is not None
    try:
        _archive(load.stdin, base, layers, labels, spec.tag)
    except BrokenPipeError:
        pass  # docker load stopped reading: its exit code and message say why
    except BaseException:
        load.kill()  # a half-written archive must not be loaded
        load.wait()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            load.stdin.close()
    out, err = load.stdout.read(), load.stderr.read()  # a line or two each
    load.wait()
    base.archive.unlink()
    if load.returncode != 0:
        raise CommandFailedError(f"docker load of {spec.tag} exited {load.returncode}:\n{err!r}")
    say(f"9 pod-sized: {out.decode().strip()}")


def _archive(
    out: IO[bytes], base: Base, layers: list[Layer], labels: dict[str, str], tag: str
) -> None:
    """A `docker save`-style archive: the layer tars, then the config naming their diff ids,
    then manifest.json (docker load reads the whole archive before looking at either)."""
    paths, diff_ids = [], []
    with tarfile.open(base.archive) as saved:
        for index, (path, expected) in enumerate(zip(base.layers, base.diff_ids, strict=True)):
            member = saved.getmember(path)
            got = _member(out, f"{index:02d}/layer.tar", member.size, _copied(saved, member))
            if got != expected:
                raise CommandFailedError(f"{UBUNTU}'s layer {path} hashes to {got}, not {expected}")
            paths.append(f"{index:02d}/layer.tar")
            diff_ids.append(got)
    for layer in layers:
        start = time.perf_counter()
        index = len(paths)
        entries = _entries(layer)
        size = 2 * BLOCK + sum(
            len(header) + (file.size + _pad(file.size) if file else 0) for header, file in entries
        )
        diff_ids.append(_member(out, f"{index:02d}/layer.tar", size, _layer_chunks(entries)))
        paths.append(f"{index:02d}/layer.tar")
        say(
            f"9 pod-sized: layer {layer.name}: {len(layer.files)} files, {size >> 20} MiB in "
            f"{time.perf_counter() - start:.0f} s"
        )
    config = _config(base, layers, labels, diff_ids)
    _member(out, "config.json", len(config), [config])
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": paths}]).encode()
    _member(out, "manifest.json", len(manifest), [manifest])
    out.write(b"\0" * (2 * BLOCK))


def _config(base: Base, layers: list[Layer], labels: dict[str, str], diff_ids: list[str]) -> bytes:
    config = dict(base.config)
    settings = config.get("config")
    config["config"] = {**(settings if isinstance(settings, dict) else {}), "Labels": labels}
    config["created"] = CREATED
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    history = config.get("history")
    config["history"] = [
        *(history if isinstance(history, list) else []),
        *(
            {"created": CREATED, "created_by": f"bench/podfiles.py: {layer.name} layer"}
            for layer in layers
        ),
    ]
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


# -- tar, streamed -----------------------------------------------------------------------------


def _header(name: str, size: int, *, folder: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = 0o755 if folder else 0o644
    info.size = 0 if folder else size
    info.mtime = MTIME
    info.uname = info.gname = "root"
    # GNU: sizes over 8 GiB (a big layer) and long names, with the exact header length known.
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")


def _pad(size: int) -> int:
    return -size % BLOCK


def _member(out: IO[bytes], name: str, size: int, chunks: Iterable[bytes]) -> str:
    """One member of `size` bytes written from `chunks`; the sha256 of its content."""
    out.write(_header(name, size))
    digest, written = hashlib.sha256(), 0
    for chunk in chunks:
        out.write(chunk)
        digest.update(chunk)
        written += len(chunk)
    if written != size:
        raise CommandFailedError(f"{name}: {written} bytes written, {size} announced")
    out.write(b"\0" * _pad(size))
    return f"sha256:{digest.hexdigest()}"


def _entries(layer: Layer) -> list[tuple[bytes, File | None]]:
    """(header, file or None for a folder), folders first: the headers of one layer tar."""
    folders: list[tuple[bytes, File | None]] = [
        (_header(path, 0, folder=True), None) for path in layer.directories()
    ]
    return folders + [(_header(file.path, file.size), file) for file in layer.files]


def _layer_chunks(entries: list[tuple[bytes, File | None]]) -> Iterator[bytes]:
    for header, file in entries:
        yield header
        if file is not None:
            yield from file.chunks()
            yield b"\0" * _pad(file.size)
    yield b"\0" * (2 * BLOCK)
