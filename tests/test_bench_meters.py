"""`edge-ocr bench --meters`: one real, short run (8 rendered crops per kind, 4 "real" crops in a folder,
no baselines) on the built models: every row is there with figures in range, and the JSON has them.

Kept short on purpose (a few seconds: 40 + 4 crops through five engines; not marked slow). Accuracy
is not asserted: the committed meter model may be a provisional one that reads nothing."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import pytest

render = pytest.importorskip("edge_ocr.train.render", reason="rendering needs the [train] extra (Pillow)")

from edge_ocr.cli import main  # noqa: E402

N = 8
FOLDER_N = 4
NUMBER = r"(-|\d+(?:\.\d+)?)"
ROWS = {  # printed label -> JSON key
    "meter model INT8": "meter-int8",
    "meter model FP32": "meter-fp32",
    "meter model auto": "meter-auto",
    "ppocrv6-small FP32 line": "ppocrv6-small-line",
    "ppocrv6-small FP32 +ghosts": "ppocrv6-small-ghosts",
}


def _row(out: str, label: str, columns: int) -> list[float]:
    """The numbers of the first table row starting with `label` (a `(precision)` suffix allowed)."""
    pattern = re.escape(label) + r"(?: \((?:int8|fp32)\))?\s+" + r"\s+".join([NUMBER] * columns) + r"\s*$"
    m = re.search(pattern, out, re.MULTILINE)
    assert m, f"no row {label!r} with {columns} figures in:\n{out}"
    return [float(v) if v != "-" else math.nan for v in m.groups()]


def test_bench_meters_prints_every_row_and_writes_the_json(
    tmp_path: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_ocr.models import load_manifest

    assert "meter" in load_manifest(models_dir)["sets"], "run `edge-ocr models build --model-set meter`"
    folder = tmp_path / "real"
    folder.mkdir()
    crops = render.render_set(4242, FOLDER_N)
    lines = []
    for i, c in enumerate(crops):
        cv2.imwrite(str(folder / f"{i}.png"), c.image)
        lines.append(f"{i}.png\t{c.text}\n")
    (folder / "labels.tsv").write_text("".join(lines), encoding="utf-8")
    report = tmp_path / "meters.json"

    rc = main(["bench", "--meters", "--meters-n", str(N), "--meters-dir", str(folder), "--no-baselines",
               "--models", str(models_dir), "--json", str(report)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out

    first = out.splitlines()[0]
    assert first.startswith("machine: ") and "onnxruntime " in first and first.endswith("threads=1")
    assert re.search(r"^RapidOCR .* skipped \(--no-baselines\)$", out, re.MULTILINE)
    rendered, _, real = out.partition("real crops from")
    assert real, out
    for label in ROWS:
        exact, cer, ms, *kinds, drum_wrong = _row(rendered, label, 3 + len(render.KINDS) + 1)
        assert 0 <= exact <= 1 and cer >= 0 and 0 < ms < 10_000
        assert all(0 <= k <= 1 for k in kinds) and 0 <= drum_wrong <= 1
        exact, cer, ms = _row(real, label, 3)
        assert 0 <= exact <= 1 and cer >= 0 and 0 < ms < 10_000
    speed = re.search(r"ppocrv6-small line FP32 / meter INT8 = ([\d.]+)x; meter FP32 / INT8 = ([\d.]+)x", out)
    assert speed and float(speed[1]) > 0 and float(speed[2]) > 0, out
    assert re.search(r"^meter model auto runs (int8|fp32) \(meter_crnn\.\w+\.onnx\): \S", out, re.MULTILINE)

    doc = json.loads(report.read_text(encoding="utf-8"))
    assert doc["machine"]["threads"] == 1 and doc["machine"]["onnxruntime"]
    assert doc["auto"]["precision"] in ("int8", "fp32") and doc["auto"]["why"]
    assert doc["ratios"]["general_fp32_over_meter_int8"] > 0 and doc["ratios"]["meter_fp32_over_int8"] > 0
    rows = {r["key"]: r for r in doc["sets"]["rendered"]["rows"]}
    assert doc["sets"]["rendered"]["n_per_kind"] == N
    assert "skipped" in rows["rapidocr3-line"]
    for key in ROWS.values():
        r = rows[key]
        assert (
            r["n"] == N * len(render.KINDS) and 0 <= r["exact"] <= 1 and r["cer"] >= 0 and r["ms_median"] > 0
        )
        assert list(r["per_kind"]) == list(render.KINDS)
        assert all(f["n"] == N and 0 <= f["exact"] <= 1 for f in r["per_kind"].values())
        assert 0 <= r["per_kind"]["drum"]["wrong_above_last_digit"] <= 1
    folder_rows = {r["key"]: r for r in doc["sets"]["folder"]["rows"]}
    assert doc["sets"]["folder"]["n"] == FOLDER_N
    assert all(folder_rows[k]["n"] == FOLDER_N for k in ROWS.values())
