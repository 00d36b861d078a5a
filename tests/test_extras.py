"""An optional extra that is not installed: the command (or the configured option) that needs it exits
non-zero with one line naming the extra and the pip command, never a traceback (issue 20).

The extra is made missing for real: the subprocess runs with PYTHONPATH first on a folder whose stub
package raises ModuleNotFoundError when imported, as Python does for a package that is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mqtt_broker import free_port


def without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment in which importing each of `modules` fails as if it were not installed."""
    stubs = tmp_path / "not-installed"
    for name in modules:
        pkg = stubs / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {name!r}'!r}, name={name!r})\n"
        )
    path = os.pathsep.join(filter(None, [str(stubs), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def edge_ocr(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_ocr", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def serve_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "serve.yaml"
    doc = {
        "state_dir": str(tmp_path / "state"),
        "sources": [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
        "http": {"port": free_port()},
    }
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def test_the_stub_really_hides_the_module(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-c", "import fastapi"],
        capture_output=True,
        text=True,
        env=without(tmp_path, "fastapi"),
    )
    assert p.returncode != 0 and "ModuleNotFoundError: No module named 'fastapi'" in p.stderr


def test_serve_without_the_web_extra_says_which_extra_in_one_line(tmp_path: Path) -> None:
    p = edge_ocr(without(tmp_path, "fastapi"), "serve", "--config", str(serve_config(tmp_path)))
    assert p.returncode != 0
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert lines[0].startswith("edge-ocr: error: edge-ocr serve needs the web extra"), lines
    assert "pip install 'edge-ocr[web]'" in lines[0] and "fastapi" in lines[0]


def test_serve_needs_only_the_web_extra_not_the_daemon_one(tmp_path: Path) -> None:
    """`serve` watches no folder and talks to no broker: paho and watchdog missing do not matter.
    (It is stopped by its first check: a config whose http section is refused.)"""
    cfg = serve_config(tmp_path)
    doc = yaml.safe_load(cfg.read_text())
    doc["http"]["host"] = "0.0.0.0"  # refused without a token: exit 2 once the config is read
    cfg.write_text(yaml.safe_dump(doc))
    p = edge_ocr(without(tmp_path, "paho", "watchdog"), "serve", "--config", str(cfg))
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "http.token_file" in p.stderr


def test_run_without_the_daemon_extra_says_which_extra(tmp_path: Path) -> None:
    p = edge_ocr(without(tmp_path, "paho"), "run", "--config", str(serve_config(tmp_path)))
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [
        "edge-ocr: error: edge-ocr run needs the daemon extra (paho is not installed) "
        "(pip install 'edge-ocr[daemon]')"
    ], p.stderr


def test_http_enabled_without_the_web_extra_refuses_the_start_before_loading_models(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "sources": [{"name": "inbox", "type": "folder", "path": str(tmp_path / "inbox")}],
                "http": {"enabled": True, "port": free_port()},
            }
        )
    )
    p = edge_ocr(without(tmp_path, "fastapi"), "run", "--config", str(cfg))
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if "error" in ln.lower()]
    assert errors == [
        "edge-ocr: error: http.enabled needs the web extra (fastapi is not installed) "
        "(pip install 'edge-ocr[web]', or set http.enabled: false)"
    ], p.stderr
    assert "loading models" not in p.stderr and "engine: models" not in p.stderr


@pytest.mark.parametrize(
    ("args", "module", "extra"),
    [
        (["train", "meter", "--out", "x.onnx"], "PIL", "train"),
        (["models", "build", "--model-set", "ppocrv4-mobile", "--models", "{tmp}/models"], "onnx", "build"),
    ],
)
def test_tool_commands_without_their_extra_say_which(
    tmp_path: Path, args: list[str], module: str, extra: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    p = edge_ocr(without(tmp_path, module), *args)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    last = p.stderr.splitlines()[-1]
    assert last.startswith("edge-ocr: error: ") and f"pip install 'edge-ocr[{extra}]'" in last, p.stderr


def test_page_scoring_without_rapidfuzz_names_the_bench_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_ocr.bench import scoring
    from edge_ocr.errors import MissingExtraError

    # As on a device without the extra: importing rapidfuzz fails (a None entry makes import raise).
    for name in ("rapidfuzz", "rapidfuzz.fuzz", "rapidfuzz.distance"):
        monkeypatch.setitem(sys.modules, name, None)
    scoring._rapidfuzz.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"pip install 'edge-ocr\[bench\]'"):
            scoring.best_substring("total 12.00", "TOTAL 12.00")
        assert scoring.levenshtein("kitten", "sitting") == 3  # the plain fallback still scores lines
    finally:
        monkeypatch.undo()
        scoring._rapidfuzz.cache_clear()
