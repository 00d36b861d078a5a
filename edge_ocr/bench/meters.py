"""`edge-ocr bench --meters`: the meter model against the general models (and RapidOCR 3.10) on meter
crops, side by side: exact, CER and ms per crop, overall and per kind.

Data: the held-back rendered sets of `edge_ocr.train.meter.held_back` (seeds training never draws from,
`--meters-n` crops per kind), and optionally a folder of real crops with labels.tsv (`--meters-dir`).
Scoring is `edge_ocr.train.meter.score`: a drum reading of either neighbouring value is right, and the
drum column also gives the share read wrong above the last digit (what a meter must never publish).

Rows, all on one onnxruntime thread:

- the meter model INT8, FP32 and auto (what this device picks, and why): `Engine.run_meter`;
- ppocrv6-small FP32 as `ocr --line` reads a crop, and as `ocr --line --suppress-ghosts --charset`;
- ppocrv4-mobile FP32 as `ocr --line` (if the set is built);
- RapidOCR 3.10 reading each crop as one line (rec only), in its own worker process as
  `edge_ocr.bench.ocr` runs it (if the `rapidocr` package is installed; `--no-baselines` skips it).

The edge-ocr rows run in this process, one engine at a time; each reads the first crop once untimed
(the warm-up), then every crop: ms is the median of `timings_ms["total"]` (the suppress-ghosts row adds
the time of `suppress_ghosts`), the baseline's is the worker's wall time per crop.

It also keeps what the benches that put meter model files side by side share (`meter_faces`,
`meter_strength`): their `--model`/`--json` options, the FP32 readers, the report.

Tooling only (the renderer needs Pillow and the DSEG fonts): the daemon never imports this module.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_ocr.errors import ConfigError, EdgeOcrError

NUMERIC = "0123456789.-"  # what a default numeric region reads (edge_ocr.cli.METER_CHARSET)
GENERAL_FP32 = "ppocrv6-small"  # the speed ratio's general-model row
GENERAL_SETS = ("ppocrv6-small", "ppocrv4-mobile")
FOLDER_KIND = "folder"

Read = Callable[[np.ndarray], tuple[str, float]]  # crop -> (text, ms)


@dataclass(frozen=True)
class Config:
    key: str  # the row's id in the JSON
    label: str
    engine: str  # "meter", "general" or "rapidocr3"
    precision: str = "fp32"
    model_set: str | None = None
    ghosts: bool = False  # suppress_ghosts + the numeric charset + upright
    normalise: bool = False  # readings keep only NUMERIC characters, spaces stripped


CONFIGS = (
    Config("meter-int8", "meter model INT8", "meter", "int8"),
    Config("meter-fp32", "meter model FP32", "meter", "fp32"),
    Config("meter-auto", "meter model auto", "meter", "auto"),
    Config("ppocrv6-small-line", "ppocrv6-small FP32 line", "general", "fp32", "ppocrv6-small",
           normalise=True),
    Config("ppocrv6-small-ghosts", "ppocrv6-small FP32 +ghosts", "general", "fp32", "ppocrv6-small",
           ghosts=True, normalise=True),
    Config("ppocrv4-mobile-line", "ppocrv4-mobile FP32 line", "general", "fp32", "ppocrv4-mobile",
           normalise=True),
    Config("rapidocr3-line", "RapidOCR 3.10 line (rec)", "rapidocr3", normalise=True),
)  # fmt: skip


def normalise(text: str) -> str:
    """A general model's reading scored as a number: spaces stripped, only NUMERIC characters kept."""
    return "".join(c for c in text if c in NUMERIC)


# --- the machine ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, its VNNI flags (what INT8 speed depends on on x86), onnxruntime's version."""
    import onnxruntime as ort

    names: dict[str, str] = {}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "Hardware"):  # x86 and ARM; "Model" on a Pi is the board
                    names.setdefault(key, value.strip())
                elif not flags and key in ("flags", "Features"):
                    flags = set(value.split())
    except OSError:
        pass
    name = next((names[k] for k in ("model name", "Model", "Hardware") if names.get(k)), "")
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx_vnni": "avx_vnni" in flags,
        "onnxruntime": ort.__version__,
        "threads": 1,
    }


def machine_line(m: dict[str, Any]) -> str:
    vnni = " ".join(f for f in ("avx512_vnni", "avx_vnni") if m[f]) or "none (no avx512_vnni, avx_vnni)"
    return (
        f"machine: {m['cpu']} ({m['arch']}); vnni: {vnni}; "
        f"onnxruntime {m['onnxruntime']}; threads={m['threads']}"
    )


# --- data -------------------------------------------------------------------------------------------


def data_sets(n: int, folder: Path | None) -> dict[str, dict[str, list[Any]]]:
    """{set name: {kind: [render.Crop]}}: the held-back rendered crops, and the folder's if given."""
    from edge_ocr.train import meter, render
    from edge_ocr.train.fonts import require_fonts

    require_fonts()
    sets: dict[str, dict[str, list[Any]]] = {"rendered": meter.held_back(n=n)}
    if folder is not None:
        own = meter.load_folder(folder)
        sets["folder"] = {
            FOLDER_KIND: [render.Crop(image=c.image, text=c.text, kind=FOLDER_KIND) for c in own]
        }
    return sets


# --- readers ----------------------------------------------------------------------------------------


def _edge_engine(cfg: Config, models_dir: Path) -> Any:
    from edge_ocr.pipeline import Engine, EngineSettings

    if cfg.engine == "meter":
        s = EngineSettings(
            models_dir=models_dir, general=False, meter=True, precision=cfg.precision, threads=1
        )
    else:
        s = EngineSettings(models_dir=models_dir, model_set=cfg.model_set, precision=cfg.precision, threads=1,
                           use_cls=True)  # fmt: skip
    return Engine(s)


def _edge_reader(cfg: Config, engine: Any) -> Read:
    from edge_ocr.preprocess import suppress_ghosts

    def read(crop: np.ndarray) -> tuple[str, float]:
        if cfg.engine == "meter":
            res = engine.run_meter(crop, NUMERIC)
            return res.text, res.timings_ms["total"]
        if cfg.ghosts:
            t = time.perf_counter()
            clean = suppress_ghosts(crop)
            ms = (time.perf_counter() - t) * 1000
            res = engine.run_line(clean, NUMERIC, upright=True)
            return res.text, ms + res.timings_ms["total"]
        res = engine.run_line(crop, None, upright=False)
        return res.text, res.timings_ms["total"]

    return read


def _read_all(read: Read, crops: Sequence[Any]) -> tuple[list[str], list[float]]:
    if crops:
        read(crops[0].image)  # warm-up, untimed
    texts, ms = [], []
    for c in crops:
        text, t = read(c.image)
        texts.append(text)
        ms.append(t)
    return texts, ms


def _rapidocr3(sets: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, tuple[list[str], list[float]]]]:
    """Every crop of every set read by RapidOCR 3.10 in one worker process (edge_ocr.bench.ocr's): the
    crops are written as PNG (lossless) in the eval line-set layout, read back as one set."""
    from edge_ocr.bench import ocr

    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-meters-") as tmp:
        folder = Path(tmp) / "meters"
        folder.mkdir()
        order: list[tuple[str, str]] = []
        with open(folder / "labels.tsv", "w", encoding="utf-8") as fh:
            for set_name, kinds in sets.items():
                for kind, crops in kinds.items():
                    for c in crops:
                        name = f"{len(order):05d}.png"
                        if not cv2.imwrite(str(folder / name), c.image):
                            raise EdgeOcrError(f"cannot write {folder / name}")
                        fh.write(f"{name}\t{c.text}\n")
                        order.append((set_name, kind))
        spec = {"engine": "rapidocr3", "kind": "lines", "data": tmp, "set": "meters", "threads": 1,
                "limit": None, "repeat": 1}  # fmt: skip
        raw = ocr.spawn(spec)
    if "error" in raw:
        raise EdgeOcrError(f"RapidOCR 3.10 {raw['error']}")
    out: dict[str, dict[str, tuple[list[str], list[float]]]] = {}
    for (set_name, kind), item in zip(order, raw["items"], strict=True):
        texts, ms = out.setdefault(set_name, {}).setdefault(kind, ([], []))
        texts.append(item["text"])
        ms.append(item["ms"])
    return out


# --- scoring ----------------------------------------------------------------------------------------


def score_row(
    cfg: Config, kinds: dict[str, list[Any]], read: dict[str, tuple[list[str], list[float]]]
) -> dict[str, Any]:
    from edge_ocr.train import meter

    all_crops: list[Any] = []
    all_texts: list[str] = []
    all_ms: list[float] = []
    per_kind: dict[str, dict[str, Any]] = {}
    for kind, crops in kinds.items():
        texts, ms = read[kind]
        texts = [normalise(t) if cfg.normalise else t for t in texts]
        fig = meter.score(crops, texts)
        per_kind[kind] = {**fig, "ms_median": float(np.median(ms)) if ms else None}
        all_crops += crops
        all_texts += texts
        all_ms += ms
    overall = meter.score(all_crops, all_texts)
    overall.pop("wrong_above_last_digit", None)  # a drum figure: per_kind["drum"] has it
    return {
        "key": cfg.key,
        "label": cfg.label,
        **overall,
        "ms_median": float(np.median(all_ms)) if all_ms else None,
        "per_kind": per_kind,
        "normalised": cfg.normalise,
    }


# --- the run ----------------------------------------------------------------------------------------


def _available_sets(models_dir: Path) -> set[str]:
    from edge_ocr.models import load_manifest

    return set(load_manifest(models_dir).get("sets") or {})


def run(
    models_dir: Path, n: int, folder: Path | None, baselines: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every row on every set: {"machine", "sets": {name: {"n", "kinds", "rows"}}, "notes", "auto",
    "ratios", "failed"}."""
    from edge_ocr.train import render

    sets = data_sets(n, folder)
    built = _available_sets(models_dir)
    notes: list[str] = []
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
    auto: dict[str, str] | None = None
    failed = False
    for cfg in CONFIGS:
        log(f"bench meters: {cfg.label}")
        wanted = "meter" if cfg.engine == "meter" else cfg.model_set
        skip: str | None = None
        if cfg.engine == "rapidocr3":
            from edge_ocr.bench.ocr import _baseline_available

            skip = "skipped (--no-baselines)" if not baselines else _baseline_available("rapidocr3")
        elif wanted not in built:
            skip = f"not built: the manifest in {models_dir} has no {wanted!r} set"
        results: dict[str, dict[str, tuple[list[str], list[float]]]] = {}
        label = cfg.label
        if skip is None:
            try:
                if cfg.engine == "rapidocr3":
                    label = f"RapidOCR {_rapidocr_version()} line (rec)"
                    results = _rapidocr3(sets)
                else:
                    engine = _edge_engine(cfg, models_dir)
                    if cfg.engine == "meter" and cfg.precision == "auto":
                        c = engine.choices["meter"]
                        auto = {"precision": c.precision, "file": c.model.path.name, "why": c.why}
                    reader = _edge_reader(cfg, engine)
                    results = {name: {k: _read_all(reader, crops) for k, crops in kinds.items()}
                               for name, kinds in sets.items()}  # fmt: skip
                    del engine, reader
            except EdgeOcrError as exc:
                # A general set in the manifest whose files are absent is skipped; anything else failed.
                fatal = cfg.engine in ("meter", "rapidocr3")
                skip = f"{'error' if fatal else 'skipped'}: {exc}"
                failed = failed or fatal
        for name, kinds in sets.items():
            if skip is not None:
                rows[name].append({"key": cfg.key, "label": label, "skipped": skip})
            else:
                row = {**score_row(cfg, kinds, results[name]), "label": label}
                if cfg.key == "meter-auto" and auto:
                    row["label"] = f"{cfg.label} ({auto['precision']})"
                    row["auto"] = auto
                rows[name].append(row)
        if skip is not None:
            notes.append(f"{label}: {skip}")
    out_sets: dict[str, dict[str, Any]] = {
        name: {"n": sum(len(c) for c in kinds.values()), "kinds": list(kinds), "rows": rows[name]}
        for name, kinds in sets.items()
    }
    out_sets["rendered"]["n_per_kind"] = n
    out_sets["rendered"]["seeds"] = "edge_ocr.train.meter.EVAL_SEED + the kind's index in render.KINDS"
    if "folder" in out_sets and folder is not None:
        out_sets["folder"]["dir"] = str(folder)
    return {
        "machine": machine(),
        "kinds": list(render.KINDS),
        "sets": out_sets,
        "notes": notes,
        "auto": auto,
        "ratios": ratios(out_sets["rendered"]["rows"]),
        "graph": graph_ratio(models_dir, sets["rendered"]) if "meter" in built else None,
        "failed": failed,
    }


def graph_ratio(models_dir: Path, kinds: dict[str, list[Any]], repeat: int = 3) -> dict[str, float] | None:
    """The meter model's INT8 graph against its FP32 graph alone: each prepared crop run by one session
    and then the other, `repeat` times, so both see the same moments of a shared machine; medians.
    (The per-crop rows also time `prepare` and the decoder, which INT8 does not speed up.)"""
    from edge_ocr.inference.meter import prepare
    from edge_ocr.inference.session import create_session
    from edge_ocr.models import resolve

    try:
        sessions = {
            v: create_session(resolve(models_dir, "meter", v, model_set="meter")) for v in ("int8", "fp32")
        }
    except EdgeOcrError:
        return None
    xs = [prepare(c.image)[None, None] for crops in kinds.values() for c in crops]
    ms: dict[str, list[float]] = {p: [] for p in sessions}
    for _ in range(repeat):
        for x in xs:
            for p, sess in sessions.items():
                t = time.perf_counter()
                sess.run(None, {sess.get_inputs()[0].name: x})
                ms[p].append((time.perf_counter() - t) * 1000)
    med = {p: float(np.median(v)) for p, v in ms.items()}
    return {"int8_ms": med["int8"], "fp32_ms": med["fp32"], "fp32_over_int8": med["fp32"] / med["int8"]}


def _rapidocr_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rapidocr")
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    ms = {r["key"]: r.get("ms_median") for r in rows}
    int8, fp32, general = ms.get("meter-int8"), ms.get("meter-fp32"), ms.get(f"{GENERAL_FP32}-line")
    return {
        "general_fp32_over_meter_int8": general / int8 if general and int8 else None,
        "meter_fp32_over_int8": fp32 / int8 if fp32 and int8 else None,
    }


# --- printing ---------------------------------------------------------------------------------------


def _f(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def render_text(result: dict[str, Any]) -> str:
    kinds: list[str] = result["kinds"]
    out = [machine_line(result["machine"])]
    for name, s in result["sets"].items():
        if name == "rendered":
            title = (f"\nrendered meter crops, held back ({s['n_per_kind']} per kind, {s['n']} crops; "
                     "seeds training never draws from)")  # fmt: skip
            cols = kinds
        else:
            title = f"\nreal crops from {s.get('dir')} ({s['n']} crops, labels.tsv)"
            cols = []
        head = f"{'reader':<34}{'exact':>7}{'CER':>8}{'ms/crop':>9}"
        head += "".join(f"{k:>10}" for k in cols)
        if "drum" in cols:
            head += f"{'drum>last':>11}"
        out += [title, head, "-" * len(head)]
        for r in s["rows"]:
            lead = f"{r['label']:<34}"
            if "skipped" in r:
                out.append(f"{lead}  {r['skipped']}")
                continue
            line = f"{lead}{r['exact']:>7.3f}{r['cer']:>8.4f}{_f(r['ms_median'], '.2f'):>9}"
            line += "".join(f"{_f(r['per_kind'].get(k, {}).get('exact'), '.3f'):>10}" for k in cols)
            if "drum" in cols:
                line += f"{_f(r['per_kind'].get('drum', {}).get('wrong_above_last_digit'), '.3f'):>11}"
            out.append(line)
    auto = result.get("auto")
    if auto:
        out.append(f"\nmeter model auto runs {auto['precision']} ({auto['file']}): {auto['why']}")
    r = result["ratios"]
    g, m = r["general_fp32_over_meter_int8"], r["meter_fp32_over_int8"]
    out.append(
        f"\nspeed per crop, 1 thread (median ms): {GENERAL_FP32} line FP32 / meter INT8 = {_f(g, '.2f')}x; "
        f"meter FP32 / INT8 = {_f(m, '.2f')}x"
    )
    gr = result.get("graph")
    if gr:
        out.append(
            f"meter graph alone, interleaved (median ms): INT8 {gr['int8_ms']:.3f}, "
            f"FP32 {gr['fp32_ms']:.3f}: FP32 / INT8 = {gr['fp32_over_int8']:.2f}x"
        )
    out.append(
        "\nexact: share of crops read exactly (a drum reading of either neighbouring value counts); CER: "
        "edit distance to the nearest right reading / its length; per-kind columns: exact.\n"
        "drum>last: share of drum crops read wrong above the last digit (what a meter must never publish).\n"
        f"General models and RapidOCR: readings normalised before scoring (spaces stripped, only "
        f'"{NUMERIC}" kept); the meter model reads with that charset.\n'
        "+ghosts: suppress_ghosts, the charset and upright (`ocr --line --suppress-ghosts --charset`); "
        "its ms include suppress_ghosts.\n"
        "ms/crop: median of the engine's timings_ms total after one warm-up read (RapidOCR: its worker's "
        "wall time per crop, decoding excluded)."
    )
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    """`edge-ocr bench --meters` (args: the bench subparser's: models, json, baselines, meters_n,
    meters_dir)."""
    from edge_ocr.models import default_models_dir
    from edge_ocr.train.meter import EVAL_PER_KIND

    n = args.meters_n if getattr(args, "meters_n", None) is not None else EVAL_PER_KIND
    if n < 1:
        raise ConfigError("--meters-n must be at least 1")
    folder = Path(args.meters_dir) if getattr(args, "meters_dir", None) else None
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"--meters-dir {folder} is not a folder", remedy="a folder with labels.tsv")
    models_dir = Path(args.models) if getattr(args, "models", None) else default_models_dir()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run(models_dir, n, folder, getattr(args, "baselines", True), log)
    print(render_text(result), flush=True)
    if getattr(args, "json", None):
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({k: v for k, v in result.items() if k != "failed"}, fh, indent=1)
    return 1 if result["failed"] else 0


# --- side by side: the options and readers of the benches that compare meter model files -------------


def fp32_readers(models: Sequence[Path]) -> dict[str, Any]:
    """The runtime's `MeterReader` on each model file, one onnxruntime thread each, by path."""
    import onnxruntime as ort

    from edge_ocr.inference.meter import MeterReader

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return {str(m): MeterReader(ort.InferenceSession(str(m), opts, providers=["CPUExecutionProvider"]))
            for m in models}  # fmt: skip


def model_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The options every side-by-side meter bench takes: `--model` (repeatable) and `--json`."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, action="append", help="an FP32 meter ONNX (repeatable); default: shipped"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def checked_models(parser: argparse.ArgumentParser, given: list[Path] | None) -> list[Path]:
    """`--model`'s files (the shipped model when none), each there; prints the machine it runs on."""
    from edge_ocr.modelbuild.meter import MODEL

    models = given or [MODEL]
    for m in models:
        if not m.is_file():
            parser.error(f"--model {m}: no such file")
    print(machine_line(machine()), flush=True)
    return models


def report(text: str, result: dict[str, Any], path: Path | None) -> None:
    print(text)
    if path:
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
