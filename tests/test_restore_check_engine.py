"""restore-check on the real engine: a pod started from v1 of a busybox line and changed as a
user would, its writable layer taken with `docker commit`, a fix back-ported and built; then
the verdict and every classification, the merged layer laid over the successor (the fix in
force, the user's files there), and the raw backup laid over it (the fix undone)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from .conftest import DEBIAN, docker, imagectl
from .engine_helpers import busybox_repo
from .helpers import git_commit_all, git_init, make_line, write

pytestmark = pytest.mark.engine

# The pod's start-up script prints what the kernel says of PID 1's OOM score adjustment.
START = "#!/bin/sh\\nexec cat /proc/1/oom_score_adj\\n"
STEPS = {
    "0001-pod": (
        "# The pod: a start-up script, a config file, a file the user will delete\n"
        f"RUN printf '{START}' > /start && chmod 755 /start && echo conf-v1 > /etc/app.conf "
        "&& echo keep > /etc/keep.txt && mkdir -p /home/u /etc/conf.d "
        "&& echo base > /etc/conf.d/base\n"
    ),
}
FIXED_START = "#!/bin/sh\\necho 900 > /proc/self/oom_score_adj\\nexec cat /proc/1/oom_score_adj\\n"
FIX = (
    "# The OOM fix: the start-up script sets oom_score_adj 900, and the config says so\n"
    f"RUN printf '{FIXED_START}' > /start && echo conf-fix > /etc/app.conf "
    "&& echo 900 > /etc/conf.d/oom\n"
)
# What a user does in the pod: files in the home, the start-up script copied up unchanged
# (as `sed -i` of a pattern that is not there does), a deleted file.
USER = (
    "echo notes > /home/u/notes && mkdir /home/u/src && echo code > /home/u/src/main.c "
    "&& cat /start > /tmp/s && cat /tmp/s > /start && rm /etc/keep.txt"
)


def backup_of(image: str, command: str, out: Path) -> Path:
    """Run `command` in a pod of `image`, commit it, and write the commit's top layer."""
    name = f"imagectl-restore-{uuid.uuid4().hex[:10]}"
    try:
        docker("run", "--name", name, "--entrypoint", "sh", image, "-c", command)
        committed = docker("commit", name)
    finally:
        docker("rm", "-f", name, check=False)
    try:
        out.write_bytes(top_layer(committed))
    finally:
        docker("rmi", committed, check=False)
    return out


def upper_directory_of(image: str, command: str, out: Path) -> Path:
    """Run `command` in a pod of `image` and tar its overlay upper directory as it is, in
    overlayfs' own form (0/0 character devices, the opaque xattr)."""
    name = f"imagectl-restore-{uuid.uuid4().hex[:10]}"
    try:
        docker("run", "--name", name, "--entrypoint", "sh", image, "-c", command)
        upper = docker("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", name)
        subprocess.run(
            ["tar", "--xattrs", "--xattrs-include=trusted.overlay.*", "-C", upper, "-cf",
             str(out), "."],
            check=True,
        )  # fmt: skip
    finally:
        docker("rm", "-f", name, check=False)
    return out


def top_layer(image: str) -> bytes:
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = archive.extractfile(manifest[0]["Layers"][-1])
        assert layer is not None
        return layer.read()


def laid_over(image: str, layer: bytes, tag: str) -> str:
    """`image` with `layer` on top, loaded into the engine as `tag` (what a platform does
    when it restores a pod: the backup's layer over the image it starts on)."""
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(saved)) as archive,
        tarfile.open(fileobj=out, mode="w") as new,
    ):
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(archive.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        for member in archive.getmembers():
            if member.name not in ("manifest.json", "index.json", "oci-layout", "repositories"):
                new.addfile(member, archive.extractfile(member) if member.isreg() else None)
        config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(layer).hexdigest()}")
        config["history"].append({"created_by": "restored backup"})
        config_bytes = json.dumps(config).encode()
        config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
        manifest[0].update(
            Config=config_name, RepoTags=[tag], Layers=[*manifest[0]["Layers"], "backup/layer.tar"]
        )
        for name, data in (
            ("backup/layer.tar", layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "load", "-q"], input=out.getvalue(), capture_output=True, check=True)
    return tag


def pod(image: str, *command: str) -> str:
    return docker("run", "--rm", "--entrypoint", command[0], image, *command[1:])


def test_a_busybox_pod_backup_restored_on_its_patched_successor(
    tmp_path: Path, repo_name: str
) -> None:
    root = busybox_repo(tmp_path, repo_name, STEPS)
    write(root / "increments" / "_shared" / "oom-fix.Dockerfile.j2", FIX)
    git_commit_all(root, "the fix")
    assert imagectl(root, "build", "next", "-q").code == 0
    v1 = f"{repo_name}:v1"
    # one pod only added files and copied the start-up script up; another also edited the
    # config file the fix changes
    plain = backup_of(v1, USER, tmp_path / "plain.tar")
    edited = backup_of(v1, f"{USER} && echo user-conf > /etc/app.conf", tmp_path / "edited.tar")
    # a pod whose user replaced the folder the fix adds a file to: overlayfs makes it opaque
    replaced = upper_directory_of(
        v1,
        f"{USER} && rm -rf /etc/conf.d && mkdir /etc/conf.d && echo mine > /etc/conf.d/a",
        tmp_path / "upper.tar",
    )
    assert imagectl(root, "backport", "increments/_shared/oom-fix.Dockerfile.j2").code == 0
    assert imagectl(root, "build", "next", "-q").code == 0
    v2 = f"{repo_name}:v2"

    merged = tmp_path / "merged.tar"
    done = imagectl(root, "restore-check", str(plain), "--on", v1, "--json", "--write", str(merged))
    assert done.code == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "safe after merge"
    assert (report["line"], report["version"]) == ("line", 1)
    assert report["successor"]["version"] == 2
    assert report["successor"]["added_layers"] == 1  # only the fix's layer was read
    classified = {p["path"]: (p["class"], p["fix"], p["hides_fix"]) for p in report["paths"]}
    assert classified["home/u/notes"] == ("user only", None, False)
    assert classified["home/u/src/main.c"] == ("user only", None, False)
    assert classified["tmp/s"] == ("user only", None, False)
    assert classified["start"] == ("stale copy", "changed", True)  # v1's script: the fix's wins
    assert classified["etc/keep.txt"] == ("user only", None, False)  # the user's deletion
    assert next(p for p in report["paths"] if p["path"] == "etc/keep.txt")["kind"] == "whiteout"
    assert {c for c, _, _ in classified.values()} <= {"user only", "stale copy", "directory"}
    assert report["conflicts"] == []
    assert report["written"] == str(merged)
    # REF given by its image id: the same answer
    by_id = imagectl(root, "restore-check", str(plain), "--on", docker("image", "inspect",
                     "--format", "{{.Id}}", v1), "--json")  # fmt: skip
    assert json.loads(by_id.stdout)["paths"] == report["paths"]

    # the merged layer over the successor: the fix in force, the user's files and deletion
    restored = laid_over(v2, merged.read_bytes(), f"{repo_name}:restored-merged")
    assert pod(restored, "/start") == "900"
    assert pod(restored, "cat", "/home/u/notes", "/home/u/src/main.c") == "notes\ncode"
    assert "No such file" in subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "cat", restored, "/etc/keep.txt"],
        capture_output=True, text=True, check=False,
    ).stderr  # fmt: skip
    assert pod(restored, "cat", "/etc/app.conf") == "conf-fix"
    # the raw backup over the same successor undoes the fix: v1's start-up script is back
    raw = laid_over(v2, plain.read_bytes(), f"{repo_name}:restored-raw")
    assert pod(raw, "/start") == "0"

    # the pod that also edited the config file the fix changed: a conflict, nothing written
    other = tmp_path / "other.tar"
    done = imagectl(root, "restore-check", str(edited), "--on", v1, "--json", "--write", str(other))
    assert done.code == 3, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "conflicts"
    (conflict,) = report["conflicts"]
    assert conflict["path"] == "etc/app.conf"
    assert conflict["backup"] != conflict["successor"]
    assert report["written"] is None
    assert not other.exists()
    text = imagectl(root, "restore-check", str(edited), "--on", v1)
    assert text.code == 3
    assert "conflict etc/app.conf: both changed it" in text.stdout

    # the upper directory's own form: its whiteout and opaque folder read as the OCI form's
    done = imagectl(root, "restore-check", str(replaced), "--on", v1, "--json")
    assert done.code == 3, done.stdout + done.stderr
    report = json.loads(done.stdout)
    kinds = {p["path"]: (p["kind"], p["class"]) for p in report["paths"]}
    assert kinds["etc/keep.txt"] == ("whiteout", "user only")
    assert kinds["etc/conf.d"] == ("opaque", "conflict")
    assert kinds["etc/conf.d/a"] == ("file", "user only")
    (conflict,) = report["conflicts"]
    assert conflict["path"] == "etc/conf.d"
    assert "hides what the fix added or changed in it: etc/conf.d/oom" in conflict["reason"]


DEBIAN_STEPS = {
    "0001-pod": (
        "# The pod: a start-up script\n"
        f"RUN printf '{START}' > /start && chmod 755 /start && mkdir -p /home/u\n"
    ),
}
DEBIAN_FIX = (
    "# The OOM fix: the start-up script sets oom_score_adj 900; procps and a system user for it\n"
    "ARG DEBIAN_FRONTEND=noninteractive\n"
    f"RUN printf '{FIXED_START}' > /start && apt-get update "
    "&& apt-get install -y --no-install-recommends procps && rm -rf /var/lib/apt/lists/* "
    "&& useradd --system --uid 990 --no-create-home oomd\n"
)
# What a user does in a Debian pod: installs a package, adds a user, adds files in a home.
DEBIAN_USER = (
    "export DEBIAN_FRONTEND=noninteractive && apt-get update -q "
    "&& apt-get install -y -q --no-install-recommends less && useradd --uid 1000 -m alice "
    "&& echo notes > /home/alice/notes"
)


@pytest.mark.debian
def test_a_debian_pod_with_an_installed_package_restored_on_its_patched_successor(
    tmp_path: Path, repo_name: str
) -> None:
    root = tmp_path / "repo"
    make_line(root, "line", repository=repo_name, base=DEBIAN, increments=DEBIAN_STEPS)
    write(root / "increments" / "_shared" / "oom-fix.Dockerfile.j2", DEBIAN_FIX)
    git_init(root)
    assert imagectl(root, "build", "next", "-q").code == 0
    v1 = f"{repo_name}:v1"
    backup = backup_of(v1, DEBIAN_USER, tmp_path / "backup.tar")
    assert imagectl(root, "backport", "increments/_shared/oom-fix.Dockerfile.j2").code == 0
    assert imagectl(root, "build", "next", "-q").code == 0
    v2 = f"{repo_name}:v2"

    merged = tmp_path / "merged.tar"
    done = imagectl(
        root, "restore-check", str(backup), "--on", v1, "--json", "--write", str(merged)
    )
    report = json.loads(done.stdout)
    assert done.code == 0, json.dumps(report["conflicts"], indent=1)
    assert report["verdict"] == "safe after merge"
    classified = {p["path"]: p["class"] for p in report["paths"]}
    assert classified["var/lib/dpkg/status"] == "merged"
    assert classified["etc/passwd"] == "merged"
    assert classified["etc/group"] == "merged"
    assert classified["etc/shadow"] == "merged"
    assert classified["home/alice/notes"] == "user only"
    assert classified["usr/bin/less"] == "user only"
    assert classified["var/log/dpkg.log"] == "merged"  # both appended to it
    for dropped in ("etc/passwd-", "var/lib/dpkg/status-old"):  # the tools' backup copies
        assert classified[dropped] == "regenerated cache"
    assert classified["var/lib/dpkg/lock"] == "stale copy"
    merges = {m["path"]: m for m in report["merges"]}
    status = merges["var/lib/dpkg/status"]
    assert status["from_backup"] == ["package less:amd64"]
    assert "package procps:amd64" in status["from_successor"]
    assert "user alice" in merges["etc/passwd"]["from_backup"]
    assert "user oomd" in merges["etc/passwd"]["from_successor"]

    # the merged layer over the successor: the fix in force, the user's package and user
    restored = laid_over(v2, merged.read_bytes(), f"{repo_name}:restored-merged")
    assert pod(restored, "/start") == "900"
    assert pod(restored, "dpkg-query", "-W", "-f", "${Status}", "less", "procps") == (
        "install ok installedinstall ok installed"
    )
    assert pod(restored, "id", "-u", "alice") == "1000"
    assert pod(restored, "id", "-u", "oomd") == "990"
    assert pod(restored, "cat", "/home/alice/notes") == "notes"
    # the raw backup over it: dpkg no longer knows the fix's procps, and oomd is gone
    raw = laid_over(v2, backup.read_bytes(), f"{repo_name}:restored-raw")
    lost = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "dpkg-query", raw, "-W", "procps"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lost.returncode != 0
    assert "no packages found matching procps" in lost.stderr
    assert "no such user" in subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", raw, "oomd"],
        capture_output=True, text=True, check=False,
    ).stderr  # fmt: skip


# The fix also hard-links its new config file: in the engine's store both names are one file,
# in the registry's layer tar the second name is a hard link whose data is at the first.
# It also makes an empty folder in the home, which a pod that emptied the home hides.
LINKED_FIX = (
    FIX.rstrip("\n") + " && ln /etc/conf.d/oom /etc/conf.d/oom.link && mkdir /home/u/.cache\n"
)


def test_the_registry_and_the_engine_s_store_give_the_same_answer(
    tmp_path: Path, repo_name: str
) -> None:
    """The same pods checked with the layers read from the engine's overlay2 store and from
    the registry's blobs of the published versions: the same report, the same merged layer."""
    root = busybox_repo(tmp_path, repo_name, STEPS)
    write(root / "increments" / "_shared" / "oom-fix.Dockerfile.j2", LINKED_FIX)
    git_commit_all(root, "the fix")
    assert imagectl(root, "build", "next", "-q").code == 0
    v1 = f"{repo_name}:v1"
    backups = {
        "plain": backup_of(v1, USER, tmp_path / "plain.tar"),
        "edited": backup_of(v1, f"{USER} && echo user-conf > /etc/app.conf", tmp_path / "e.tar"),
        # the fix's hard-linked file, written by the user as the fix writes it
        "linked": backup_of(
            v1, f"{USER} && echo 900 > /etc/conf.d/oom.link", tmp_path / "linked.tar"
        ),
        # a mode-only change of the config the fix changes, an owner-only one of a file it
        # leaves alone
        "chmod": backup_of(
            v1,
            f"{USER} && chmod 600 /etc/app.conf && chown 1000:1000 /etc/conf.d/base",
            tmp_path / "chmod.tar",
        ),
        "upper": upper_directory_of(
            v1,
            f"{USER} && rm -rf /etc/conf.d && mkdir /etc/conf.d && echo mine > /etc/conf.d/a",
            tmp_path / "upper.tar",
        ),
        "emptied home": backup_of(
            v1, "rm -rf /home/u && mkdir /home/u && echo x > /home/u/x", tmp_path / "home.tar"
        ),
    }
    assert imagectl(root, "backport", "increments/_shared/oom-fix.Dockerfile.j2").code == 0
    assert imagectl(root, "build", "next", "-q").code == 0
    assert imagectl(root, "publish", "-q").code == 0

    verdicts = {}
    for name, backup in backups.items():
        answers = {}
        for source in ("engine", "registry"):
            merged = tmp_path / f"{name}-{source}.tar"
            done = imagectl(
                root, "restore-check", str(backup), "--on", v1, "--json", "--from", source,
                "--write", str(merged),
            )  # fmt: skip
            assert done.code in (0, 3), done.stdout + done.stderr
            report = json.loads(done.stdout)
            assert report["successor"].pop("read_from") == source
            assert report.pop("written") in (str(merged), None)
            answers[source] = (done.code, report, merged.read_bytes() if merged.exists() else b"")
        assert answers["registry"] == answers["engine"], name
        verdicts[name] = answers["engine"][1]["verdict"]
        classified = {p["path"]: p["class"] for p in answers["engine"][1]["paths"]}
        if name == "linked":
            assert classified["etc/conf.d/oom.link"] == "stale copy"  # the successor has it
        if name == "emptied home":
            (conflict,) = answers["engine"][1]["conflicts"]
            assert conflict["path"] == "home/u"
            assert conflict["reason"].endswith("in it: home/u/.cache/")  # only a folder
        if name == "chmod":
            assert classified["etc/app.conf"] == "conflict"
            assert classified["etc/conf.d/base"] == "user only"
            (conflict,) = answers["engine"][1]["conflicts"]
            assert (
                "changed only its mode or owner (mode 0644, owner 0:0 in REF, mode 0600"
                in (conflict["reason"])
            )
    assert verdicts == {
        "plain": "safe after merge",
        "edited": "conflicts",
        "linked": "safe after merge",
        "chmod": "conflicts",
        "upper": "conflicts",
        "emptied home": "conflicts",
    }
    # by default, on this host, the engine's store is read
    done = imagectl(root, "restore-check", str(backups["plain"]), "--on", v1, "--json")
    assert json.loads(done.stdout)["successor"]["read_from"] == "engine"
    # with the engine's store out of reach (as on a remote engine), the registry is
    done = imagectl(
        root, "restore-check", str(backups["plain"]), "--on", v1, "--json",
        env={"IMAGECTL_LAYER_READS": "off"},
    )  # fmt: skip
    assert done.code == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["successor"]["read_from"] == "registry"
