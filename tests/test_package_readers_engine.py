"""The package readers on the real engine: what a version records (read from its own new
layers), what the static busybox reader container reads (IMAGECTL_LAYER_READS=off), and what
a whole-image `docker export` says (the old reader, kept here as the oracle) are the same
entries, on the example pod lines and on small busybox lines with bad or odd content."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tomllib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagectl.adapters.docker_engine import DockerImages
from imagectl.app.recording import manifest_of
from imagectl.core import lockfile, sidecar
from imagectl.core.aptkeys import KEYRINGS
from imagectl.core.packages import (
    PACKAGE_FILES,
    Manifest,
    manifest_from_sources,
    parse_entry,
    sources_from_files,
    wanted_file,
)

from .conftest import ROOT, Result, docker, imagectl
from .engine_helpers import busybox_repo, local_tags, read_lock
from .helpers import git_commit_all, git_init, write

pytestmark = pytest.mark.engine

# Files `docker export` adds to every container (the old reader left them out too).
EXPORT_NOISE = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"}
POD_LINES = ("pod-noble", "pod-bookworm")


# -- the oracle: the old whole-image reader ------------------------------------------------


def exported_files(ref: str, wanted: Callable[[str], bool] = wanted_file) -> dict[str, bytes]:
    """The package database files of `ref` (or the files `wanted` says) as the old reader
    found them: one `docker export` of a created (never started) container, every path seen,
    the wanted regular files read (a hard link reads as the file it links to)."""
    container = docker("create", ref, "true")
    files: dict[str, bytes] = {}
    seen: dict[str, bytes] = {}
    try:
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                for member in archive:
                    name = member.name.removeprefix("./").rstrip("/")
                    if not name or name in EXPORT_NOISE:
                        continue
                    if member.isfile():
                        handle = archive.extractfile(member)
                        assert handle is not None
                        content = handle.read()
                        seen[name] = content
                        if wanted(name):
                            files[name] = content
                    elif member.islnk() and wanted(name):
                        files[name] = seen.get(member.linkname.removeprefix("./"), b"")
            assert proc.wait() == 0
    finally:
        docker("rm", "-f", container)
    return files


def exported_manifest(ref: str) -> Manifest:
    return manifest_from_sources(sources_from_files(exported_files(ref)))


@contextmanager
def engine_images() -> Iterator[DockerImages]:
    """imagectl's image store on the engine; its connection closed afterwards."""
    images = DockerImages()
    try:
        yield images
    finally:
        images.api._connection().close()  # EngineApi keeps one per thread, with no close()


def container_manifest(ref: str, monkeypatch: pytest.MonkeyPatch) -> Manifest:
    """The manifest the static busybox reader container reads (the engine's layers unused)."""
    with monkeypatch.context() as patch, engine_images() as images:
        patch.setenv("IMAGECTL_LAYER_READS", "off")
        assert not images.is_local()
        return manifest_of(ref, images=images)


def recorded_manifest(root: Path, line: str, version: int) -> Manifest:
    """What `imagectl build` recorded for `version` (0: the base) in the line's sidecar."""
    record = sidecar.read_packages(root / "lock" / f"{line}.packages.toml")
    assert record.complete(version)
    return record.manifest(version)


def line_versions(root: Path, line: str) -> list[tuple[int, str]]:
    """(version, image id) of the base (0) and of every locked version of `line`."""
    config = tomllib.loads((root / "images" / f"{line}.toml").read_text())
    lock = lockfile.read_lock(
        root / "lock" / f"{line}.lock.toml",
        line=line,
        repository=config["repository"],
        base=config["base"],
    )
    return [(0, lock.base_image_id), *((v.version, v.image_id) for v in lock.versions)]


def assert_three_readers_agree(
    root: Path, line: str, monkeypatch: pytest.MonkeyPatch
) -> dict[int, Manifest]:
    """Each version's recorded, container-read and exported manifests are the same entries;
    returns them by version."""
    manifests = {}
    for version, image in line_versions(root, line):
        exported = exported_manifest(image)
        assert recorded_manifest(root, line, version) == exported, f"{line} v{version} (layers)"
        assert container_manifest(image, monkeypatch) == exported, f"{line} v{version} (container)"
        manifests[version] = exported
    return manifests


def kinds_of(manifest: Manifest) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for entry in manifest:
        package = parse_entry(entry)
        found.setdefault(package.kind, set()).add(package.name)
    return found


# -- the example pod lines -------------------------------------------------------------------


@dataclass(frozen=True)
class Pods:
    root: Path
    repository: str


# Added to the example lines in the test's copy: a Python library installed by apt (its
# dist-info is dpkg's), then removed again together with a pip distribution of the venv (their
# folders become whiteouts in the new layer), and a deb purged on Debian.
POD_EXTRAS = {
    "pod-noble/0009-six-by-apt.Dockerfile.j2": (
        '# six from apt\n{% from "_shared/apt.j2" import apt_install -%}\n'
        "ARG DEBIAN_FRONTEND=noninteractive\n"
        '{{ apt_install(["python3-six"]) }}\n'
    ),
    "pod-noble/0010-remove-six-and-traitlets.Dockerfile.j2": (
        "# Remove six (apt) and traitlets (pip) again\n"
        "RUN apt-get purge -y python3-six && /opt/notebook/bin/pip uninstall -y traitlets\n"
    ),
    "pod-bookworm/0004-no-less.Dockerfile.j2": "# Purge less\nRUN apt-get purge -y less\n",
}


@pytest.fixture(scope="module")
def pods(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    """Both pod lines, every increment built once (the test's extras on top)."""
    repository = f"{engine}/imagectl-test/{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("pods") / "repo"
    for part in ("_shared", *POD_LINES):
        shutil.copytree(ROOT / "increments" / part, root / "increments" / part)
    for line in POD_LINES:
        text = (ROOT / "images" / f"{line}.toml").read_text()
        start = text.index('repository = "') + len('repository = "')
        end = text.index('"', start)
        write(root / "images" / f"{line}.toml", f"{text[:start]}{repository}/{line}{text[end:]}")
    for name, text in POD_EXTRAS.items():
        write(root / "increments" / name, text)
    (root / "lock").mkdir()
    git_init(root)
    with engine_images() as images:
        assert images.is_local(), "the layer reader is not in use on this engine"
    built = imagectl(root, "build", "next", "--all", "-q", "-j", "2", *POD_LINES, timeout=900)
    assert built.code == 0, built.stderr
    yield Pods(root=root, repository=repository)
    for line in POD_LINES:
        for tag in local_tags(f"{repository}/{line}"):
            docker("rmi", "--no-prune", tag, check=False)


@pytest.mark.parametrize("line", POD_LINES)
def test_pod_line_manifests_match_the_whole_image_export(
    pods: Pods, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = assert_three_readers_agree(pods.root, line, monkeypatch)
    debs = [kinds_of(m).get("deb", set()) for m in manifests.values()]
    assert "ca-certificates" in debs[1]  # v1 installed the base tools
    if line == "pod-bookworm":
        assert "less" in debs[3]
        assert "less" not in debs[4]  # purged: its status stanza and .list are gone
        return
    pips = [kinds_of(m).get("pip", set()) for m in manifests.values()]
    assert {"pip", "traitlets"} <= pips[5]  # the notebook venv
    assert "traitlets" not in pips[10]  # uninstalled: its dist-info is a whiteout in v10
    assert "pip" in pips[10]


@pytest.mark.parametrize("line", POD_LINES)
def test_the_keyrings_read_below_their_folders_are_the_whole_image_s(
    pods: Pods, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive proof's keyrings, read from the layers below their folders only, are
    those a whole-image export and the reader container find, on every version."""
    for version, image in line_versions(pods.root, line):
        exported = exported_files(image, KEYRINGS.match)
        assert exported, f"{line} v{version}: no keyring at all"
        with engine_images() as images:
            assert images.read_files(image, KEYRINGS) == exported, f"{line} v{version} (layers)"
        with monkeypatch.context() as patch, engine_images() as images:
            patch.setenv("IMAGECTL_LAYER_READS", "off")
            in_container = images.read_files(image, KEYRINGS)
        assert in_container == exported, f"{line} v{version} (container)"


def test_a_python_library_apt_installed_is_listed_once_as_a_deb(pods: Pods) -> None:
    """python3-six puts a dist-info in dist-packages; dpkg's .list owns it: a deb, not pip."""
    versions = dict(line_versions(pods.root, "pod-noble"))
    sources = sources_from_files(exported_files(versions[9]))
    six = [facts.folder for facts in sources.values() if "/six-" in facts.folder]
    assert six, "python3-six installed no distribution metadata: nothing is tested"
    assert set(six) <= {folder for facts in sources.values() for folder in facts.owns}
    recorded = recorded_manifest(pods.root, "pod-noble", 9)
    named_six = [parse_entry(e) for e in recorded if parse_entry(e).name in ("six", "python3-six")]
    assert [(p.kind, p.name) for p in named_six] == [("deb", "python3-six")]
    # the pip distributions of the venv stay pip's
    assert {"pip", "traitlets"} <= kinds_of(recorded)["pip"]
    after = recorded_manifest(pods.root, "pod-noble", 10)
    assert not [e for e in after if "six" in parse_entry(e).name]


# -- small busybox lines: deletions, and images that are odd or broken --------------------

SITE = "usr/local/lib/python3.12/site-packages"
DIST = "usr/lib/python3/dist-packages"


def status_stanza(name: str, version: str, arch: str) -> str:
    """An installed package's stanza of dpkg's status, for a printf in a RUN step."""
    return (
        f"Package: {name}\\nStatus: install ok installed\\nVersion: {version}\\n"
        f"Architecture: {arch}\\n\\n"
    )


def metadata(folder: str, name: str, version: str) -> str:
    """Shell that writes a distribution's METADATA in `folder`."""
    return (
        f"mkdir -p /{folder} && printf 'Name: {name}\\nVersion: {version}\\n' > /{folder}/METADATA"
    )


# A hand-made dpkg database and pip distributions (one of them dpkg's), then deletions that
# the new layer records as whiteouts, then a site-packages folder removed and made again in one
# step (an opaque folder: what the layers below had in it is hidden).
DELETIONS = {
    "0001-databases": "# Debs and pip distributions\nRUN mkdir -p /var/lib/dpkg/info"
    f" && printf '{status_stanza('alpha', '1.0', 'amd64')}"
    f"{status_stanza('python3-six', '1.16.0-4', 'all')}' > /var/lib/dpkg/status"
    f" && echo /{DIST}/six-1.16.0.dist-info > /var/lib/dpkg/info/python3-six.list"
    f" && {metadata(f'{DIST}/six-1.16.0.dist-info', 'six', '1.16.0')}"
    f" && {metadata(f'{SITE}/x-1.0.dist-info', 'x', '1.0')}"
    f" && {metadata(f'{SITE}/y-2.0.dist-info', 'y', '2.0')}\n",
    "0002-whiteouts": "# Delete dpkg's status, six's .list and x\n"
    "RUN rm /var/lib/dpkg/status /var/lib/dpkg/info/python3-six.list"
    f" && rm -r /{SITE}/x-1.0.dist-info\n",
    "0003-opaque": "# site-packages made again, with z only\n"
    f"RUN rm -r /{SITE} && {metadata(f'{SITE}/z-3.0.dist-info', 'z', '3.0')}\n",
}
EXPECTED_DELETIONS = {
    1: (
        "alpha 1.0 amd64",
        f"pip:x 1.0 /{SITE}",
        f"pip:y 2.0 /{SITE}",
        "python3-six 1.16.0-4 all",
    ),
    # dpkg no longer claims six's dist-info: it is pip's now
    2: (f"pip:six 1.16.0 /{DIST}", f"pip:y 2.0 /{SITE}"),
    3: (f"pip:six 1.16.0 /{DIST}", f"pip:z 3.0 /{SITE}"),
}
# How a build reads: the cached head and the version's own layers (apply_layers), the layers of
# the whole image without a cached head (merged_files), the static busybox reader container.
READERS = {
    "layers": {},
    "layers-no-head": {},
    "container": {"IMAGECTL_LAYER_READS": "off"},
}


def build_one(root: Path, repo_name: str, reader: str) -> Result:
    """`imagectl build next` for one version; a failure must be one clean paragraph that
    changed neither the lock nor the tags."""
    if reader == "layers-no-head":
        shutil.rmtree(root / ".imagectl" / "packages-head", ignore_errors=True)
    lock = root / "lock" / "line.lock.toml"
    before = lock.read_bytes() if lock.exists() else None
    tags = local_tags(repo_name)
    result = imagectl(root, "build", "next", "-q", env=READERS[reader])
    assert "Traceback" not in result.stderr, result.stderr
    if result.code != 0:
        said = result.stderr.strip().splitlines()
        assert [line for line in said if line.startswith("imagectl: ")] == said[-1:], said
        assert (lock.read_bytes() if lock.exists() else None) == before
        assert local_tags(repo_name) == tags
    return result


@pytest.mark.parametrize("reader", READERS)
def test_deleted_packages_stay_deleted(
    tmp_path: Path, repo_name: str, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = busybox_repo(tmp_path, repo_name, DELETIONS)
    for _ in DELETIONS:
        result = build_one(root, repo_name, reader)
        assert result.code == 0, result.stderr
    manifests = assert_three_readers_agree(root, "line", monkeypatch)
    assert manifests == {0: (), **EXPECTED_DELETIONS}
    # the layers really hold whiteouts and an opaque folder (else nothing above was tested)
    lock = read_lock(root, repo_name)
    with engine_images() as images:
        v2, v3 = (
            images.layer_changes(v.image_id, PACKAGE_FILES, above=v.layers - 1)
            for v in lock.versions[1:]
        )
    assert v2 is not None
    assert v3 is not None
    deleted = {
        "var/lib/dpkg/status",
        "var/lib/dpkg/info/python3-six.list",
        f"{SITE}/x-1.0.dist-info",
    }
    assert deleted <= set(v2[0].deleted)
    assert SITE in v3[0].opaque


# Images that are odd or broken; each builds, with the manifest its files say.
BAD_IMAGES = {
    # dpkg's database, then every shell and tool deleted: the reader brings its own busybox
    "no-shell": (
        {
            "0001-status": "RUN mkdir -p /var/lib/dpkg"
            f" && printf '{status_stanza('alpha', '1.0', 'amd64')}' > /var/lib/dpkg/status\n",
            "0002-no-shell": "# No shell at all\nRUN rm -rf /bin /usr/bin /usr/sbin /sbin\n",
        },
        ("alpha 1.0 amd64",),
    ),
    # no dpkg at all (busybox), only a stray .list without any status
    "no-dpkg": (
        {
            "0001-stray-list": "RUN mkdir -p /var/lib/dpkg/info"
            f" && echo /{DIST}/a-1.dist-info > /var/lib/dpkg/info/a.list\n",
            "0002-file": "RUN echo hello > /hello\n",
        },
        (),
    ),
    # binary junk (NUL, invalid UTF-8), a stanza that parses, one whose name is not UTF-8
    "garbage-status": (
        {
            "0001-garbage": "RUN mkdir -p /var/lib/dpkg"
            " && head -c 65536 /dev/urandom > /var/lib/dpkg/status"
            " && printf '\\0\\377\\376 junk\\n\\nPackage: ok\\nStatus: install ok installed\\n"
            "Version: 1\\n\\n' >> /var/lib/dpkg/status"
            " && printf 'Package: caf\\351\\nStatus: install ok installed\\nVersion: 2\\n\\n'"
            " >> /var/lib/dpkg/status\n",
            "0002-more-garbage": "RUN head -c 4096 /dev/urandom >> /var/lib/dpkg/status\n",
        },
        ("caf\ufffd 2", "ok 1"),
    ),
    # 5,000 distributions in one site-packages folder, made by one step
    "huge-site-packages": (
        {
            "0001-many": "RUN i=0; while [ $i -lt 5000 ]; do"
            f" d=/{SITE}/pkg$i-1.0.dist-info; mkdir -p $d;"
            " printf 'Name: pkg%s\\nVersion: 1.0\\n' $i > $d/METADATA; i=$((i+1)); done\n",
            "0002-file": "RUN echo hello > /hello\n",
        },
        tuple(sorted(f"pip:pkg{i} 1.0 /{SITE}" for i in range(5000))),
    ),
}


@pytest.mark.parametrize("reader", ["layers", "container"])
@pytest.mark.parametrize("case", BAD_IMAGES)
def test_odd_images_build_with_the_manifest_their_files_say(
    tmp_path: Path, repo_name: str, case: str, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, expected = BAD_IMAGES[case]
    root = busybox_repo(tmp_path, repo_name, steps)
    for _ in steps:
        result = build_one(root, repo_name, reader)
        assert result.code == 0, result.stderr
    manifests = assert_three_readers_agree(root, "line", monkeypatch)
    assert manifests[len(steps)] == expected
    # the sidecar reads back: history shows the versions
    history = imagectl(root, "history", "line", "--json")
    assert history.code == 0, history.stderr
    assert "Traceback" not in history.stderr


def test_a_reader_that_fails_leaves_neither_a_lock_entry_nor_a_tag(
    tmp_path: Path, repo_name: str
) -> None:
    """The packages are read after the new version is tagged: when reading fails, the build
    fails with one paragraph, the lock is as it was and the tag it made is gone again."""
    root = busybox_repo(tmp_path, repo_name, {"0001-one": "RUN echo one > /one\n"})
    assert build_one(root, repo_name, "layers").code == 0
    write(root / "increments" / "line" / "0002-two.Dockerfile.j2", "RUN echo two > /two\n")
    git_commit_all(root, "two")
    READERS["broken-container"] = {"IMAGECTL_LAYER_READS": "off", "IMAGECTL_BUSYBOX": "/bin/true"}
    try:
        failed = build_one(root, repo_name, "broken-container")
    finally:
        del READERS["broken-container"]
    assert failed.code == 1
    assert "statically linked busybox" in failed.stderr
    assert f"{repo_name}:v2" not in local_tags(repo_name)
    assert [v.version for v in read_lock(root, repo_name).versions] == [1]
    assert build_one(root, repo_name, "layers").code == 0  # and the next run builds v2
    assert [v.version for v in read_lock(root, repo_name).versions] == [1, 2]
