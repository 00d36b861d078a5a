"""Fresh counters and 7-segment readings at each camera strength, models side by side:
`python -m edge_ocr.bench.meter_strength [--model FILE]... [--n N] [--seg7-n N] [--json FILE]`.

The card's held-back sets are 300 crops a kind at full camera strength. A change to the meter model or
its recipe moves drums by a point or less, which 300 crops do not resolve, and a camera rarely gives
every crop full blur, glare and dark. These rows are larger: `--n` counters (drums, turning as the
held-back sets turn them) at camera strength 0, 0.5, 0.7 and 1.0, and `--seg7-n` 7-segment readings
at 0.5 and 1.0, from seeds training and the held-back sets never draw from.

Each cell gives right (either neighbouring value of a turning drum) / readings wrong above the last
digit, first as read, then past a default numeric region's confidence floor
(`config.camera.METER_MIN_CONFIDENCE`, what `ocr --meter` applies): a reading below it is rejected,
neither a value nor a wrong one. Read by the runtime's `MeterReader` on one onnxruntime thread, FP32
(default: the shipped model; `--model` again for another, e.g. `git show
REV:edge_ocr/modelbuild/meter/meter_crnn.fp32.onnx > old.onnx`). Tooling only (the [train] extra).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# + the strength's index (drums), + 100 + the index (7-segment). Training and the held-back sets never draw
# from these; the INT8 percentile was chosen on seeds 9,600,000 + kind (modelbuild.meter), other crops.
SEED = 9_600_000
DRUM_STRENGTHS = (0.0, 0.5, 0.7, 1.0)
SEG7_STRENGTHS = (0.5, 1.0)
_COUNTS = ("right", "wrong_above_last_digit", "rejected", "right_kept", "wrong_above_kept")


def run(models: Sequence[Path], n: int, seg7_n: int) -> dict[str, Any]:
    from edge_ocr.bench.meters import fp32_readers
    from edge_ocr.config.camera import METER_MIN_CONFIDENCE
    from edge_ocr.inference.meter import weakest
    from edge_ocr.train import meter, render
    from edge_ocr.types import low_confidence

    readers = fp32_readers(models)
    sets = {f"drum@{s}": render.render_set(SEED + i, n, "drum", s) for i, s in enumerate(DRUM_STRENGTHS)}
    for i, s in enumerate(SEG7_STRENGTHS):
        sets[f"seg7@{s}"] = render.render_set(SEED + 100 + i, seg7_n, "seg7", s)
    rows: dict[str, Any] = {}
    for name, crops in sets.items():
        rows[name] = {"n": len(crops)}
        for m, reader in readers.items():
            cell = dict.fromkeys(_COUNTS, 0)
            for c in crops:
                d = reader.read([c.image], "0123456789.-")[0]
                right = d.text in render.neighbours(c)
                above = not right and meter.score([c], [d.text]).get("wrong_above_last_digit", 0.0) > 0
                kept = low_confidence(d.confidence, weakest(d), METER_MIN_CONFIDENCE) is None
                cell["right"] += right
                cell["wrong_above_last_digit"] += above
                cell["rejected"] += not kept
                cell["right_kept"] += right and kept
                cell["wrong_above_kept"] += above and kept
            rows[name][m] = cell
    return {"n": n, "seg7_n": seg7_n, "floor": METER_MIN_CONFIDENCE, "models": [str(m) for m in models],
            "rows": rows}  # fmt: skip


def render_text(result: dict[str, Any]) -> str:
    models = result["models"]
    lines = [
        "FP32, right / wrong above the last digit (counts of n): as read | past the "
        f"{result['floor']:g} confidence floor (rejected)",
        f"{'set':16s} " + "  ".join(f"{Path(m).name[:34]:>34s}" for m in models),
    ]
    for name, row in result["rows"].items():
        cells = []
        for m in models:
            c = row[m]
            raw = f"{c['right'] / row['n']:.3f}/{c['wrong_above_last_digit']}"
            kept = f"{c['right_kept'] / row['n']:.3f}/{c['wrong_above_kept']} ({c['rejected']})"
            cells.append(f"{raw} | {kept}")
        lines.append(f"{name + ' n=' + str(row['n']):16s} " + "  ".join(f"{c:>34s}" for c in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from edge_ocr.bench.meters import checked_models, model_parser, report

    parser = model_parser("python -m edge_ocr.bench.meter_strength", __doc__)
    parser.add_argument("--n", type=int, default=1500, help="counters per strength (default 1500)")
    parser.add_argument("--seg7-n", type=int, default=1000, help="7-segment readings per strength (1000)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.seg7_n < 1:
        parser.error("--n and --seg7-n must be at least 1")
    result = run(checked_models(parser, args.model), args.n, args.seg7_n)
    report(render_text(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
