"""`python -m edge_ocr.bench.startup`: process start to first result, as a user meets it.

Each run spawns the real command (`edge-ocr ocr --json [--line] IMAGE`) and times it from the spawn
to the first result line on its stdout. "cold" runs get an empty graph cache (the first start on a
device, or after an upgrade), "warm" runs reuse the one the previous run left (every later start).
RapidOCR 1.4.4 and 3.10, when installed, run the same image in a fresh interpreter for comparison, and
the ppocrv4-mobile and ppocrv6-tiny sets run beside the default set. Medians of --repeat runs per row,
interleaved so that load on the shared machine falls on every row alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_ocr.bench.options import default_data_dir

_RAPID = """
import sys
from rapidocr_onnxruntime import RapidOCR
from edge_ocr.decode import read_image
engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
img = read_image(sys.argv[1])
res, _ = engine(img, use_det=sys.argv[2] == "page", use_cls=True, use_rec=True)
print(len(res or []), flush=True)
"""

_RAPID3 = """
import sys
from rapidocr import RapidOCR
from edge_ocr.decode import read_image
engine = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": 1,
                          "EngineConfig.onnxruntime.inter_op_num_threads": 1, "Global.log_level": "warning"})
img = read_image(sys.argv[1])
res = engine(img, use_det=sys.argv[2] == "page", use_cls=True, use_rec=True)
print(len(res.txts or []), flush=True)
"""


_BASELINES = (("rapidocr_onnxruntime", "1.4.4", _RAPID), ("rapidocr", "3.10", _RAPID3))


def _time_to_first_line(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    proc.stdout.read()
    if proc.wait() != 0 or not line:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return elapsed


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_ocr.bench.startup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", default=str(default_data_dir()), help="the eval folder")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (default 5)")
    args = parser.parse_args(argv)
    data = Path(args.data)
    inputs = {
        "line": data / "lines_en" / "img" / "sroie_017_013.png",
        "page": data / "pages" / "sroie_321.jpg",  # the smallest receipt: start-up, not reading, dominates
    }
    exe = [sys.executable, "-m", "edge_ocr", "ocr", "--json", "--threads", "1"]
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="edge-ocr-startup-") as tmp:
        warm_cache = Path(tmp) / "warm"
        for kind, image in inputs.items():
            cmd = exe + (["--line"] if kind == "line" else []) + [str(image)]
            env = dict(os.environ, EDGE_OCR_CACHE=str(warm_cache))
            _time_to_first_line(cmd, env)  # fills the warm cache
            for i in range(args.repeat):
                cold = dict(os.environ, EDGE_OCR_CACHE=str(Path(tmp) / f"cold-{kind}-{i}"))
                rows.setdefault(f"edge-ocr {kind}, cold graph cache", []).append(
                    _time_to_first_line(cmd, cold)
                )
                rows.setdefault(f"edge-ocr {kind}, warm graph cache", []).append(
                    _time_to_first_line(cmd, env)
                )
                for label, name in (("v4 set", "ppocrv4-mobile"), ("tiny set", "ppocrv6-tiny")):
                    other = cmd[:-1] + ["--model-set", name, cmd[-1]]
                    rows.setdefault(f"edge-ocr {label} {kind}, warm cache", []).append(
                        _time_to_first_line(other, env)
                    )
                for module, version, code in _BASELINES:
                    if _have(module):
                        rapid = [sys.executable, "-c", code, str(image), kind]
                        rows.setdefault(f"RapidOCR {version} {kind}", []).append(
                            _time_to_first_line(rapid, env)
                        )
    print(f"process start to first result, 1 thread, median of {args.repeat} (interleaved)")
    print(f"{'':40}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, times in rows.items():
        print(f"{name:40}{statistics.median(times):>10.2f}{min(times):>8.2f}{max(times):>8.2f}")
    print(f"line: {inputs['line'].name}; page: {inputs['page'].name}")
    for label, row in (
        ("default", "edge-ocr page, warm graph cache"),
        ("tiny set", "edge-ocr tiny set page, warm cache"),
    ):
        base = rows.get(row)
        for name, times in rows.items():
            if base and name.startswith("RapidOCR") and name.endswith("page"):
                ratio = statistics.median(times) / statistics.median(base)
                print(
                    f"whole process per page: edge-ocr ({label}, warm) {ratio:.2f}x faster than {name[:-5]}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
