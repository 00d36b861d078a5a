"""`edge-ocr bench --camera-like`: the scanned receipts photographed, with ground truth that still
lines up with the print, so the camera-like figures score like the scans'."""

from __future__ import annotations

import cv2

from edge_ocr.bench import camera_like
from edge_ocr.bench.ocr import load_pages
from edge_ocr.bench.scoring import score_page


def test_a_photographed_receipt_is_a_photo_and_its_truth_follows_the_print(engine, eval_data, tmp_path):
    dest = camera_like.make(eval_data / "pages", tmp_path / "pages", limit=2, seed=3)
    again = camera_like.make(eval_data / "pages", tmp_path / "again", limit=2, seed=3)
    rows = load_pages(dest)
    assert len(rows) == 2
    assert (dest / "labels.jsonl").read_text() == (again / "labels.jsonl").read_text(), "a seed repeats"
    for row in rows:
        photo = cv2.imread(str(dest / row["image"]))
        assert max(photo.shape[:2]) == 4032 and photo.shape[0] > photo.shape[1]  # a portrait 12 MP frame
        # The paper does not fill the frame: the corners are table, not receipt.
        assert photo[:40, :40].mean() < 170 and photo[-40:, -40:].mean() < 170
        gt = [(ln["text"], ln["box"]) for ln in row["lines"]]
        scores = score_page(gt, [(ln.text, ln.box) for ln in engine.run(photo).lines])
        # Boxes moved with the page: lines are found where the ground truth says (misplaced boxes
        # would match nothing and score a recall near 0).
        assert scores.recalled / scores.lines >= 0.8, (row["image"], scores)  # 0.87 and 0.93 when written
