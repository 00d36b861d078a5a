"""Accuracy floors of the default engine on a fixed subset of `../shared/eval`.

The subset (the first lines of each labels file, the first pages of labels.jsonl) and the models are
fixed and inference is deterministic, so the figures are repeatable and can be asserted. Each floor is
the figure measured with the default models plus a margin (about 0.01 CER, 0.025 recall) so that a
change that really costs accuracy fails here, while a rebuild that moves a few characters does not.
The full-set figures come from `edge-ocr bench`.

The data comes from $EDGE_OCR_EVAL, else ../shared/eval beside the repository; the tests skip only
when it is absent. Missing models are a failure (ModelError says how to build them), not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_ocr.bench import scoring
from edge_ocr.bench.ocr import load_lines, load_pages
from edge_ocr.decode import read_image
from edge_ocr.pipeline import Engine, EngineSettings

EVAL = Path(os.environ.get("EDGE_OCR_EVAL") or Path(__file__).resolve().parents[2] / "shared" / "eval")

# Measured 2026-12-02 with the default set (ppocrv6-small, FP32; EngineSettings defaults): lines_en[:120]
# CER 0.0055, exact 0.933; lines_zh_synth[:60] CER (NFKC-folded) 0.0013; pages[:5] CER 0.0339, recall
# 0.885. (PP-OCRv4 measured 0.0150 / 0.875, 0.0075, 0.0314 / 0.874 on the same subsets.)
LINES_EN = 120
LINES_EN_MAX_CER = 0.012
LINES_EN_MIN_EXACT = 0.90
LINES_ZH = 60
LINES_ZH_MAX_CER_NFKC = 0.008
PAGES = 5
PAGES_MAX_CER = 0.042
PAGES_MIN_RECALL = 0.86


def _need(subset: str) -> Path:
    path = EVAL / subset
    if not path.is_dir():
        pytest.skip(f"eval data {path} is absent (set EDGE_OCR_EVAL to the shared/eval folder)")
    return path


@pytest.fixture(scope="module")
def engine() -> Engine:
    _need("")  # without data there is nothing to score: skip before loading the models
    return Engine(EngineSettings())


def _read_lines(engine: Engine, subset: str, n: int) -> tuple[list[str], list[str]]:
    items = load_lines(_need(subset), n)
    assert len(items) == n, f"{subset} has fewer than {n} lines"
    return [gt for _, gt in items], [engine.run_line(read_image(path)).text for path, _ in items]


def test_lines_en_floor(engine: Engine) -> None:
    gts, preds = _read_lines(engine, "lines_en", LINES_EN)
    s = scoring.score_lines(gts, preds)
    assert s.cer <= LINES_EN_MAX_CER, f"CER {s.cer:.4f} on lines_en[:{LINES_EN}]"
    assert s.accuracy >= LINES_EN_MIN_EXACT, f"exact-line accuracy {s.accuracy:.3f} on lines_en[:{LINES_EN}]"


def test_lines_zh_synth_floor(engine: Engine) -> None:
    # Synthetic lines (see SOURCES.md): a check that the Chinese charset is decoded, not a real-world figure.
    gts, preds = _read_lines(engine, "lines_zh_synth", LINES_ZH)
    s = scoring.score_lines(gts, preds, "nows_nfkc")
    assert s.cer <= LINES_ZH_MAX_CER_NFKC, f"CER (NFKC) {s.cer:.4f} on lines_zh_synth[:{LINES_ZH}]"


def test_pages_floor(engine: Engine) -> None:
    pytest.importorskip("rapidfuzz", reason="the page rule needs rapidfuzz: pip install 'edge-ocr[bench]'")
    pages_dir = _need("pages")
    total = scoring.EMPTY_PAGE
    for page in load_pages(pages_dir, PAGES):
        result = engine.run(read_image(pages_dir / page["image"]))
        gt = [(ln["text"], ln["box"]) for ln in page["lines"]]
        total = total + scoring.score_page(gt, [(ln.text, ln.box) for ln in result.lines])
    assert total.lines > 200, "the first pages should carry a few hundred GT lines"
    assert total.cer <= PAGES_MAX_CER, f"page CER {total.cer:.4f} on pages[:{PAGES}]"
    assert total.recall >= PAGES_MIN_RECALL, f"line recall {total.recall:.3f} on pages[:{PAGES}]"
