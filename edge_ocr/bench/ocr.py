"""`edge-ocr bench`: accuracy, speed, memory and start-up of the engine on `../shared/eval`, with
RapidOCR 1.4.4 and Tesseract side by side.

Every configuration (engine x precision x threads x data set) runs in its own child process
(`python -m edge_ocr.bench --worker SPEC`) that prints its raw readings as JSON; this process scores
them. A child of its own is what makes the figures honest: peak RSS is that child's alone (read with
os.wait4 when it exits, so no model or image of another configuration is counted) and "start" is the
wall time from spawning it to its first result (interpreter, imports, sha256 check, session creation,
first inference). Inside a child the first item is run once as a warm-up, then every item is timed
(the minimum of --repeat runs) and the medians and p95s reported: the machine is small and shared.

RapidOCR and Tesseract are imported or executed only inside their own workers; the edge_ocr runtime
never imports them. Scoring rules live in `edge_ocr.bench.scoring`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr import allocator
from edge_ocr.bench import scoring
from edge_ocr.bench.evalsets import load_lines, load_pages
from edge_ocr.bench.options import QUICK, add_arguments
from edge_ocr.bench.rotations import unturn_box
from edge_ocr.errors import ConfigError, EdgeOcrError

LINE_SETS = ("lines_en", "lines_zh_synth", "lines_zh")
SYNTHETIC = {"lines_zh_synth"}
CAMERA_SET = "pages_camera"  # --camera-like: the receipts photographed (bench/camera_like.py)
SWEEP = [(736, "max"), (960, "max"), (1280, "max"), (736, "min"), (960, "min")]
# The baselines, each in its own worker process: RapidOCR 1.4.4 (PP-OCRv4, the package edge-ocr's
# first model set comes from) and RapidOCR 3.10 (PP-OCRv6 small, the default set's source).
BASELINES = {"rapidocr": ("rapidocr_onnxruntime", "1.4.4"), "rapidocr3": ("rapidocr", "3.10.0")}


# --- workers: run in a child process, print one JSON object -----------------------------------------

Reader = Callable[[Path], dict[str, Any]]  # image path -> {"text"} or {"lines", "timings"}


def _edge_reader(spec: dict[str, Any]) -> Reader:
    from edge_ocr.decode import read_image
    from edge_ocr.inference.detector import DetectorSettings
    from edge_ocr.pipeline import Engine, EngineSettings

    allocator.configure()  # the heap policy the CLI and the daemon run with (see edge_ocr.allocator)
    kw: dict[str, Any] = {"threads": spec["threads"], "precision": spec["precision"],
                          "model_set": spec.get("model_set")}  # fmt: skip
    if spec.get("models"):
        kw["models_dir"] = Path(spec["models"])
    if spec.get("detector"):
        kw["detector"] = DetectorSettings(**spec["detector"])
    kw["orientation"] = spec["kind"] != "lines"  # lines are never turned: no model loaded (RSS column)
    kw.update(spec.get("options") or {})
    engine = Engine(EngineSettings(**kw))
    chosen = ",".join(f"{r}={c.precision}" for r, c in engine.choices.items())

    def read(path: Path) -> dict[str, Any]:
        img = read_image(path)
        t = time.perf_counter()
        res = engine.run_line(img) if spec["kind"] == "lines" else engine.run(img)
        ms = (time.perf_counter() - t) * 1000
        lines = [{"text": ln.text, "box": [list(p) for p in ln.box]} for ln in res.lines]
        return {"ms": ms, "text": res.text, "lines": lines, "timings": res.timings_ms, "chosen": chosen}

    return read


def _rapidocr_reader(spec: dict[str, Any]) -> Reader:
    from rapidocr_onnxruntime import RapidOCR

    from edge_ocr.decode import read_image

    n = spec["threads"]
    engine = RapidOCR(intra_op_num_threads=n, inter_op_num_threads=1)

    def read(path: Path) -> dict[str, Any]:
        img = read_image(path)  # the same decoded pixels edge-ocr gets; decoding is not timed for either
        t = time.perf_counter()
        if spec["kind"] == "lines":
            res, _ = engine(img, use_det=False, use_cls=True, use_rec=True)
            ms = (time.perf_counter() - t) * 1000
            return {"ms": ms, "text": "".join(r[0] for r in res or [])}
        res, _ = engine(img)
        ms = (time.perf_counter() - t) * 1000
        lines = [{"text": r[1], "box": [[float(x), float(y)] for x, y in r[0]]} for r in res or []]
        return {"ms": ms, "text": "\n".join(ln["text"] for ln in lines), "lines": lines}

    return read


def _rapidocr3_reader(spec: dict[str, Any]) -> Reader:
    from rapidocr import RapidOCR

    from edge_ocr.decode import read_image

    n = spec["threads"]
    engine = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": n,
                              "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                              "Global.log_level": "warning"})  # fmt: skip

    def read(path: Path) -> dict[str, Any]:
        img = read_image(path)
        t = time.perf_counter()
        if spec["kind"] == "lines":
            # Its best reading of a single line: its classifier flips short upright lines blindly
            # (lines_en CER 0.0231 with it, 0.0118 without).
            res = engine(img, use_det=False, use_cls=False, use_rec=True)
            ms = (time.perf_counter() - t) * 1000
            # rapidocr's __call__ is typed as the union of every stage's output; this call returns rec's.
            return {"ms": ms, "text": "".join(res.txts or [])}  # type: ignore[union-attr]
        res = engine(img)
        ms = (time.perf_counter() - t) * 1000
        # rapidocr's __call__ is typed as the union of every stage's output; this one returns RapidOCROutput.
        boxes = res.boxes if res.boxes is not None else []  # type: ignore[union-attr]
        lines = [{"text": txt, "box": [[float(x), float(y)] for x, y in box]}
                 for box, txt in zip(boxes, res.txts or [], strict=False)]  # type: ignore[union-attr]  # fmt: skip
        return {"ms": ms, "text": "\n".join(ln["text"] for ln in lines), "lines": lines}

    return read


def _tesseract_lines(tsv: str) -> list[dict[str, Any]]:
    """Tesseract TSV -> one predicted line per (block, paragraph, line), box = its level-4 rectangle."""
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in tsv.splitlines()[1:]:
        f = row.split("\t")
        if len(f) < 12:
            continue
        key = (f[2], f[3], f[4])
        x, y, w, h = (float(v) for v in f[6:10])
        if f[0] == "4":
            lines[key] = {"text": "", "box": [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]}
        elif f[0] == "5" and f[11].strip() and key in lines:
            lines[key]["text"] = (lines[key]["text"] + " " + f[11].strip()).strip()
    return [ln for ln in lines.values() if ln["text"]]


def _tesseract_reader(spec: dict[str, Any]) -> Reader:
    # Tesseract's OpenMP pool would otherwise take every core; the comparison is per thread.
    env = dict(os.environ, OMP_THREAD_LIMIT=str(spec["threads"]))

    def read(path: Path) -> dict[str, Any]:
        # Timed with its process start and model load: that is what using Tesseract per image costs.
        t = time.perf_counter()
        if spec["kind"] == "lines":
            cmd = ["tesseract", str(path), "stdout", "-l", "eng", "--psm", "7"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            return {"ms": (time.perf_counter() - t) * 1000, "text": out.strip()}
        cmd = ["tesseract", str(path), "stdout", "-l", "eng", "--psm", str(spec.get("psm", 6)), "tsv"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        ms = (time.perf_counter() - t) * 1000
        lines = _tesseract_lines(out)
        return {"ms": ms, "text": "\n".join(ln["text"] for ln in lines), "lines": lines}

    return read


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Read every item of one configuration; the first item is run twice (warm-up, then timed)."""
    data = Path(spec["data"])
    if spec["kind"] == "lines":
        paths = [p for p, _ in load_lines(data / spec["set"], spec.get("limit"))]
    else:
        paths = [data / "pages" / p["image"] for p in load_pages(data / "pages", spec.get("limit"))]
    make = {"edge": _edge_reader, "rapidocr": _rapidocr_reader, "rapidocr3": _rapidocr3_reader,
            "tesseract": _tesseract_reader}  # fmt: skip
    read = make[spec["engine"]](spec)
    ready = time.time()
    read(paths[0])  # the warm-up, and the "first result" of start-up time
    first = time.time()
    items = []
    for path in paths:
        runs = [read(path) for _ in range(max(1, spec.get("repeat", 1)))]
        best = min(runs, key=lambda r: r["ms"])
        items.append(best)
    out: dict[str, Any] = {"ready_unix": ready, "first_result_unix": first, "items": items}
    if spec["engine"] == "tesseract":
        # The Python worker only launches tesseract; its processes' peak is what Tesseract needs.
        out["children_maxrss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    else:
        out["peak_rss_kb"] = _own_peak_rss_kb()
    return out


def _own_peak_rss_kb() -> int | None:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak into a
    child's across exec (a bench that made 4032-px pages itself showed 1.7 GB for a 0.3 GB worker)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --- orchestration ----------------------------------------------------------------------------------


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one worker; add its peak RSS (MB) and start time (s), or an "error" on failure."""
    with tempfile.TemporaryFile() as err:
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_ocr.bench.ocr", "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        # wait4 rather than proc.wait(): it returns this child's own rusage (ru_maxrss in KiB on Linux).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-3:]
        return {"error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}
    out = json.loads(stdout)
    kb = out.pop("children_maxrss_kb", None) or out.pop("peak_rss_kb", None) or usage.ru_maxrss
    out["rss_mb"] = kb / 1024
    out["start_s"] = out.pop("first_result_unix") - t0
    out["ready_s"] = out.pop("ready_unix") - t0
    return out


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def score(spec: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """One table row from a worker's raw readings."""
    row = {k: spec.get(k) for k in ("engine", "label", "set", "threads", "detector", "options")}
    row.update(precision=spec["precision_label"], sweep=bool(spec.get("sweep")))
    if "error" in raw:
        return {**row, "error": raw["error"]}
    items = raw["items"]
    if spec["engine"] == "edge" and spec["precision"] == "auto" and items and items[0].get("chosen"):
        row["precision"] = f"auto({items[0]['chosen']})"
    ms = [it["ms"] for it in items]
    row.update(n=len(items), ms_median=_pct(ms, 50), ms_p95=_pct(ms, 95), rss_mb=raw["rss_mb"])
    row.update(start_s=raw["start_s"], ready_s=raw["ready_s"])
    data = Path(spec["data"])
    if spec["kind"] == "lines":
        gts = [t for _, t in load_lines(data / spec["set"], spec.get("limit"))]
        preds = [it["text"] for it in items]
        for v in scoring.VARIANTS:
            s = scoring.score_lines(gts, preds, v)
            row[f"cer_{v}"], row[f"acc_{v}"] = s.cer, s.accuracy
    else:
        total = scoring.EMPTY_PAGE
        for page, it in zip(load_pages(data / "pages", spec.get("limit")), items, strict=True):
            gt = [(ln["text"], ln["box"]) for ln in page["lines"]]
            pred = [(ln["text"], unturn_box(ln["box"], page)) for ln in it["lines"]]
            total = total + scoring.score_page(gt, pred)
        row.update(cer=total.cer, recall=total.recall, gt_lines=total.lines)
        stages = [it.get("timings") or {} for it in items]
        row["stages_ms"] = {
            k: _pct([s[k] for s in stages if k in s], 50) for k in ("det", "cls", "rec") if stages[0].get(k)
        }
    return row


def _configurations(
    models_dir: Path | None, sets: Sequence[str] | None, wanted: Sequence[str] | None
) -> list[tuple[str, str]]:
    """(model set, precision mode) per edge-ocr configuration: every set of the manifest (or --model-set)
    with auto, fp32 and int8 (or --precision); int8 only for sets that have an INT8 variant."""
    from edge_ocr.models import default_models_dir, load_manifest

    manifest = load_manifest(models_dir or default_models_dir())
    built = manifest["sets"]
    unknown = set(sets or ()) - set(built)
    if unknown:
        raise ConfigError(f"unknown --model-set {sorted(unknown)}; the manifest has {', '.join(built)}")
    modes = list(wanted or ("auto", "fp32", "int8"))
    bad = set(modes) - {"auto", "fp32", "int8"}
    if bad:
        raise ConfigError(f"unknown --precision {sorted(bad)}; use auto, fp32 or int8")
    out = []
    for name in sets or list(built):
        has_int8 = any("int8" in (r.get("variants") or {}) for r in built[name]["models"].values())
        out += [(name, m) for m in modes if m != "int8" or has_int8]
    return out


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """--option KEY=VALUE pairs -> EngineSettings keyword arguments (values read as JSON if they parse:
    `use_cls=false`, `rec_batch_size=1`, `min_confidence=0.3`; else kept as strings)."""
    from dataclasses import fields

    from edge_ocr.pipeline import EngineSettings

    known = {f.name for f in fields(EngineSettings)} - {"threads", "precision", "detector", "models_dir",
                                                        "model_set"}  # fmt: skip
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise ConfigError(f"--option {pair!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def plan(args: argparse.Namespace, extra_pages: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every worker spec of this run, in the order they run; `extra_pages`: generated page sets (the
    camera-like pages, the turned pages) by name, each the root of its own eval layout."""
    extra_pages = extra_pages or {}
    data = Path(args.data)
    base = {"data": str(data), "models": args.models, "repeat": args.repeat}
    options = parse_options(args.option or [])
    det = {"limit_side_len": args.det_limit, "limit_type": args.det_limit_type} if args.det_limit else None
    sets: list[tuple[str, str]] = []
    if args.only in (None, "lines"):
        sets += [("lines", s) for s in LINE_SETS if (data / s / "labels.tsv").is_file()]
    if args.only in (None, "pages"):
        sets.append(("pages", "pages"))
        sets += [("pages", name) for name in extra_pages]
    configs = _configurations(Path(args.models) if args.models else None, args.model_set, args.precision)
    specs = []
    for kind, name in sets:
        limit = QUICK[kind] if args.quick else None
        common = {**base, "kind": kind, "set": name, "limit": limit}
        if name in extra_pages:  # generated pages, in the eval layout under their own root
            common["data"] = extra_pages[name]
        for set_name, prec in configs:
            for n in args.threads:
                specs.append(
                    {
                        **common,
                        "engine": "edge",
                        "label": f"edge-ocr {set_name}",
                        "model_set": set_name,
                        "precision": prec,
                        "precision_label": prec,
                        "threads": n,
                        "detector": det,
                        "options": options,
                    }
                )
        # The turned pages test our page orientation; the baselines read them turned too, at 3x the bench's
        # time, so they run on the upright and camera-like pages only.
        if args.baselines and not name.startswith("pages_rot"):
            for engine, (_, version) in BASELINES.items():
                specs.append(
                    {
                        **common,
                        "engine": engine,
                        "label": f"RapidOCR {version}",
                        "precision": None,
                        "precision_label": "fp32",
                        "threads": 1,
                    }
                )
            if name != "lines_zh_synth" and name != "lines_zh":  # only `eng` traineddata is installed
                specs.append(
                    {
                        **common,
                        "engine": "tesseract",
                        "label": "Tesseract",
                        "precision": None,
                        "precision_label": "-",
                        "threads": 1,
                    }
                )
        if kind == "pages" and args.det_sweep:
            set_name, prec = configs[0]
            label = prec
            for side, typ in SWEEP:
                specs.append(
                    {
                        **common,
                        "engine": "edge",
                        "label": f"edge det {typ} {side}",
                        "model_set": set_name,
                        "precision": prec,
                        "precision_label": label,
                        "threads": 1,
                        "detector": {"limit_side_len": side, "limit_type": typ},
                        "options": options,
                        "sweep": True,
                    }
                )
    return specs


def _baseline_available(engine: str) -> str | None:
    """None when the baseline can run, else why not (shown in the table instead of figures)."""
    if engine in BASELINES:
        import importlib.util

        module, version = BASELINES[engine]
        found = importlib.util.find_spec(module) is not None
        return None if found else f"not installed (pip install {module}=={version})"
    if engine == "tesseract":
        return None if shutil.which("tesseract") else "not installed (apt install tesseract-ocr)"
    return None


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, spec)


def _start(r: dict[str, Any]) -> str:
    return f"{r['ready_s']:.2f}/{r['start_s']:.2f}"


def render(rows: list[dict[str, Any]]) -> str:
    """The tables: one per data set, then the speed ratio edge-ocr : RapidOCR per page."""
    out = []
    for name in dict.fromkeys(r["set"] for r in rows):
        group = [r for r in rows if r["set"] == name]
        n = next((r["n"] for r in group if "n" in r), 0)
        pages = name.startswith("pages")
        title = f"{name} ({n} {'pages' if pages else 'lines'})"
        if name == CAMERA_SET:
            title += " -- the eval receipts made camera-like (4032 px photos), see bench/camera_like.py"
        if name.startswith("pages_rot"):
            title += f" -- the eval receipts turned {name[9:]} degrees clockwise, see bench/rotations.py"
        if name in SYNTHETIC:
            title += " -- SYNTHETIC Chinese lines, not real data"
        out.append(f"\n{title}")
        if pages:
            head = (
                f"{'engine':<24}{'precision':<34}{'thr':>4}{'CER':>8}{'recall':>8}{'med ms':>9}"
                f"{'p95 ms':>9}{'det/cls/rec ms':>18}{'RSS MB':>8}{'start s':>12}"
            )
        else:
            head = (
                f"{'engine':<24}{'precision':<34}{'thr':>4}{'exact':>7}{'CER':>7}{'CER ws':>8}"
                f"{'CER nfkc':>9}{'med ms':>8}{'p95 ms':>8}{'RSS MB':>8}{'start s':>12}"
            )
        out += [head, "-" * len(head)]
        for r in group:
            lead = f"{r['label']:<24}{r['precision']:<34}{r['threads']:>4}"
            if "error" in r:
                out.append(f"{lead}  {r['error']}")
            elif pages:
                st = r.get("stages_ms") or {}
                stages = "/".join(_fmt(st.get(k), ".0f") for k in ("det", "cls", "rec")) if st else "-"
                out.append(
                    f"{lead}{r['cer']:>8.4f}{r['recall']:>8.3f}{r['ms_median']:>9.0f}"
                    f"{r['ms_p95']:>9.0f}{stages:>18}{r['rss_mb']:>8.0f}{_start(r):>12}"
                )
            else:
                out.append(
                    f"{lead}{r['acc_nows']:>7.3f}{r['cer_nows']:>7.4f}{r['cer_ws']:>8.4f}"
                    f"{r['cer_nows_nfkc']:>9.4f}{r['ms_median']:>8.1f}{r['ms_p95']:>8.1f}"
                    f"{r['rss_mb']:>8.0f}{_start(r):>12}"
                )
    options = next((r["options"] for r in rows if r.get("options")), None)
    if options:
        out.append(f"\nedge-ocr rows ran with EngineSettings overrides {options}")
    ratio = speed_ratio(rows)
    if ratio:
        out.append(f"\nspeed per page, 1 thread (median): {ratio}")
    out.append(
        "\nCER: case-folded, whitespace removed (ws: whitespace kept; nfkc: NFKC-folded too); "
        "exact: share of lines read exactly (case-folded, whitespace removed).\n"
        "start: process spawn to engine ready / to first result (a warm-up read of the first item).\n"
        "Tesseract: times include its process start per image; RSS is tesseract's own."
    )
    return "\n".join(out)


def speed_ratio(rows: list[dict[str, Any]]) -> str | None:
    """Each RapidOCR's median page time / edge-ocr's, per edge-ocr configuration, 1 thread (>1: edge-ocr
    faster)."""
    pages = [r for r in rows if r["set"] == "pages" and r["threads"] == 1 and "error" not in r]
    parts = []
    for rapid in (r for r in pages if r["engine"] in BASELINES):
        parts += [
            f"{r['label']} {r['precision']} {rapid['ms_median'] / r['ms_median']:.2f}x faster than "
            f"{rapid['label']}"
            for r in pages
            if r["engine"] == "edge" and not r.get("sweep")
        ]
    return "; ".join(parts) or None


def run(args: argparse.Namespace) -> int:
    """Run the bench; 0 when every configuration ran, 1 when one failed (its row says why)."""
    if args.worker:
        json.dump(worker(json.loads(args.worker)), sys.stdout)
        return 0
    data = Path(args.data)
    if not (data / "pages" / "labels.jsonl").is_file() and not (data / "lines_en" / "labels.tsv").is_file():
        raise ConfigError(f"no eval data in {data}", remedy="pass --data with the shared/eval folder")
    if any(n < 1 for n in args.threads) or args.repeat < 1:
        raise ConfigError("--threads and --repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-") as tmp:
        extra: dict[str, str] = {}
        pages = (data / "pages" / "labels.jsonl").is_file() and args.only != "lines"
        limit = QUICK["pages"] if args.quick else None
        if args.camera_like and pages:
            from edge_ocr.bench import camera_like

            camera_like.make(data / "pages", Path(tmp) / "camera" / "pages", limit=limit)
            extra[CAMERA_SET] = str(Path(tmp) / "camera")
        if getattr(args, "rotations", False) and pages:
            from edge_ocr.bench import rotations

            extra.update(rotations.make(data / "pages", Path(tmp) / "turned", limit=limit))
        return _run_plan(args, extra)


def _run_plan(args: argparse.Namespace, extra_pages: dict[str, str]) -> int:
    rows = []
    for spec in plan(args, extra_pages):
        label = {k: spec.get(k) for k in ("label", "set", "threads", "detector")}
        print(f"bench: {label}", file=sys.stderr, flush=True)
        why_not = _baseline_available(spec["engine"])
        raw = {"error": why_not} if why_not else spawn(spec)
        rows.append(score(spec, raw))
    print(render(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "speed_ratio": speed_ratio(rows)}, fh, indent=1)
    return 1 if any("error" in r and not r["error"].startswith("not installed") for r in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m edge_ocr.bench` until the CLI wires `edge-ocr bench`; errors become exit codes here."""
    parser = argparse.ArgumentParser(prog="edge-ocr bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except EdgeOcrError as exc:
        print(f"edge-ocr bench: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
