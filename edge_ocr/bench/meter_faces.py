"""Counters printed in faces the meter model was and was not trained on, and 7-segment displays of
each design it is trained on, read side by side:
`python -m edge_ocr.bench.meter_faces [--model FILE]... [--n N] [--json FILE]`.

A counter's digits come in whatever face its maker printed them in; a model that read the faces it was
drilled on and not others would have learnt those faces, not digits. Each row is one family of faces,
each column one model (default: the shipped FP32 model; give `--model` again for another, e.g. the
model before a change, `git show REV:edge_ocr/modelbuild/meter/meter_crnn.fp32.onnx > old.onnx`):

- `dejavu`, `pillow`, `hershey`, `packages`: the families training prints counters in
  (`render._drum_face`; `packages` is every face of `fonts.FACE_PACKAGES` it keeps);
- `hershey-unseen`: Hershey faces training leaves out (COMPLEX_SMALL, the italics);
- `system-unseen`: the upright faces of fonts-liberation, fonts-freefont-ttf and fonts-urw-base35 where
  installed (no training crop is drawn in them);
- `seg7-dseg`, `seg7-polygon`, `seg7-stroked`: 7-segment readings in a DSEG face, our bevelled
  polygons and plain strokes (`render.SEG7_DESIGNS`).

Each cell: right (exact for displays) / wrong above the last digit (counters), on `--n` rendered crops
per row and camera strength (0.7 and 1.0), seeds training never draws from. Read by the runtime's
`MeterReader` on one onnxruntime thread, FP32: this measures accuracy, not speed. Tooling only (the
[train] extra).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

from edge_ocr.bench.meters import checked_models, fp32_readers, model_parser, report

SEED = 5_600_000  # + the family's index * 10 + the strength's index; training and held-back sets never use it
STRENGTHS = (0.7, 1.0)
SYSTEM_DIRS = (
    "/usr/share/fonts/truetype/liberation",
    "/usr/share/fonts/truetype/freefont",
    "/usr/share/fonts/opentype/urw-base35",
)
# Faces whose digits are not a counter's, though `fonts.lining` keeps them (symbol fonts draw all ten).
_NOT_DIGITS = ("StandardSymbols",)


def families() -> dict[str, list[str]]:
    from edge_ocr.train import fonts, render

    weights = render.HERSHEY_WEIGHTS
    system = sorted(
        str(p)
        for d in SYSTEM_DIRS
        for p in Path(d).glob("*")
        if p.suffix in (".ttf", ".otf") and not any(w in p.name for w in _NOT_DIGITS) and fonts.lining(str(p))
    )
    unseen_hershey = [cv2.FONT_HERSHEY_COMPLEX_SMALL] + [
        f | cv2.FONT_ITALIC for f in (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)
    ]
    out = {
        "dejavu": render.dejavu_upright(),
        "pillow": [fonts.PILLOW_DEFAULT],
        "hershey": [fonts.hershey_face(int(f), w) for f in render._HERSHEY for w in weights],
        "hershey-unseen": [fonts.hershey_face(f, w) for f in unseen_hershey for w in weights],
        "system-unseen": system,
        # last, so that the rows before keep their seeds (SEED + 10 * the row's index)
        "packages": [f for family in fonts.package_faces() for f in family],
    }
    return {k: v for k, v in out.items() if v}


def run(models: Sequence[Path], n: int) -> dict[str, Any]:
    from edge_ocr.train import meter, render

    readers = fp32_readers(models)
    rows: dict[str, Any] = {}

    def row(name: str, faces: int, crops: list[render.Crop]) -> None:
        readings = {m: [r.read([c.image], "0123456789.-")[0].text for c in crops] for m, r in readers.items()}
        rows[name] = {"faces": faces, **{m: meter.score(crops, texts) for m, texts in readings.items()}}

    for i, (family, faces) in enumerate(families().items()):
        for j, strength in enumerate(STRENGTHS):
            crops = render.render_set(SEED + 10 * i + j, n, "drum", strength, faces=faces)
            row(f"{family}@{strength}", len(faces), crops)
    for i, design in enumerate(render.SEG7_DESIGNS):
        for j, strength in enumerate(STRENGTHS):
            row(f"seg7-{design}@{strength}", 1, render.seg7_set(SEED + 100 + 10 * i + j, n, design, strength))
    return {"n": n, "models": [str(m) for m in models], "rows": rows}


def render_text(result: dict[str, Any]) -> str:
    models = result["models"]
    lines = [
        f"{result['n']} crops a row, FP32: right / wrong above the last digit (counters), exact (displays)"
    ]
    lines.append(f"{'faces @ strength':24s} " + "  ".join(f"{Path(m).name[:22]:>22s}" for m in models))
    for name, row in result["rows"].items():
        above = [f" / {row[m]['wrong_above_last_digit']:.3f}" if "wrong_above_last_digit" in row[m] else ""
                 for m in models]  # fmt: skip
        cells = [f"{row[m]['exact']:.3f}{a}" for m, a in zip(models, above, strict=True)]
        lines.append(f"{name + ' (' + str(row['faces']) + ')':24s} " + "  ".join(f"{c:>22s}" for c in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = model_parser("python -m edge_ocr.bench.meter_faces", __doc__)
    parser.add_argument("--n", type=int, default=400, help="counters per family and strength (default 400)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    result = run(checked_models(parser, args.model), args.n)
    report(render_text(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
