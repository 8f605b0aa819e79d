"""The GitHub Actions workflows: zizmor finds nothing of medium severity or more in any of them,
and the publish workflow fans out one job per line with work (its plan step is run here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .conftest import ROOT
from .helpers import make_line

WORKFLOWS = ROOT / ".github" / "workflows"
SEVERE = {"medium", "high"}
REPO, BASE = "localhost:5000/t", "localhost:5000/busybox:latest"


def workflow_files() -> list[Path]:
    return sorted(p for p in WORKFLOWS.iterdir() if p.suffix in (".yml", ".yaml"))


def zizmor(*paths: Path) -> list[dict[str, Any]]:
    """zizmor's findings (its JSON), offline and without any configuration that could
    silence one."""
    binary = Path(sys.executable).parent / "zizmor"
    command = [str(binary) if binary.exists() else "zizmor"]
    done = subprocess.run(
        [*command, "--offline", "--no-config", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    # 0: nothing found; 10-14: findings, by highest severity; anything else: zizmor failed.
    assert done.returncode == 0 or 10 <= done.returncode <= 14, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return findings


def describe(finding: dict[str, Any]) -> str:
    """One line per finding: where (as zizmor names the file), what, how severe."""
    where = finding["locations"][0]
    files = [str(v) for k in where["symbolic"]["key"].values() for v in k.values()]
    line = where["concrete"]["location"]["start_point"]["row"] + 1
    severity = finding["determinations"]["severity"].lower()
    return f"{files[0] if files else '?'}:{line}: {severity} {finding['ident']}: {finding['desc']}"


def test_zizmor_finds_nothing_medium_or_worse_in_any_workflow() -> None:
    files = workflow_files()
    assert WORKFLOWS / "publish.yml" in files
    severe = [
        describe(f) for f in zizmor(*files) if f["determinations"]["severity"].lower() in SEVERE
    ]
    assert not severe, "\n".join(severe)


def test_zizmor_does_catch_an_unpinned_action(tmp_path: Path) -> None:
    """The check above can fail: the findings the workflow had before it was pinned."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n",
        encoding="utf-8",
    )
    found = {(f["ident"], f["determinations"]["severity"].lower()) for f in zizmor(bad)}
    assert ("unpinned-uses", "high") in found
    assert ("artipacked", "medium") in found


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    return data


def test_every_action_is_pinned_by_sha_with_its_tag_in_a_comment() -> None:
    for path in workflow_files():
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "uses:" not in text or text.lstrip().startswith("#"):
                continue
            reference = text.split("uses:", 1)[1].split("#", 1)[0].strip().strip("'\"")
            if reference.startswith("./"):
                continue  # an action of this repository: pinned by the commit that runs it
            if reference.startswith("docker://"):
                assert "@sha256:" in reference, f"{path.name}:{number}: pin {reference} by digest"
                continue
            sha = reference.rpartition("@")[2]
            assert len(sha) == 40, f"{path.name}:{number}: {reference} is not pinned by SHA"
            assert all(c in "0123456789abcdef" for c in sha), f"{path.name}:{number}"
            assert "# v" in text, f"{path.name}:{number}: name the release tag in a comment"


def test_publish_fans_out_one_job_per_line_and_checks_the_merged_result() -> None:
    jobs = load("publish.yml")["jobs"]
    assert set(jobs) == {"plan", "publish", "check"}
    publish, check = jobs["publish"], jobs["check"]
    assert publish["needs"] == "plan"
    assert publish["strategy"]["fail-fast"] is False
    assert publish["strategy"]["matrix"]["line"] == "${{ fromJSON(needs.plan.outputs.lines) }}"
    # at most one job per line at a time, jobs of different lines side by side
    assert publish["concurrency"] == {
        "group": "imagectl-publish-${{ matrix.line }}",
        "cancel-in-progress": False,
    }
    assert 'ci/publish --lines "$LINE"' in publish["steps"][-1]["run"]
    assert publish["steps"][-1]["env"] == {"LINE": "${{ matrix.line }}"}
    assert set(check["needs"]) == {"plan", "publish"}
    scripts = "\n".join(step.get("run", "") for step in check["steps"])
    assert "imagectl squash --check" in scripts
    assert "imagectl audit" in scripts


def test_only_the_job_that_pushes_can_write_or_keeps_git_credentials() -> None:
    workflow = load("publish.yml")
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        pushes = name == "publish"
        assert job["permissions"] == {"contents": "write" if pushes else "read"}, name
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is pushes, name


def run_plan_step(root: Path, outputs: Path) -> str:
    """The plan job's own script, run in `root` with this venv's imagectl; its outputs."""
    (step,) = [s for s in load("publish.yml")["jobs"]["plan"]["steps"] if s.get("id") == "plan"]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": path, "GITHUB_OUTPUT": str(outputs)},
    )
    assert done.returncode == 0, done.stderr
    return outputs.read_text(encoding="utf-8")


def test_the_plan_step_lists_the_lines_with_work(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_line(
        root, "busy", repository=f"{REPO}/busy", base=BASE, increments={"0001-a": "RUN true\n"}
    )
    make_line(root, "idle", repository=f"{REPO}/idle", base=BASE)
    assert run_plan_step(root, tmp_path / "out") == 'lines=["busy"]\n'


def test_the_plan_step_gives_an_empty_matrix_when_nothing_is_to_do(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_line(root, "idle", repository=f"{REPO}/idle", base=BASE)
    assert run_plan_step(root, tmp_path / "out") == "lines=[]\n"
    assert load("publish.yml")["jobs"]["publish"]["if"] == "needs.plan.outputs.lines != '[]'"
