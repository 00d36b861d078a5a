"""`python -m edge_ocr.bench.line_parity`: single-line reads (`Engine.run_line`, what `ocr --line` and
camera line regions use) before and after the line-parity settings, beside RapidOCR 3.10, in one run.

Rows (ppocrv6-small FP32, one onnxruntime thread):

- `before`: a line padded only to its 32-px bucket (at least 96 columns) and the upside-down check's
  turned reading winning on any higher confidence (`line_width=0, flip_margin=0`);
- `after`: the engine's defaults (`EngineSettings.line_width`, `flip_margin`);
- `after, no cls`: the same without the upside-down check (`--no-cls`);
- `after, line_width 288` and `320`: padded further, towards the full trained width (not chosen: see
  docs/line-parity.md);
- RapidOCR 3.10, rec only, no classifier (as `edge_ocr.bench.ocr` runs it on line sets).

Sets: the meters bench's held-back rendered crops (every kind, `--n` each; seg7 is the display set), plain
DSEG7 LCD lines (`lcd_line`, `--n-lcd`), lines_en and lines_zh_synth (and, for the edge-ocr rows, lines_en
turned 180 degrees: what the upside-down check is for). Display crops are scored as the meters bench
scores a general model (spaces stripped, only digits, point and minus kept); line sets as `bench.ocr`.

Tooling only (Pillow and the DSEG fonts for the renderer): the daemon never imports this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_ocr.bench import meters, scoring
from edge_ocr.bench.evalsets import load_lines

LINE_SETS = ("lines_en", "lines_zh_synth")
ROWS: dict[str, dict[str, Any]] = {
    "before": {"line_width": 0, "flip_margin": 0.0},
    "after": {},
    "after, no cls": {"use_cls": False},
    "after, line_width 288": {"line_width": 288},
    "after, line_width 320": {"line_width": 320},
}
LCD_SEED = 9_400_000  # + the crop's index


def lcd_line(seed: int, strength: float = 0.7) -> Any:
    """One plain reflective-LCD reading in a DSEG7 face (3-7 digits, maybe a point), every cell's unlit
    segments faintly visible (ghosts), seen by a camera at `strength` (render.camera). One seed, one crop:
    the tests pick single crops by seed."""
    from edge_ocr.train import render
    from edge_ocr.train.fonts import DSEG_DIR, _draw_text, _faces

    rng = np.random.default_rng(seed)
    face = str(rng.choice(_faces("DSEG7*.ttf", str(DSEG_DIR))))
    n = int(rng.integers(3, 8))
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, n))
    dec = int(rng.choice([0, 0, 1, 2]))
    text = digits if not dec else f"{digits[: n - dec]}.{digits[n - dec :]}"
    ink, ghost = _draw_text(text, face, render.FONT_PX), _draw_text("8." * n, face, render.FONT_PX)
    h, w = max(ink.shape[0], ghost.shape[0]), max(ink.shape[1], ghost.shape[1])
    masks = np.stack([render._right_align(ink, h, w), render._right_align(ghost, h, w)], axis=-1)
    both = render._pad(masks, rng)
    glass = [(168, 186, 172), (190, 196, 190), (150, 170, 160), (205, 210, 200)]
    bg = tuple(int(x) for x in rng.choice(glass))
    look = render._Look(bg, (38, 44, 36), float(rng.uniform(0.03, 0.2)), 0.0)
    img = render._compose(both[..., 0], both[..., 1], look).astype(np.uint8)
    return render.Crop(render.camera(img, rng, strength), text, "seg7")


def _displays(n: int, n_lcd: int) -> dict[str, list[Any]]:
    from edge_ocr.train import meter

    sets = dict(meter.held_back(n=n))
    sets["lcd"] = [lcd_line(LCD_SEED + i) for i in range(n_lcd)]
    return sets


def _engine(models_dir: Path | None, **overrides: Any) -> Any:
    from edge_ocr.pipeline import Engine, EngineSettings

    kw: dict[str, Any] = {"precision": "fp32", "threads": 1, **overrides}
    if models_dir is not None:
        kw["models_dir"] = models_dir
    return Engine(EngineSettings(**kw))


def _score_displays(crops: list[Any], texts: list[str]) -> dict[str, float]:
    from edge_ocr.train import meter

    return meter.score(crops, [meters.normalise(t) for t in texts])


def _score_lines(gts: list[str], texts: list[str]) -> dict[str, float]:
    s, k = scoring.score_lines(gts, texts), scoring.score_lines(gts, texts, "nows_nfkc")
    return {"exact": s.accuracy, "cer": s.cer, "cer_nfkc": k.cer}


def run(data: Path, models_dir: Path | None, n: int, n_lcd: int, baselines: bool) -> dict[str, Any]:
    from edge_ocr.bench import ocr
    from edge_ocr.decode import read_image

    displays = _displays(n, n_lcd)
    lines = {s: load_lines(data / s) for s in LINE_SETS}
    images = {s: [read_image(p) for p, _ in items] for s, items in lines.items()}
    out: dict[str, dict[str, Any]] = {}
    for label, overrides in ROWS.items():
        engine = _engine(models_dir, **overrides)
        row: dict[str, Any] = {}
        for kind, crops in displays.items():
            row[kind] = _score_displays(crops, [engine.run_line(c.image).text for c in crops])
        for s, items in lines.items():
            row[s] = _score_lines([t for _, t in items], [engine.run_line(im).text for im in images[s]])
        turned = [engine.run_line(cv2.rotate(im, cv2.ROTATE_180)).text for im in images["lines_en"]]
        row["lines_en turned"] = _score_lines([t for _, t in lines["lines_en"]], turned)
        out[label] = row
        print(f"line parity: {label} done", file=sys.stderr, flush=True)
    if baselines:
        row = {}
        raw = meters._rapidocr3({"d": displays})["d"]
        for kind, crops in displays.items():
            row[kind] = _score_displays(crops, raw[kind][0])
        for s, items in lines.items():
            spec = {"engine": "rapidocr3", "kind": "lines", "data": str(data), "set": s, "threads": 1,
                    "limit": None, "repeat": 1}  # fmt: skip
            got = ocr.spawn(spec)
            if "error" in got:
                raise RuntimeError(f"RapidOCR 3.10 {got['error']}")
            row[s] = _score_lines([t for _, t in items], [it["text"] for it in got["items"]])
        out["RapidOCR 3.10 (rec, no cls)"] = row
    return {"machine": meters.machine(), "n_per_kind": n, "n_lcd": n_lcd, "rows": out}


def render_text(result: dict[str, Any]) -> str:
    rows = result["rows"]
    cols = list(next(iter(rows.values())))
    out = [meters.machine_line(result["machine"]), ""]
    head = f"{'':<30}" + "".join(f"{c:>17}" for c in cols)
    out += [head, "-" * len(head)]
    for label, row in rows.items():
        cells = []
        for c in cols:
            f = row.get(c)
            if f is None:
                cells.append(f"{'-':>17}")
            elif "cer_nfkc" in f:
                cells.append(f"{f['exact']:.3f}/{f['cer']:.4f}".rjust(17))
            else:
                cells.append(f"{f['exact']:>17.3f}")
        out.append(f"{label:<30}" + "".join(cells))
    out.append(
        f"\ndisplay kinds ({result['n_per_kind']} held-back crops each) and lcd ({result['n_lcd']} DSEG7 LCD "
        "lines): exact; line sets: exact/CER (case-folded, whitespace removed)."
    )
    nfkc = {label: {s: row[s]["cer_nfkc"] for s in LINE_SETS} for label, row in rows.items()}
    out.append("CER NFKC-folded: " + "; ".join(f"{k}: {v}" for k, v in nfkc.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from edge_ocr.bench.options import default_data_dir

    p = argparse.ArgumentParser(prog="python -m edge_ocr.bench.line_parity", description=__doc__)
    p.add_argument("--data", type=Path, default=None, help="the eval folder (default: bench.ocr's)")
    p.add_argument("--models", type=Path, default=None)
    p.add_argument("--n", type=int, default=300, help="held-back rendered crops per kind")
    p.add_argument("--n-lcd", type=int, default=600, help="DSEG7 LCD lines")
    p.add_argument("--no-baselines", dest="baselines", action="store_false")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    result = run(args.data or default_data_dir(), args.models, args.n, args.n_lcd, args.baselines)
    print(render_text(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
