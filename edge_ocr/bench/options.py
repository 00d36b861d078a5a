"""The options of `edge-ocr bench`, apart from the bench: every command, `edge-ocr run` too, builds the
whole command line first, and reading these must not load the bench's code (its scoring, the eval
sets' loaders and RapidOCR's plumbing) into a daemon that never runs it. Only the standard library."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

QUICK = {"lines": 100, "pages": 10}  # --quick: first N of each set, enough for a CI smoke run


def default_data_dir() -> Path:
    """$EDGE_OCR_EVAL, else ../shared/eval beside the repository (where CI and this machine keep it)."""
    env = os.environ.get("EDGE_OCR_EVAL")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `edge-ocr bench`."""
    parser.add_argument(
        "--data",
        default=str(default_data_dir()),
        help="the eval folder (pages/, lines_en/, ...); default $EDGE_OCR_EVAL, else ../shared/eval",
    )
    parser.add_argument("--models", default=None, help="models folder (default $EDGE_OCR_MODELS or models/)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"first {QUICK['lines']} lines and {QUICK['pages']} pages only (CI smoke run)",
    )
    parser.add_argument("--only", choices=("lines", "pages"), help="run only the line sets or only pages")
    parser.add_argument(
        "--precision",
        nargs="+",
        metavar="P",
        help="auto, fp32 and/or int8 (auto: INT8 where accurate and faster on this CPU); default: all",
    )
    parser.add_argument(
        "--model-set",
        nargs="+",
        metavar="SET",
        help="ppocrv6-small, ppocrv6-tiny and/or ppocrv4-mobile; default: all",
    )
    parser.add_argument(
        "--threads",
        nargs="+",
        type=int,
        default=[1, 2],
        metavar="N",
        help="onnxruntime threads per configuration (default: 1 2)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each item N times and keep the fastest (default 1)"
    )
    parser.add_argument(
        "--no-baselines", dest="baselines", action="store_false", help="skip RapidOCR 1.4/3.10 and Tesseract"
    )
    parser.add_argument("--det-limit", type=int, help="detector side limit for the edge-ocr rows")
    parser.add_argument(
        "--det-limit-type",
        choices=("max", "min"),
        default="max",
        help="with --det-limit: limit the longest (max) or shortest (min) side",
    )
    parser.add_argument(
        "--rotations", action="store_true",
        help="also read the eval pages turned 90, 180 and 270 degrees (page orientation)",
    )  # fmt: skip
    parser.add_argument(
        "--det-sweep", action="store_true", help="also run pages with several detector side limits (1 thread)"
    )
    parser.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="an EngineSettings field for the edge-ocr rows, e.g. use_cls=false or rec_batch_size=1",
    )
    parser.add_argument(
        "--camera-like",
        action="store_true",
        help="also read the eval receipts made camera-like: 4032-px photos with perspective, light and blur",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
