"""`edge-ocr serve` with a config that has only `http:` and `state_dir` (no sources): it starts and
answers /healthz on 127.0.0.1, an ephemeral port (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from daemon_harness import get
from mqtt_broker import free_port, wait_until


def test_serve_without_sources_starts_and_answers_healthz(tmp_path: Path, models_dir: Path) -> None:
    port = free_port()
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(yaml.safe_dump({"state_dir": "state", "http": {"host": "127.0.0.1", "port": port}}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGE_OCR_MODELS": str(models_dir)}
    log = tmp_path / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_ocr", "serve", "--config", str(cfg)],
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    try:

        def healthz() -> tuple[int, str]:
            try:
                return get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                return 0, ""

        assert wait_until(lambda: healthz()[0] == 200, 120), log.read_text()
        body = json.loads(healthz()[1])
        assert body["healthy"] is True and body["mode"] == "serve" and body["sources"] == {}
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in log.read_text()
