"""The eval receipts turned 90, 180 and 270 degrees clockwise.

`edge-ocr bench --rotations` reads them beside the upright pages: with page orientation on, each turn
should read as the upright page does (issue 18: within +0.002 CER and -0.01 recall).

The engine returns boxes on its input, the turned image. The score turns them back with the known turn
(`unturn_box`) and matches them against the upright ground truth, so the page rule (which joins a
line's candidates left to right) sees the same geometry as upright, and a box the engine left in its
own upright frame would land in the wrong place and cost the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2

from edge_ocr.bench.evalsets import load_pages
from edge_ocr.decode import read_image

TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def unturn_point(x: float, y: float, degrees: int, width: int, height: int) -> tuple[float, float]:
    """Where (x, y) of an image turned `degrees` clockwise lies on the upright `width` x `height` one."""
    if degrees == 90:
        return y, height - x
    if degrees == 180:
        return width - x, height - y
    if degrees == 270:
        return width - y, x
    return x, y


def unturn_box(box: list[list[float]], page: dict[str, Any]) -> list[list[float]]:
    """A predicted box on a turned page, on the upright page (a page record of `make`'s labels)."""
    if not page.get("turn"):
        return box
    w, h = page["upright_size"]
    return [list(unturn_point(x, y, page["turn"], w, h)) for x, y in box]


def make(pages_dir: Path, dest_root: Path, limit: int | None = None) -> dict[str, str]:
    """Write `pages_rot<D>/pages/` (eval layout) under `dest_root` per turn; {set name: data root}."""
    pages = load_pages(pages_dir, limit)
    roots: dict[str, str] = {}
    for degrees, code in TURNS.items():
        root = dest_root / f"rot{degrees}"
        out_dir = root / "pages"
        out_dir.mkdir(parents=True, exist_ok=True)
        rows: list[str] = []
        for page in pages:
            img = read_image(pages_dir / page["image"])
            h, w = img.shape[:2]
            cv2.imwrite(str(out_dir / Path(page["image"]).with_suffix(".png").name), cv2.rotate(img, code))
            rows.append(json.dumps({**page, "image": Path(page["image"]).with_suffix(".png").name,
                                    "turn": degrees, "upright_size": [w, h]}))  # fmt: skip
        (out_dir / "labels.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
        roots[f"pages_rot{degrees}"] = str(root)
    return roots
