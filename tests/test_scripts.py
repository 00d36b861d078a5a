"""The one test command, scripts/test (issue 20): shellcheck-clean, what README and .ci/run say, and a
second run on a machine that has everything installs nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "test"


def test_scripts_are_shellcheck_clean() -> None:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed: bash scripts/test installs it"
    p = subprocess.run(
        [exe, str(SCRIPT), str(ROOT / ".ci" / "run")], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_readme_and_ci_give_the_same_one_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run the tests (one command)", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"```sh\nbash scripts/test\n```", section), section
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test --setup-only" in ci and re.search(r"^bash scripts/test$", ci, re.M)
    assert '"$rc" -eq 5' in ci  # pytest's "no tests collected" is a failure in CI


def test_the_script_installs_what_the_tests_need() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    for package in (
        "mosquitto",
        "chromium",
        "ffmpeg",
        "fonts-dseg",
        "fonts-dejavu-core",
        "shellcheck",
        "systemd",
        "openssl",
        "postgresql",
        "nats-server",
    ):
        assert f"need_apt+=({package})" in text, package
    assert 'EXTRAS="daemon,web,build,bench,test,train,fleet"' in text
    assert "edge-ocr models build" in text
    assert 'exec .venv/bin/python -m pytest "$@"' in text


def test_a_second_run_installs_nothing(tmp_path: Path) -> None:
    """With everything installed (as for this suite): no apt-get, no pip, no model build. apt-get, sudo
    and pip are stand-ins on PATH that record a call; the models must verify first (a build is minutes
    and rewrites models/, which a test must not do)."""
    venv_bin = ROOT / ".venv" / "bin"
    if Path(sys.executable).parent != venv_bin:
        pytest.skip("the suite does not run from this checkout's .venv")
    verify = subprocess.run(
        [str(venv_bin / "edge-ocr"), "models", "verify"], capture_output=True, timeout=300
    )
    assert verify.returncode == 0, "the models do not verify: run `edge-ocr models build` first"
    calls = tmp_path / "calls"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("apt-get", "sudo", "pip", "pip3"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"{calls}"\nexit 1\n')
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run(
        ["bash", str(SCRIPT), "--setup-only"], capture_output=True, text=True, env=env, timeout=600
    )
    assert p.returncode == 0, p.stderr
    assert not calls.exists(), calls.read_text()
    assert p.stderr.splitlines() == [
        "scripts/test: system packages: all there",
        "scripts/test: python packages: all there",
        "scripts/test: models: built and verified",
    ], p.stderr
