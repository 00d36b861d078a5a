"""What the build, the calibration and the meter set share: digests, atomic writes and the accuracy gate
that decides whether `precision: auto` may run a role's INT8 variant."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = ["GATE", "_sha256", "gate", "write_atomic"]

# `precision: auto` may pick INT8 for a role only if its held-back error is at most this much above
# FP32's (CER, absolute: 0.05 points), measured by `calibrate` on the very file `build` produces. It was
# 0.3 points: on a VNNI CPU, where INT8 is 1.7x faster, auto then ran the PP-OCRv6 recognizer at +0.13
# points on lines_en (below RapidOCR 3.10) without saying so (issue 18). `precision: int8` still forces it.
GATE = 0.0005

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def gate(int8_sha: str | None, calib: dict[str, Any] | None) -> tuple[bool, str]:
    """(INT8 may run on a device where it is faster, why) for one role, from `calibrate`'s figures."""
    if int8_sha is None:
        return False, "no INT8 variant (no calibration ranges committed for this role)"
    ev = (calib or {}).get("evaluation")
    if not ev:
        return False, "INT8 built but never evaluated; run `edge-ocr models calibrate --data DIR`"
    if ev["int8_sha256"] != int8_sha:
        import onnxruntime

        cause = (
            f"built with onnxruntime {onnxruntime.__version__}, evaluated with {ev['onnxruntime']}"
            if ev["onnxruntime"] != onnxruntime.__version__
            else "its FP32 graph or recipe changed since"
        )
        return False, (
            f"the INT8 file built here differs from the one evaluated ({cause}); not offered until "
            "`edge-ocr models calibrate` re-measures it"
        )
    metric = ev["metric"]
    # One figure per gate set; evaluations written before per-set gating carry a single set at the top.
    sets = ev.get("sets") or {"": {"data": ev["data"], "fp32": ev["fp32"], "int8": ev["int8"]}}
    failed, figures = [], []
    for one in sets.values():
        delta = one["int8"][metric] - one["fp32"][metric]
        figures.append(f"{metric} {one['int8'][metric]:.4f} INT8 vs {one['fp32'][metric]:.4f} FP32 on "
                       f"{one['data']} ({delta * 100:+.2f} points)")  # fmt: skip
        if delta > GATE:
            failed.append(figures[-1])
    text = (f"{'; '.join(figures)}; gate +{GATE * 100:.2f} on every set; on the build machine "
            f"{ev['speed_ratio']:.2f}x FP32 speed, 1 thread")  # fmt: skip
    if failed:
        return False, f"INT8 fails the accuracy gate: {text}"
    return True, f"INT8 passes the accuracy gate: {text}"
