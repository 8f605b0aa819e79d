"""What the pod-sized image of benchmark 9 holds on top of the noble rootfs: four layers, as a
real pod image has (apt packages, pip distributions, a conda environment, model weights), with
many data files of varied sizes in a few thousand folders and the metadata that package
readers look for (dpkg's status and .list files, `*.dist-info/METADATA`, `conda-meta/*.json`).

Everything comes from one seed: the same seed gives the same files, byte for byte. Content is
seeded PRNG output (incompressible), produced only while the layer is streamed."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

CHUNK = 1 << 20
SMALL = (64, 256 << 10)  # data file sizes, drawn log-uniform: most files are small
BIG = 256 << 20  # what is left of a layer's bytes goes to files of about this size
PER_FOLDER = 20  # data files per folder, on average
SITE = "usr/local/lib/python3.12/dist-packages"
CONDA = "opt/conda"
CONDA_SITE = f"{CONDA}/lib/python3.12/site-packages"
# name, share of the data files, share of the data bytes
LAYERS = (("apt", 0.30, 0.20), ("pip", 0.30, 0.20), ("conda", 0.25, 0.20), ("models", 0.15, 0.40))
EXTENSIONS = (".py", ".so", ".json", ".txt", ".bin", ".h", ".pyc", ".dat")


@dataclass(frozen=True, slots=True)
class File:
    path: str  # from the root, no leading slash
    size: int
    text: bytes | None = None  # metadata; None: `size` bytes of PRNG output seeded by `seed`
    seed: int = 0

    def chunks(self) -> Iterator[bytes]:
        if self.text is not None:
            yield self.text
            return
        rng, left = random.Random(self.seed), self.size  # noqa: S311 - seeded on purpose
        while left > 0:
            yield rng.randbytes(min(CHUNK, left))
            left -= CHUNK


@dataclass(slots=True)
class Layer:
    name: str
    files: list[File] = field(default_factory=list)

    def text(self, path: str, content: str) -> None:
        data = content.encode()
        self.files.append(File(path, len(data), data))

    def directories(self) -> list[str]:
        """Every folder the files need, parents first."""
        found = {
            "/".join(f.path.split("/")[:i])
            for f in self.files
            for i in range(1, f.path.count("/") + 1)
        }
        return sorted(found)


@dataclass(slots=True)
class Budget:
    """A layer's share of the data files and bytes, drawn from its own seeded PRNG."""

    rng: random.Random
    files: int
    bytes: int

    def sizes(self) -> tuple[list[int], list[int]]:
        """Small and large file sizes, `files` in all, adding up to `bytes` exactly: small ones
        log-uniform, the rest of the bytes in a few large ones (libraries, weights)."""
        low, high = math.log(SMALL[0]), math.log(SMALL[1])
        sizes = [int(math.exp(self.rng.uniform(low, high))) for _ in range(self.files)]
        rest = self.bytes - sum(sizes)
        if rest <= 0:  # more small data than bytes: shrink them all alike
            sizes = [max(1, size * self.bytes // sum(sizes)) for size in sizes]
            sizes[-1] += self.bytes - sum(sizes)
            return sizes, []
        big = min(self.files, max(1, round(rest / BIG)))
        weights = [self.rng.uniform(0.5, 1.5) for _ in range(big)]
        extra = [int(rest * w / sum(weights)) for w in weights]
        extra[-1] += rest - sum(extra)
        large = [size + more for size, more in zip(sizes[-big:], extra, strict=True)]
        return sizes[: self.files - big], large


def _spread(layer: Layer, budget: Budget, folders: list[str], big: Callable[[int], str]) -> None:
    """The layer's data files: small ones spread over `folders`, large ones at `big(i)`."""
    small, large = budget.sizes()
    for index, size in enumerate(small):
        folder = folders[budget.rng.randrange(len(folders))]
        path = f"{folder}/f{index:05d}{EXTENSIONS[index % len(EXTENSIONS)]}"
        layer.files.append(File(path, size, seed=budget.rng.getrandbits(64)))
    for index, size in enumerate(large):
        layer.files.append(File(big(index), size, seed=budget.rng.getrandbits(64)))


def _folders(package: Callable[[int], str], count: int, budget: Budget) -> list[str]:
    """About one folder per PER_FOLDER files, spread over the `count` packages' folders."""
    leaves = max(count, budget.files // PER_FOLDER)
    return [f"{package(index % count)}/s{index // count:02d}" for index in range(leaves)]


def _packages(budget: Budget, per_package: int) -> int:
    return max(4, budget.files // per_package)


def _version(rng: random.Random) -> str:
    return f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 12)}"


def metadata(name: str, version: str) -> str:
    return (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        f"Summary: generated for imagectl's benchmark\nLicense: MIT\n\n{name} long description\n"
    )


def pod_layers(seed: int, data_files: int, data_bytes: int, status: str) -> list[Layer]:
    """The four layers; `status` is the base's /var/lib/dpkg/status (the apt layer adds to it)."""
    layers = []
    makers = {"apt": _apt, "pip": _pip, "conda": _conda, "models": _models}
    for name, file_share, byte_share in LAYERS:
        budget = Budget(
            random.Random(f"{seed}:{name}"),  # noqa: S311 - the same seed, the same image
            max(8, int(data_files * file_share)),
            int(data_bytes * byte_share),
        )
        layer = Layer(name)
        makers[name](layer, budget, status)
        layers.append(layer)
    return layers


def _apt(layer: Layer, budget: Budget, status: str) -> None:
    """Debs: each its folder of data under /usr/lib, its dpkg status stanza and .list file;
    every tenth a python3-* package whose dist-info dpkg owns."""
    count = _packages(budget, 125)
    folders = _folders(lambda i: f"usr/lib/x86_64-linux-gnu/libpod{i:04d}", count, budget)
    _spread(layer, budget, folders, lambda i: f"usr/lib/x86_64-linux-gnu/libpod_big{i:02d}.so")
    stanzas = []
    for index in range(count):
        name, version = f"libpod{index:04d}", _version(budget.rng)
        owned = [f"/usr/lib/x86_64-linux-gnu/libpod{index:04d}"]
        if index % 10 == 0:
            name = f"python3-pod{index:04d}"
            dist = f"usr/lib/python3/dist-packages/pod{index:04d}-{version}.dist-info"
            layer.text(f"{dist}/METADATA", metadata(f"pod{index:04d}", version))
            owned.append(f"/{dist}")
        stanzas.append(
            f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
            f"Architecture: amd64\nVersion: {version}\nDescription: generated\n"
        )
        layer.text(f"var/lib/dpkg/info/{name}.list", "/.\n" + "\n".join(owned) + "\n")
    layer.text("var/lib/dpkg/status", status.rstrip("\n") + "\n\n" + "\n".join(stanzas))


def _pip(layer: Layer, budget: Budget, _status: str) -> None:
    """pip distributions in dist-packages: a package folder and a dist-info each."""
    count = _packages(budget, 60)  # a few hundred distributions
    folders = _folders(lambda i: f"{SITE}/pypod{i:04d}", count, budget)
    _spread(layer, budget, folders, lambda i: f"{SITE}/pypod{i:04d}/lib/libbig{i:02d}.so")
    for index in range(count):
        name, version = f"pypod{index:04d}", _version(budget.rng)
        dist = f"{SITE}/{name}-{version}.dist-info"
        layer.text(f"{dist}/METADATA", metadata(name, version))
        layer.text(f"{dist}/INSTALLER", "pip\n")
        layer.text(f"{dist}/RECORD", f"{name}/__init__.py,,\n{dist.rsplit('/', 1)[1]}/METADATA,,\n")


def _conda(layer: Layer, budget: Budget, _status: str) -> None:
    """A conda environment: conda-meta/*.json naming each package's files (a python package's
    dist-info among them), and a few distributions pip put there behind conda's back."""
    count = _packages(budget, 60)
    folders = _folders(lambda i: f"{CONDA_SITE}/cpod{i:04d}", count, budget)
    _spread(layer, budget, folders, lambda i: f"{CONDA}/lib/libcpod_big{i:02d}.so")
    by_package: dict[str, list[str]] = {}
    for file in layer.files:
        if file.path.startswith(f"{CONDA_SITE}/cpod"):
            package = file.path.removeprefix(f"{CONDA_SITE}/").split("/", 1)[0]
            by_package.setdefault(package, []).append(file.path.removeprefix(f"{CONDA}/"))
    for index in range(count):
        name, version = f"cpod{index:04d}", _version(budget.rng)
        dist = f"lib/python3.12/site-packages/{name}-{version}.dist-info"
        layer.text(f"{CONDA}/{dist}/METADATA", metadata(name, version))
        if index % 10 == 9:
            continue  # installed by pip inside the environment: no conda-meta entry
        files = [*by_package.get(name, []), f"{dist}/METADATA"]
        meta = {"name": name, "version": version, "build": "py312_0", "files": files}
        layer.text(f"{CONDA}/conda-meta/{name}-{version}-py312_0.json", json.dumps(meta, indent=1))


def _models(layer: Layer, budget: Budget, _status: str) -> None:
    """Model weights: a few large shards and many small tokenizer and config files."""
    folders = _folders(lambda i: f"opt/models/model{i:02d}", _packages(budget, 1000), budget)
    _spread(layer, budget, folders, lambda i: f"opt/models/weights/model-{i:05d}.safetensors")
