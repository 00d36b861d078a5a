"""INT8 variants: onnxruntime's static QDQ quantizer fed with committed tensor ranges, and the
calibration inputs those ranges are computed from (calib/ crops only, never scored data)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edge_ocr.errors import ModelError
from edge_ocr.modelbuild import graphfuse
from edge_ocr.modelbuild.sets import Recipe

log = logging.getLogger(__name__)

# The ORT quantizer emits per-channel DequantizeLinear (needs `axis`, opset >= 13); the wheels'
# models are opset 11/12. The FP32 graphs are rewritten at opset 14 (graphfuse: HardSwish).
OPSET = graphfuse.OPSET


def quant_imports() -> Any:
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as exc:
        raise ModelError(
            f"building the INT8 models needs onnx: {exc}", remedy="pip install 'edge-ocr[build]'"
        ) from exc
    return quantization


def prepare(fp32: bytes, recipe: Recipe, out: Path) -> Path:
    """Opset 14 + quant_pre_process (shape inference, constant folding, BN/Conv fusion) -> out."""
    import onnx
    from onnx import version_converter

    q = quant_imports()
    converted = out.with_suffix(".opset.onnx")
    model = onnx.load_from_string(fp32)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    # The wheels' graphs are opset 11/12 and are raised; our own meter model is exported at 17, which
    # the converter cannot lower (and the quantizer needs only >= 13).
    onnx.save(version_converter.convert_version(model, OPSET) if opset < OPSET else model, str(converted))
    q.quant_pre_process(
        str(converted), str(out), auto_merge=True, skip_symbolic_shape=not recipe.symbolic_shape_inference,
        skip_optimization=not recipe.optimize,
    )  # fmt: skip
    converted.unlink()
    return out


def _quantize(prepared: Path, recipe: Recipe, ranges: dict[str, list[float]], out: Path) -> None:
    """Static quantization from precomputed tensor ranges: no calibration data at build time."""
    import numpy as np

    q = quant_imports()
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    method = q.CalibrationMethod[recipe.method]
    data = {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()}
    cache = out.with_suffix(".ranges.json")
    save_tensors_data(TensorsData(method, data), cache)
    q.quantize_static(
        str(prepared),
        str(out),
        None,  # no reader: onnxruntime takes the ranges from calibration_cache_path
        quant_format=q.QuantFormat[recipe.quant_format],
        op_types_to_quantize=list(recipe.op_types_to_quantize),
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        activation_type=q.QuantType[recipe.activation_type],
        weight_type=q.QuantType[recipe.weight_type],
        nodes_to_exclude=list(recipe.nodes_to_exclude),
        calibrate_method=method,
        extra_options=dict(recipe.extra_options),
        calibration_cache_path=str(cache),
    )
    cache.unlink()


def build_int8(fp32: bytes, recipe: Recipe, ranges: dict[str, list[float]], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="edge-ocr-build-") as tmp:
        prepared = prepare(fp32, recipe, Path(tmp) / "prepared.onnx")
        _quantize(prepared, recipe, ranges, Path(tmp) / "int8.onnx")
        shutil.move(str(Path(tmp) / "int8.onnx"), out)


def calibration_inputs(role: str, data_dir: Path) -> list[Any]:
    """Input tensors shaped exactly as the runtime shapes them, from calib/ only (never scored data)."""
    import math
    import random

    import cv2
    import numpy as np

    from edge_ocr.bench.ocr import load_lines
    from edge_ocr.preprocess import normalize_chw

    crops = []
    for p, _ in load_lines(data_dir / "calib"):
        crop = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if crop is None:
            raise ModelError(
                f"cannot read calibration crop {p}",
                remedy=f"restore the image or drop its line from {data_dir / 'calib' / 'labels.tsv'}",
            )
        crops.append(crop)
    if not crops:
        raise ModelError(f"no calibration crops in {data_dir / 'calib'}", remedy="pass --data DIR")
    tensors = []
    if role == "rec":
        for c in crops:  # unpadded: ranges from padded inputs measured worse (v4: CER 0.0252 vs 0.0244)
            w = min(2048, math.ceil(48 * c.shape[1] / c.shape[0]))
            tensors.append(normalize_chw(cv2.resize(c, (w, 48)))[None])
    elif role == "cls":
        for c in crops + [cv2.rotate(c, cv2.ROTATE_180) for c in crops[:50]]:
            w = min(192, math.ceil(48 * c.shape[1] / c.shape[0]))
            x = np.zeros((1, 3, 48, 192), np.float32)
            x[0, :, :, :w] = normalize_chw(cv2.resize(c, (w, 48)))
            tensors.append(x)
    else:  # det: receipt-like canvases; the pages are evaluation data and are never calibrated on
        rnd = random.Random(0)
        for _ in range(24):
            cw, ch = rnd.choice([(480, 960), (640, 960), (736, 736)])
            canvas = np.full((ch, cw, 3), 255, np.uint8)
            y = 10
            while True:
                c = crops[rnd.randrange(len(crops))]
                s = rnd.uniform(0.6, 1.4)
                size = (max(4, min(cw - 20, round(c.shape[1] * s))), max(4, round(c.shape[0] * s)))
                c = cv2.resize(c, size)
                if y + c.shape[0] > ch - 10:
                    break
                x0 = rnd.randrange(10, max(11, cw - c.shape[1] - 9))
                canvas[y : y + c.shape[0], x0 : x0 + c.shape[1]] = c
                y += c.shape[0] + rnd.randrange(4, 20)
            tensors.append(normalize_chw(canvas)[None])
    return tensors


def compute_ranges(prepared: Path, recipe: Recipe, tensors: list[Any]) -> dict[str, list[float]]:
    import numpy as np

    q = quant_imports()
    extra = {"percentile": recipe.percentile} if recipe.method == "Percentile" else {}
    with tempfile.TemporaryDirectory(prefix="edge-ocr-calib-") as tmp:
        cal = q.create_calibrator(
            prepared, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=q.CalibrationMethod[recipe.method], extra_options=extra,
        )  # fmt: skip
        name = cal.model.graph.input[0].name

        reader: Any = q.CalibrationDataReader  # a base class mypy can check (q is an untyped module)

        class One(reader):
            def __init__(self, x: Any) -> None:
                self.feeds = [{name: x}]

            def get_next(self) -> dict[str, Any] | None:
                return self.feeds.pop() if self.feeds else None

        # The calibrator print()s its progress; it belongs in the build log, not on the terminal.
        with contextlib.redirect_stdout(io.StringIO()) as chatter:
            for x in tensors:  # one tensor per call: the histogram collectors need one shape per call
                cal.collect_data(One(x))
            data = cal.compute_data()
        log.debug("calibrator: %s", chatter.getvalue().strip())
    # float32 -> Python float is exact, so the JSON round-trips to the very same ranges.
    return {
        k: [float(np.ravel(v.range_value[0])[0]), float(np.ravel(v.range_value[1])[0])]
        for k, v in sorted(data.items())
    }
