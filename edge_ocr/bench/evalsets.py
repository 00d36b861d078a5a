"""The eval sets on disk: a line set's labels.tsv and the pages' labels.jsonl, read in file order.

Shared by the OCR bench, the camera-like pages, calibration and the accuracy tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_lines(set_dir: Path, limit: int | None = None) -> list[tuple[Path, str]]:
    """(image path, transcript) from a line set's labels.tsv, in file order (deterministic)."""
    items = []
    with open(set_dir / "labels.tsv", encoding="utf-8") as fh:
        for row in fh:
            row = row.rstrip("\n")
            if row:
                rel, _, text = row.partition("\t")
                items.append((set_dir / rel, text))
    return items[:limit] if limit else items


def load_pages(pages_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Page records of labels.jsonl: {"image", "source_id", "lines": [{"text", "box"}]}."""
    with open(pages_dir / "labels.jsonl", encoding="utf-8") as fh:
        pages = [json.loads(row) for row in fh if row.strip()]
    return pages[:limit] if limit else pages
