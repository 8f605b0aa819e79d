"""A second Docker engine for the tests, started and stopped by them, isolated from the first.

The first engine (scripts/engine's dockerd, /var/run/docker.sock) is shared by every test and
by other people's work on this machine; nothing here may touch it. A dockerd started beside it
in the same network namespace would share its bridge: with `--bridge=none` it even deletes
`docker0` at start-up, after which every RUN step on the first engine fails. So the second one
gets, and is checked to have:

- its own network namespace (`ip netns add imgctl-<id>`): its bridge, routes and iptables are
  its own and vanish with the namespace; inside, its bridge has its own name as well
  (`imgctl0`, made before it starts), so that even a dockerd that somehow ran outside the
  namespace would fail to start rather than take over `docker0`;
- its own mount namespace (`ip netns exec` makes one; the host's cgroup mounts are repeated
  in it, since `ip netns exec` mounts a fresh /sys), so its overlay mounts never reach the host;
- its own data root, exec root (its own containerd), pid file, socket, config file and cgroup
  parent, all named after <id>;
- the registry on the machine's 127.0.0.1:5000 at the same name, localhost:5000, through a
  small forwarder (tests/netns_forward.py).

It is stopped with SIGTERM (SIGKILL after 30 s, then any process of its own still running),
and everything is removed, even when a test failed. Afterwards the host's network interfaces
must be as they were and the first engine must still run a RUN step, or the tests fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .conftest import BUSYBOX

RUN_DIR = Path("/run/imagectl-test")
DATA_DIR = Path("/var/lib/imagectl-test")
BRIDGE = "imgctl0"
BRIDGE_ADDRESS = "10.213.0.1/24"  # inside the namespace only
REGISTRY_PORT = 5000
FORWARDER = Path(__file__).with_name("netns_forward.py")


@dataclass(frozen=True)
class SecondEngine:
    id: str
    netns: str
    host: str  # DOCKER_HOST of this engine
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def run_docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **self.env},
        )

    def docker(self, *args: str) -> str:
        done = self.run_docker(*args)
        if done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {self.host} failed: {done.stderr}")
        return done.stdout.strip()

    def has_image(self, ref: str) -> bool:
        return self.run_docker("image", "inspect", ref).returncode == 0


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"`{' '.join(command)}` failed: {done.stderr}")
    return done.stdout


def host_network() -> list[tuple[str, ...]]:
    """The machine's interfaces and their addresses (not their state, which a container
    starting on the first engine changes; nor the veths of such containers)."""
    rows = [line.split() for line in run("ip", "-br", "address").splitlines() if line.strip()]
    return sorted((row[0], *row[2:]) for row in rows if not row[0].startswith("veth"))


def cgroup_mounts() -> str:
    """Shell commands that repeat the host's cgroup mounts (v1, hybrid or v2) in a new mount
    namespace: mounting a hierarchy again gives the same hierarchy, not a new one."""
    commands = []
    for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
        source, target, kind, options = line.split()[:4]
        if target == "/sys/fs/cgroup" or target.startswith("/sys/fs/cgroup/"):
            quoted = [shlex.quote(part) for part in (kind, options, source, target)]
            commands.append(
                f"mkdir -p {quoted[3]} && mount -t {quoted[0]} -o {quoted[1]} {quoted[2]} "
                f"{quoted[3]}"
            )
    return " && ".join(commands) or "true"


def first_engine_runs_a_step(work: Path) -> None:
    """A RUN step on the first engine, uncached, on its default (bridge) network; nothing is
    kept (the tar goes to a file that is removed with `work`)."""
    context = work / "first-engine-check"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nRUN echo {secrets.token_hex(8)} > /checked\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    done = subprocess.run(
        ["docker", "buildx", "build", "--no-cache", "--progress=plain", "--output",
         f"type=tar,dest={context / 'out.tar'}", str(context)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, f"the first engine no longer runs a RUN step:\n{done.stderr}"


def own_processes(marker: str) -> list[int]:
    """Processes whose command line names `marker` (this engine's unique exec root): the
    containerd and shims it started."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
    return pids


def stop(process: subprocess.Popen[bytes], exec_root: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    for _ in range(50):
        left = own_processes(str(exec_root))
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise AssertionError(f"processes of the second engine survive: {own_processes(str(exec_root))}")


def end(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def remove_cgroups(parent: str) -> None:
    """The engine's cgroup parent in every hierarchy, once its processes are gone."""
    for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
        _, target, kind = line.split()[:3]
        found = Path(target) / parent
        if kind not in ("cgroup", "cgroup2") or not found.is_dir():
            continue
        for folder in sorted((p for p in found.rglob("*") if p.is_dir()), reverse=True):
            folder.rmdir()
        found.rmdir()


def wait_until_it_answers(engine: SecondEngine, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if engine.run_docker("version", "--format", "{{.Server.Version}}").returncode == 0:
            return
        time.sleep(0.3)
    tail = engine.log.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise AssertionError(f"the second dockerd did not come up:\n{tail}")


@contextlib.contextmanager
def second_engine(work: Path) -> Iterator[SecondEngine]:
    """Start the second engine; stop it and remove all of it afterwards, whatever happened."""
    unique = secrets.token_hex(4)
    netns = f"imgctl-{unique}"
    exec_root, data_root = RUN_DIR / unique, DATA_DIR / f"dockerd-{unique}"
    socket, pidfile, config = (RUN_DIR / f"{unique}.{ext}" for ext in ("sock", "pid", "json"))
    cgroup_parent = f"imagectl-test-{unique}"
    work.mkdir(parents=True, exist_ok=True)
    engine = SecondEngine(
        id=unique, netns=netns, host=f"unix://{socket}", log=work / f"dockerd-{unique}.log"
    )
    before = host_network()
    undo: list[Callable[[], object]] = []  # what to undo, in the order it was done

    def remove_files() -> None:
        for path in (exec_root, data_root, socket, pidfile, config):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    try:
        run("ip", "netns", "add", netns)
        undo.append(lambda: run("ip", "netns", "delete", netns))
        inside = ("ip", "netns", "exec", netns)
        run(*inside, "ip", "link", "set", "lo", "up")
        links = run(*inside, "ip", "-o", "link").splitlines()
        assert [line.split(":")[1].strip() for line in links] == ["lo"], links  # a new namespace
        run(*inside, "ip", "link", "add", BRIDGE, "type", "bridge")
        run(*inside, "ip", "address", "add", BRIDGE_ADDRESS, "dev", BRIDGE)
        run(*inside, "ip", "link", "set", BRIDGE, "up")

        for folder in (exec_root, data_root):
            folder.mkdir(parents=True)
        undo.append(remove_files)
        config.write_text("{}\n", encoding="utf-8")  # not /etc/docker/daemon.json
        undo.append(lambda: remove_cgroups(cgroup_parent))

        forwarder = subprocess.Popen(
            [sys.executable, str(FORWARDER), netns, str(REGISTRY_PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        undo.append(lambda: end(forwarder))
        assert forwarder.stdout is not None
        ready = forwarder.stdout.readline()
        assert ready.strip() == "ready", ready + forwarder.stdout.read()

        dockerd = [
            "dockerd",
            f"--config-file={config}",
            f"--data-root={data_root}",
            f"--exec-root={exec_root}",
            f"--pidfile={pidfile}",
            f"--host={engine.host}",
            f"--bridge={BRIDGE}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            f"--cgroup-parent={cgroup_parent}",
        ]
        script = f"{cgroup_mounts()} && exec {shlex.join(dockerd)}"
        with engine.log.open("wb") as log:
            process = subprocess.Popen(
                [*inside, "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT
            )
        undo.append(lambda: stop(process, exec_root))
        wait_until_it_answers(engine, process)
        assert int(pidfile.read_text().strip()) == process.pid  # the dockerd we started
        assert engine.docker("info", "--format", "{{.DockerRootDir}}") == str(data_root)
        yield engine
    finally:
        failures = []
        for step in reversed(undo):
            try:
                step()
            except Exception as exc:  # keep undoing; report them all below
                failures.append(repr(exc))
        assert not failures, failures
        assert host_network() == before, "the second engine changed the machine's network"
        first_engine_runs_a_step(work)
