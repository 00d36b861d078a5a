"""`edge-ocr models calibrate`: INT8 ranges from calib/ crops, then FP32 vs INT8 measured on held-back
data through the real engine; both are committed to `edge_ocr/modelbuild/calibration/<set>/<role>.json`, and
`build` turns them into the accuracy gate. Needs the eval data; run by maintainers.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

from edge_ocr.modelbuild.build import build, extract, fp32_graphs, ranges_file, write_atomic
from edge_ocr.modelbuild.quantize import calibration_inputs, compute_ranges, prepare
from edge_ocr.modelbuild.sets import model_set

log = logging.getLogger(__name__)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode("utf-8"))


def calibrate(
    models_dir: Path,
    data_dir: Path,
    wheels: list[Path] | None = None,
    set_name: str = "ppocrv6-small",
    roles: tuple[str, ...] = ("det", "rec"),
) -> Path:
    """Recompute the INT8 ranges of `roles` of one set, measure FP32 vs INT8, rebuild; the manifest path."""
    import onnxruntime

    models_dir, data_dir = Path(models_dir), Path(data_dir)
    mset = model_set(set_name)
    roles = tuple(r for r in roles if mset.roles[r].recipe is not None)
    graphs = fp32_graphs(mset, {r: b for r, b in extract(mset, wheels).items() if r in roles})
    today = _dt.date.today().isoformat()
    for role in roles:
        recipe = mset.roles[role].recipe
        assert recipe is not None
        tensors = calibration_inputs(role, data_dir)
        with tempfile.TemporaryDirectory(prefix="edge-ocr-calib-") as tmp:
            prepared = prepare(graphs[role][0], recipe, Path(tmp) / "prepared.onnx")
            ranges = compute_ranges(prepared, recipe, tensors)
        log.info("%s %s: %d tensor ranges from %d inputs", set_name, role, len(ranges), len(tensors))
        _write_json(ranges_file(set_name, role), {
            "role": role, "method": recipe.method,
            **({"percentile": recipe.percentile} if recipe.method == "Percentile" else {}),
            "data": f"{recipe.calibration} ({data_dir.name}/calib, {len(tensors)} inputs)",
            "samples": len(tensors), "date": today, "onnxruntime": onnxruntime.__version__, "ranges": ranges,
        })  # fmt: skip
    build(models_dir, wheels, sets=(set_name,))
    for role in roles:
        ev = _EVALUATORS[role](models_dir, data_dir, set_name)
        log.info("%s %s evaluation: %s", set_name, role, ev)
        path = ranges_file(set_name, role)
        with open(path, encoding="utf-8") as fh:
            calib = json.load(fh)
        calib["evaluation"] = {**ev, "date": today, "onnxruntime": onnxruntime.__version__}
        _write_json(path, calib)
    return build(models_dir, wheels, sets=(set_name,))


# --- evaluation: FP32 vs INT8 through the real engine, one role swapped at a time ------------------


def _engine(models_dir: Path, set_name: str, int8_role: str | None, use_cls: bool) -> Any:
    from edge_ocr.pipeline import Engine, EngineSettings

    precision = {r: ("int8" if r == int8_role else "fp32") for r in ("det", "rec", "cls")}
    return Engine(EngineSettings(models_dir=models_dir, model_set=set_name, threads=1, use_cls=use_cls,
                                 precision=precision, graph_cache=None))  # fmt: skip


def _side_by_side(models_dir: Path, set_name: str, role: str, images: list[Any], page: bool,
                  use_cls: bool) -> dict[str, Any]:  # fmt: skip
    """Run FP32 and INT8 engines alternately per image (shared, noisy CPU: only medians and ratios
    of interleaved runs are comparable); returns per-engine results and the role's stage times."""
    out: dict[str, Any] = {"fp32": [], "int8": [], "ms_fp32": [], "ms_int8": []}
    engines = {"fp32": _engine(models_dir, set_name, None, use_cls),
               "int8": _engine(models_dir, set_name, role, use_cls)}  # fmt: skip
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
    from edge_ocr.bench import scoring

    s = scoring.score_lines(gts, [r.text for r in results])
    return {"cer": round(s.cer, 5), "exact": round(s.accuracy, 4)}


def _int8_sha(models_dir: Path, set_name: str, role: str) -> str:
    from edge_ocr.models import load_manifest

    return load_manifest(models_dir)["sets"][set_name]["models"][role]["variants"]["int8"]["sha256"]


# The sets a recognizer's INT8 must read as well as its FP32 graph (each within the gate): a recipe that
# holds on English receipts can still cost Chinese lines more (issue 18: the v6 small recognizer's INT8
# lost 0.13 points on lines_en, 0.36 on the hidden Chinese lines).
REC_GATE_SETS = ("lines_en", "lines_zh_synth")


def _eval_lines(models_dir: Path, data_dir: Path, set_name: str, role: str) -> dict[str, Any]:
    """rec: every gate set as it is; cls: lines_en upright and turned 180 degrees (the flip it must catch).

    Per set the FP32 and INT8 scores; the speed is over every line of every set."""
    import cv2

    from edge_ocr.bench.ocr import load_lines
    from edge_ocr.decode import read_image

    names = [n for n in (REC_GATE_SETS if role == "rec" else ("lines_en",)) if (data_dir / n).is_dir()]
    parts: dict[str, tuple[list[Any], list[str], str]] = {}
    for name in names:
        items = load_lines(data_dir / name)
        images = [read_image(p) for p, _ in items]
        gts = [t for _, t in items]
        data = f"{data_dir.name}/{name} ({len(items)} lines)"
        if role == "cls":
            images += [cv2.rotate(im, cv2.ROTATE_180) for im in images]
            gts += gts
            data = f"{data_dir.name}/{name} ({len(items)} lines, each also turned 180 degrees)"
        parts[name] = (images, gts, data)
    all_images = [im for images, _, _ in parts.values() for im in images]
    r = _side_by_side(models_dir, set_name, role, all_images, page=False, use_cls=role == "cls")
    sets, start = {}, 0
    for name, (images, gts, data) in parts.items():
        end = start + len(images)
        sets[name] = {"data": data, "fp32": _line_scores(gts, r["fp32"][start:end]),
                      "int8": _line_scores(gts, r["int8"][start:end])}  # fmt: skip
        start = end
    return {
        "metric": "cer", "scoring": "CER case-folded, whitespace removed; exact-line share", "sets": sets,
        "ms_fp32": r["ms_fp32"], "ms_int8": r["ms_int8"], "speed_ratio": r["speed_ratio"],
        "speed": f"median {role} stage ms per line, batch 1, 1 thread, FP32 and INT8 interleaved",
        "int8_sha256": _int8_sha(models_dir, set_name, role),
    }  # fmt: skip


def _eval_pages(models_dir: Path, data_dir: Path, set_name: str) -> dict[str, Any]:
    """det: whole receipts end to end (FP32 cls + rec), scored with SOURCES.md's page matching."""
    from edge_ocr.bench import scoring
    from edge_ocr.bench.ocr import load_pages
    from edge_ocr.decode import read_image

    pages = load_pages(data_dir / "pages")
    images = [read_image(data_dir / "pages" / p["image"]) for p in pages]
    r = _side_by_side(models_dir, set_name, "det", images, page=True, use_cls=True)
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
        "int8_sha256": _int8_sha(models_dir, set_name, "det"),
    }  # fmt: skip


_EVALUATORS = {
    "rec": lambda m, d, s: _eval_lines(m, d, s, "rec"),
    "cls": lambda m, d, s: _eval_lines(m, d, s, "cls"),
    "det": _eval_pages,
}


# --- the meter model (our own; rendered crops, no eval data) ------------------------------------------


def calibrate_meter(models_dir: Path) -> Path:
    """Ranges from rendered calibration crops, build, then FP32 vs INT8 on the held-back sets."""
    import onnxruntime

    from edge_ocr.modelbuild.meter import (
        CALIB_CROPS,
        RANGES,
        RECIPE,
        ROLE,
        SET,
        _pooled,
        calibration_inputs,
        source_bytes,
    )  # fmt: skip
    from edge_ocr.train.meter import evaluate_onnx, held_back

    today = _dt.date.today().isoformat()
    with tempfile.TemporaryDirectory(prefix="edge-ocr-calib-") as tmp:
        prepared = prepare(source_bytes(), RECIPE, Path(tmp) / "prepared.onnx")
        ranges = compute_ranges(prepared, RECIPE, calibration_inputs())
    _write_json(RANGES, {"role": ROLE, "method": RECIPE.method, "percentile": RECIPE.percentile,
                         "data": RECIPE.calibration, "samples": CALIB_CROPS, "date": today,
                         "onnxruntime": onnxruntime.__version__, "ranges": ranges})  # fmt: skip
    build(models_dir, sets=(SET,))
    from edge_ocr.models import load_manifest

    manifest = load_manifest(models_dir)
    variants = manifest["sets"][SET]["models"][ROLE]["variants"]
    sets = held_back()
    fig = {v: evaluate_onnx(models_dir / variants[v]["file"], sets) for v in ("fp32", "int8")}

    calib = json.loads(RANGES.read_text(encoding="utf-8"))
    calib["evaluation"] = {
        "metric": "cer", "data": f"held-back rendered crops ({sum(len(s) for s in sets.values())}, 5 kinds)",
        "fp32": _pooled(fig["fp32"]), "int8": _pooled(fig["int8"]), "per_kind": fig,
        "int8_sha256": variants["int8"]["sha256"], "speed_ratio": _meter_speed_ratio(models_dir, variants),
        "date": today, "onnxruntime": onnxruntime.__version__,
    }  # fmt: skip
    _write_json(RANGES, calib)
    return build(models_dir, sets=(SET,))


def _meter_speed_ratio(models_dir: Path, variants: dict[str, Any]) -> float:
    import time

    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 32, 160)).astype(np.float32)
    best = {}
    for v in ("fp32", "int8"):
        s = ort.InferenceSession(
            str(models_dir / variants[v]["file"]), opts, providers=["CPUExecutionProvider"]
        )
        s.run(None, {"x": x})
        runs = []
        for _ in range(50):
            t = time.perf_counter()
            s.run(None, {"x": x})
            runs.append(time.perf_counter() - t)
        best[v] = float(np.median(runs))
    return round(best["fp32"] / best["int8"], 3)
