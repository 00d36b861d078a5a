"""Memory a user sees: a long text line does not leave the process bloated (edge_ocr.allocator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

# Reads the line through the CLI's own entry point, four times in one process, and reports the
# process's resident memory after each read and its peak.
_PROBE = """
import json, sys
from edge_ocr.cli import main
def status():
    f = {l.split(":")[0]: int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("Vm")}
    return f["VmRSS"], f["VmHWM"]
after = []
for _ in range(4):
    assert main(["ocr", "--line", "--threads", "1", "--precision", "fp32", sys.argv[1]]) == 0
    after.append(status()[0])
print(json.dumps({"rss_after": after, "peak": status()[1]}), file=sys.stderr)
"""


def _long_line(path: Path) -> Path:
    img = np.full((48, 2048, 3), 255, np.uint8)
    for x in range(0, 1990, 120):
        cv2.putText(img, f"{x:04d}", (x, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    cv2.imwrite(str(path), img)
    return path


def _probe(image: Path, models_dir: Path, tmp_path: Path, **env: str) -> tuple[dict, str]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run_env.update(EDGE_OCR_MODELS=str(models_dir), EDGE_OCR_CACHE=str(tmp_path / "cache"), **env)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(image)], capture_output=True, text=True, env=run_env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout


def test_a_2048_px_line_read_four_times_keeps_the_process_small(tmp_path, models_dir):
    """Without the heap policy glibc served the recognizer's 2048-px tensors from its heap and kept
    them: 186-209 MB resident after each read of this line through the CLI (126 MB with it)."""
    image = _long_line(tmp_path / "long.png")
    figures, out = _probe(image, models_dir, tmp_path)
    assert "0000" in out and "1920" in out, out  # it was read, not skipped
    assert max(figures["rss_after"]) < 170, figures
    assert max(figures["rss_after"]) - figures["rss_after"][0] < 10, figures


def test_a_heap_policy_the_operator_set_is_left_alone(tmp_path, models_dir):
    image = _long_line(tmp_path / "long.png")
    mine, _ = _probe(image, models_dir, tmp_path)
    # The operator's own choice wins over ours: here no mmap at all, so every tensor stays in the heap.
    theirs, _ = _probe(image, models_dir, tmp_path, MALLOC_TOP_PAD_=str(128 * 1024), MALLOC_MMAP_MAX_="0")
    assert theirs["peak"] > mine["peak"] + 30, (theirs, mine)
