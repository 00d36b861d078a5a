"""`edge-ocr models sensitivity`: which layers of a role cost accuracy when they run INT8, and how few of
them must stay FP32 for the INT8 variant to pass the gate (`gate.GATE`) on every gate set.

Two steps, both from the committed calibration ranges (nothing is recalibrated):

1. Rank. For each quantizable node (the recipe's op types), a model with only that node quantized is
   built exactly as `build` builds INT8 (`quantize.build_int8`, every other node excluded) and compared
   with FP32 on calib/ inputs (never scored data): for a recognizer the mean KL divergence of the
   per-frame CTC distribution, for a detector the mean per-pixel binary KL of the probability map. The
   nodes are ranked by that divergence, most sensitive first.
2. Search. The role's recipe plus the top k ranked nodes excluded (k = 0, 1, 2, 4, 8, ...) is built and
   read against FP32 on a subsample of every gate set (rec: lines_en and lines_zh_synth; det: pages,
   through the real engine), with the INT8/FP32 speed of the role (1 thread, interleaved medians), until
   every set is within the gate. The verdict that ships is still `models calibrate`'s, on the full sets.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import ModelError
from edge_ocr.modelbuild.gate import GATE
from edge_ocr.modelbuild.quantize import build_int8, prepare
from edge_ocr.modelbuild.sets import Recipe, model_set

log = logging.getLogger(__name__)

# A line read alone is padded to at least this many columns, as the engine does (EngineSettings.line_width).
LINE_WIDTH = 256
TOP_K = 5  # CTC frames: KL over FP32's 5 likeliest classes plus the rest lumped together
EPS = 1e-7
# The ops worth ranking when a recipe quantizes every op type (the rest are glue around them).
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class NodeCost:
    node: str
    op: str
    detail: str  # weight shape, group: enough to find the layer in the graph
    divergence: float  # vs FP32 with only this node INT8
    changed: float  # rec: share of inputs read differently from FP32; det: share of pixels flipped


@dataclass(frozen=True)
class Step:
    sets: dict[str, dict[str, float]]  # per gate set: fp32, int8, delta
    ms_fp32: float
    ms_int8: float

    @property
    def speed_ratio(self) -> float:
        return self.ms_fp32 / self.ms_int8 if self.ms_int8 else 0.0

    @property
    def passes(self) -> bool:
        return all(s["delta"] <= GATE for s in self.sets.values())


def session(model: bytes | Path) -> Any:
    """One thread, sequential, full graph optimization, no arena: as the runtime runs it
    (edge_ocr.inference.session), so the speed ratios are the engine's."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def quantizable(fp32: bytes, recipe: Recipe) -> list[tuple[str, str, str]]:
    """(name, op, detail) of every node the recipe may quantize, in graph order, as named in the graph
    the quantizer sees (nodes_to_exclude names these)."""
    import onnx
    from onnx import numpy_helper

    ops = recipe.op_types_to_quantize or WEIGHTED_OPS
    with tempfile.TemporaryDirectory(prefix="edge-ocr-sens-") as tmp:
        model = onnx.load(str(prepare(fp32, recipe, Path(tmp) / "prepared.onnx")))
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type not in ops or n.op_type not in WEIGHTED_OPS:
            continue
        shape = next((weights[i] for i in n.input[1:2] if i in weights), None)
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        detail = "w " + "x".join(map(str, shape)) if shape else "w dynamic"
        detail += f" g{group}" if group > 1 else ""
        out.append((n.name, n.op_type, detail))
    return out


def int8_bytes(fp32: bytes, recipe: Recipe, ranges: dict[str, list[float]], exclude: Sequence[str]) -> bytes:
    """The INT8 model `build` would make with these nodes excluded (and nothing else changed)."""
    with tempfile.TemporaryDirectory(prefix="edge-ocr-sens-") as tmp:
        out = Path(tmp) / "int8.onnx"
        build_int8(fp32, dataclasses.replace(recipe, nodes_to_exclude=tuple(exclude)), ranges, out)
        return out.read_bytes()


# --- divergence from FP32 on calibration inputs ----------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    if np.allclose(x.sum(-1), 1.0, atol=1e-3) and x.min() >= 0:
        return x
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Reference:
    """FP32's outputs on fixed inputs, and how far a candidate model's outputs are from them.

    kind "ctc": outputs (N, T, C) per-frame class distributions (softmax applied if they are logits);
    only FP32's top classes per frame are kept, so 100 lines of a 18k-class recognizer fit in memory.
    kind "map": a detector's probability map (N, 1, H, W)."""

    def __init__(self, fp32: bytes, inputs: list[np.ndarray], kind: str) -> None:
        if kind not in ("ctc", "map"):
            raise ValueError(f"kind must be ctc or map, not {kind!r}")
        self.kind, self.inputs = kind, inputs
        sess = session(fp32)
        self._name = sess.get_inputs()[0].name
        self._ref: list[Any] = []
        for x in inputs:
            y = sess.run(None, {self._name: x})[0]
            if kind == "ctc":
                p = _softmax(y[0].astype(np.float64))
                idx = np.argsort(-p, axis=-1)[:, :TOP_K]
                self._ref.append((idx, np.take_along_axis(p, idx, -1), p.argmax(-1)))
            else:
                self._ref.append(np.clip(y.astype(np.float64), EPS, 1 - EPS))

    def divergence(self, model: bytes) -> tuple[float, float]:
        """(mean divergence, share changed) of `model` against FP32 on the reference inputs."""
        sess = session(model)
        div, changed = [], []
        for x, ref in zip(self.inputs, self._ref, strict=True):
            y = sess.run(None, {self._name: x})[0]
            if self.kind == "ctc":
                idx, p, best = ref
                q_all = _softmax(y[0].astype(np.float64))
                q = np.clip(np.take_along_axis(q_all, idx, -1), EPS, 1)
                p_rest = np.clip(1 - p.sum(-1), EPS, 1)
                q_rest = np.clip(1 - q.sum(-1), EPS, 1)
                kl = (p * np.log(p / q)).sum(-1) + p_rest * np.log(p_rest / q_rest)
                div.append(float(kl.mean()))
                changed.append(float(not np.array_equal(_collapse(best), _collapse(q_all.argmax(-1)))))
            else:
                q = np.clip(y.astype(np.float64), EPS, 1 - EPS)
                kl = ref * np.log(ref / q) + (1 - ref) * np.log((1 - ref) / (1 - q))
                div.append(float(kl.mean()))
                changed.append(float(((ref > 0.3) != (q > 0.3)).mean()))
        return float(np.mean(div)), float(np.mean(changed))


def _collapse(best: np.ndarray) -> list[int]:
    """Greedy CTC: repeats merged, blanks (0) dropped."""
    return [int(c) for i, c in enumerate(best) if c != 0 and (i == 0 or c != best[i - 1])]


MODES = ("only", "without")


def rank(fp32: bytes, recipe: Recipe, ranges: dict[str, list[float]], ref: Reference,
         nodes: Sequence[str] | None = None, mode: str = "only") -> list[NodeCost]:  # fmt: skip
    """Every quantizable node (or `nodes`), the one whose FP32 matters most first.

    mode "only": the node alone runs INT8 (its own cost, blind to how errors add up or cancel), ranked
    by that divergence, highest first. "without": the recipe with this node also kept FP32 (what the
    search does next), ranked by what remains, lowest first."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    found = quantizable(fp32, recipe)
    names = [n for n, _, _ in found]
    costs = []
    for name, op, detail in found:
        already = mode == "without" and name in recipe.nodes_to_exclude
        if already or (nodes is not None and name not in nodes):
            continue
        t = time.perf_counter()
        exclude = [n for n in names if n != name] if mode == "only" else [*recipe.nodes_to_exclude, name]
        div, changed = ref.divergence(int8_bytes(fp32, recipe, ranges, exclude))
        log.info("%s (%s, %s): divergence %.5f, changed %.3f (%.1f s)", name, op, detail, div, changed,
                 time.perf_counter() - t)  # fmt: skip
        costs.append(NodeCost(name, op, detail, div, changed))
    return sorted(costs, key=lambda c: -c.divergence if mode == "only" else c.divergence)


# --- the gate sets: FP32 vs a candidate on real data ---------------------------------------------------


def line_tensor(crop: np.ndarray, min_width: int = LINE_WIDTH) -> np.ndarray:
    """A crop as `Engine.run_line` feeds the recognizer: height 48 (area-averaged when shrinking), its
    natural width, zero-padded to its 32-px bucket and at least `min_width` columns."""
    import cv2

    from edge_ocr.preprocess import normalize_chw

    h, w = crop.shape[:2]
    width = min(2048, max(1, math.ceil(48 * w / max(h, 1))))
    bucket = min(2048, math.ceil(max(96, min_width, width) / 32) * 32)
    interp = cv2.INTER_AREA if h > 48 else cv2.INTER_LINEAR
    x = np.zeros((1, 3, 48, bucket), np.float32)
    x[0, :, :, :width] = normalize_chw(cv2.resize(crop, (width, 48), interpolation=interp))
    return x


def subsample(items: list[Any], n: int | None) -> list[Any]:
    """n items spread evenly over the list (the sets are ordered by source; a prefix would be biased)."""
    if n is None or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def line_sets(data_dir: Path, n: int | None) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    from edge_ocr.bench.ocr import load_lines
    from edge_ocr.decode import read_image
    from edge_ocr.modelbuild.calibrate import REC_GATE_SETS

    out = {}
    for name in REC_GATE_SETS:
        items = subsample(load_lines(data_dir / name), n)
        out[name] = ([line_tensor(read_image(p)) for p, _ in items], [t for _, t in items])
    return out


def _timed(sess: Any, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    y = sess.run(None, feeds)[0]
    return y, (time.perf_counter() - t) * 1000


def eval_lines(fp32: bytes, int8: bytes, sets: dict[str, tuple[list[np.ndarray], list[str]]]) -> Step:
    """CER of FP32 and INT8 per set, lines read alternately (shared CPU: medians of interleaved runs)."""
    from edge_ocr.bench.scoring import score_lines
    from edge_ocr.inference.ctc import greedy_decode
    from edge_ocr.inference.recognizer import charset_from_metadata

    s32, s8 = session(fp32), session(int8)
    name_in = s32.get_inputs()[0].name
    charset = charset_from_metadata(s32)
    figures, ms32, ms8 = {}, [], []
    for set_name, (tensors, gts) in sets.items():
        texts: dict[str, list[str]] = {"fp32": [], "int8": []}
        for x in tensors:
            a, t32 = _timed(s32, {name_in: x})
            b, t8 = _timed(s8, {name_in: x})
            ms32.append(t32)
            ms8.append(t8)
            texts["fp32"].append(greedy_decode(a, charset, None)[0].text)
            texts["int8"].append(greedy_decode(b, charset, None)[0].text)
        f, i = (score_lines(gts, texts[k]).cer for k in ("fp32", "int8"))
        figures[set_name] = {"fp32": round(f, 5), "int8": round(i, 5), "delta": round(i - f, 5)}
    return Step(figures, statistics.median(ms32), statistics.median(ms8))


def eval_pages(models_dir: Path, set_name: str, int8: bytes, data_dir: Path, n: int | None) -> Step:
    """Page CER with FP32 cls + rec and the candidate detector, as `calibrate` scores pages."""
    from edge_ocr.bench import scoring
    from edge_ocr.bench.ocr import load_pages
    from edge_ocr.decode import read_image
    from edge_ocr.inference.detector import Detector
    from edge_ocr.pipeline import Engine, EngineSettings

    pages = subsample(load_pages(data_dir / "pages"), n)
    settings = EngineSettings(models_dir=models_dir, model_set=set_name, threads=1, precision="fp32",
                              graph_cache=None)  # fmt: skip
    engines = {"fp32": Engine(settings), "int8": Engine(settings)}
    # A tool's swap: the same engine with the candidate detector (the manifest knows only built files).
    engines["int8"]._det = Detector(session(int8), engines["fp32"]._det.settings)  # type: ignore[union-attr]
    totals = dict.fromkeys(engines, scoring.EMPTY_PAGE)
    ms: dict[str, list[float]] = {k: [] for k in engines}
    for page in pages:
        img = read_image(data_dir / "pages" / page["image"])
        gt = [(ln["text"], ln["box"]) for ln in page["lines"]]
        for k, eng in engines.items():
            res = eng.run(img)
            ms[k].append(res.timings_ms["det"])
            totals[k] = totals[k] + scoring.score_page(gt, [(ln.text, ln.box) for ln in res.lines])
    f, i = totals["fp32"].cer, totals["int8"].cer
    figures = {"pages": {"fp32": round(f, 5), "int8": round(i, 5), "delta": round(i - f, 5)}}
    return Step(figures, statistics.median(ms["fp32"]), statistics.median(ms["int8"]))


# --- the command ----------------------------------------------------------------------------------------


def _role_files(models_dir: Path, set_name: str, role: str) -> tuple[bytes, Recipe, dict[str, list[float]]]:
    import json

    from edge_ocr.modelbuild.build import ranges_file
    from edge_ocr.models import load_manifest

    recipe = model_set(set_name).roles[role].recipe
    calib = ranges_file(set_name, role)
    if recipe is None or not calib.is_file():
        raise ModelError(
            f"{set_name} {role} has no INT8 recipe or no committed ranges ({calib})",
            remedy="choose a role with an INT8 recipe, or run `edge-ocr models calibrate`",
        )
    entry = load_manifest(models_dir)["sets"][set_name]["models"][role]["variants"]["fp32"]
    fp32 = (models_dir / entry["file"]).read_bytes()
    return fp32, recipe, json.loads(calib.read_text(encoding="utf-8"))["ranges"]


def calib_inputs(role: str, data_dir: Path, n: int) -> list[np.ndarray]:
    from edge_ocr.bench.ocr import load_lines
    from edge_ocr.decode import read_image
    from edge_ocr.modelbuild.quantize import calibration_inputs

    if role == "rec":
        return [line_tensor(read_image(p)) for p, _ in subsample(load_lines(data_dir / "calib"), n)]
    return subsample(calibration_inputs(role, data_dir), n)


def _print_ranking(set_name: str, role: str, mode: str, ref: Reference, whole: tuple[float, float],
                   recipe: Recipe, costs: list[NodeCost], seconds: float) -> None:  # fmt: skip
    how = "each node alone INT8" if mode == "only" else "the recipe with each node also FP32"
    print(f"## {set_name} {role}: divergence from FP32, {how} ({len(ref.inputs)} calib/ inputs, "
          f"{seconds:.0f} s)\n")  # fmt: skip
    print(f"The recipe as committed (excluding {', '.join(recipe.nodes_to_exclude) or 'nothing'}): "
          f"divergence {whole[0]:.5f}, changed {whole[1]:.3f}\n")  # fmt: skip
    print("| rank | node | op | weight | divergence | changed |\n|---|---|---|---|---|---|")
    for i, c in enumerate(costs, 1):
        print(f"| {i} | {c.node} | {c.op} | {c.detail} | {c.divergence:.5f} | {c.changed:.3f} |")


def run(models_dir: Path, data_dir: Path, set_name: str, role: str, lines: int | None = None,
        calib: int = 100, ks: Sequence[int] = (2, 4, 8, 16, 32), singles: int = 4, pages: int | None = None,
        mode: str = "only", tries: Sequence[Sequence[str]] = ()) -> int:  # fmt: skip
    """Rank, then search; prints both tables (markdown). The search tries the recipe as it is, then each
    of the `singles` top-ranked nodes kept FP32 alone, then the top k together for each of `ks`, and
    stops at the first candidate that passes on every gate set. With `tries`, no ranking: each given
    list of nodes is excluded on top of the recipe and measured. Exit code 0 either way.

    Singles come first because rankings do not add up: on the v6 small recognizer the head kept FP32
    alone passed, while the top conv alone, and the top 2, 4 and 8 together, did not.

    The gate sets are read whole unless `lines`/`pages` subsample them: on lines_en the gate is about 5
    characters, and a 160-line subsample passed a recipe that lost 0.10 points on the whole set."""
    if role not in ("rec", "det"):
        raise ModelError(f"sensitivity measures rec or det, not {role!r}", remedy="pass --role rec or det")
    fp32, recipe, ranges = _role_files(models_dir, set_name, role)
    if tries:
        candidates = [tuple(t) for t in tries]
    else:
        t = time.perf_counter()
        ref = Reference(fp32, calib_inputs(role, data_dir, calib), "ctc" if role == "rec" else "map")
        whole = ref.divergence(int8_bytes(fp32, recipe, ranges, recipe.nodes_to_exclude))
        costs = rank(fp32, recipe, ranges, ref, mode=mode)
        _print_ranking(set_name, role, mode, ref, whole, recipe, costs, time.perf_counter() - t)
        order = [c.node for c in costs if c.node not in recipe.nodes_to_exclude]
        picks = [(), *((n,) for n in order[:singles]), *(tuple(order[:k]) for k in ks if k <= len(order))]
        candidates = list(dict.fromkeys(picks))
    if role == "rec":
        sets = line_sets(data_dir, lines)
        sizes = ", ".join(f"{k} {len(v[1])} lines" for k, v in sets.items())
    else:
        sizes = "pages" if pages is None else f"{pages} pages"
    print(f"\n## {set_name} {role}: recipe (excluding {', '.join(recipe.nodes_to_exclude)}) with more nodes "
          f"excluded ({sizes}; gate +{GATE * 100:.2f} points)\n")  # fmt: skip
    print("| k | also excluded | INT8/FP32 speed | passes | per set: FP32 / INT8 (delta, points) |\n"
          "|---|---|---|---|---|")  # fmt: skip
    for excluded in candidates:
        model = int8_bytes(fp32, recipe, ranges, (*recipe.nodes_to_exclude, *excluded))
        step = eval_lines(fp32, model, sets) if role == "rec" else eval_pages(
            models_dir, set_name, model, data_dir, pages)  # fmt: skip
        per_set = "; ".join(f"{n} {s['fp32']:.4f} / {s['int8']:.4f} ({s['delta'] * 100:+.2f})"
                            for n, s in step.sets.items())  # fmt: skip
        verdict = "yes" if step.passes else "no"
        print(f"| {len(excluded)} | {', '.join(excluded) or '-'} | {step.speed_ratio:.2f}x | {verdict} "
              f"| {per_set} |", flush=True)  # fmt: skip
        if step.passes and not tries:
            break
    return 0
