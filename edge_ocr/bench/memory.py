"""`python -m edge_ocr.bench.memory`: the peak RSS of a real `edge-ocr run`, per kind of device.

Each scenario starts the daemon as its own process (as systemd does) on a generated DSEG7 meter video
and reads the kernel's VmHWM of that process after `--seconds` of work; several runs per scenario, the
median printed. Scenarios:

- `meter`: one numeric camera region, no folder, no HTTP: a device that only reads a meter (issue 17's
  target: 120 MB). It loads the meter model alone.
- `meter+page`: the same with the web page on (the Setup tab tests regions of either kind, and the API
  reads pages: the general models and the page orientation model are loaded too).

Beside the peak, each row gives the process's RSS at the end split in two (medians): private memory
(RssAnon: heaps, tensors, thread stacks, what edge-ocr and its libraries allocate) and pages mapped
from files (RssFile: mostly the code of OpenCV, onnxruntime, FFmpeg and Python). The second part is
clean, shared with every process that maps the same files and dropped first under memory pressure, and
how much of it the kernel maps depends on the page cache's state, not on edge-ocr: on one machine
(kernel 6.18, which maps a large folio of the page cache whole) and the same wheels, the meter daemon
peaked at 128 MB right after `scripts/test --setup-only` and at 160 MB once OpenCV's wheel had been
reinstalled (and again after dropping the page cache): cv2.abi3.so mapped 15 -> 35 MB and libavcodec
3 -> 12 MB, while heap and anonymous maps stayed at 49 MB. Compare peaks measured in one state. The
lower state is what small pages give: the same virtualenv copied to a tmpfs mounted `huge=never` (only
4 KiB pages in its page cache) gave the meter daemon 124.6 MB peak, with the same libraries' mappings
(onnxruntime 21.8, cv2 9.7, libavcodec 2.8 MB) as from ext4 in that state (125-126 MB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from edge_ocr.bench.meter import LCD_BOX, write_meter_video

SCENARIOS = ("meter", "meter+page")


def _config(tmp: Path, video: Path, scenario: str, port: int) -> Path:
    http = (
        f"\nhttp: {{enabled: true, host: 127.0.0.1, port: {port}, api: true}}"
        if scenario == "meter+page"
        else ""
    )
    path = tmp / f"{scenario}.yaml"
    path.write_text(
        f"""device_id: bench-memory
state_dir: {tmp / ("state-" + scenario)}
sources:
  - name: meter
    type: camera
    url: {video}
    interval_s: 0.2
    regions:
      - name: reading
        box: [{", ".join(map(str, LCD_BOX))}]
        numeric: {{decimals: 1}}{http}
""",
        encoding="utf-8",
    )
    return path


def _status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


def peak_rss(config: Path, seconds: float) -> dict[str, float]:
    """One `edge-ocr run --config` process's VmHWM after `seconds`, and its RSS then split into private
    (RssAnon) and file-backed (RssFile) pages, in MB; then stopped with SIGTERM."""
    exe = Path(sys.executable).with_name("edge-ocr")
    proc = subprocess.Popen([str(exe), "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the daemon stopped: {(proc.stderr.read() if proc.stderr else '')[-500:]}"
                )
            time.sleep(0.5)
        return {"peak": _status(proc.pid, "VmHWM"), "private": _status(proc.pid, "RssAnon"),
                "files": _status(proc.pid, "RssFile")}  # fmt: skip
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def _cpu() -> str:
    info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?"
    )
    flags = [f for f in ("avx512_vnni", "avx_vnni", "avx2") if f" {f}" in info]
    return f"{model} ({', '.join(flags) or 'no AVX2'})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_ocr.bench.memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--runs", type=int, default=3, help="daemon runs per scenario (median printed)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each daemon runs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-memory-") as name:
        tmp = Path(name)
        video = tmp / "meter.avi"
        write_meter_video(video, [(f"0481{i}.3", 2.0) for i in range(10)], face="dseg7")
        for k, scenario in enumerate(args.scenario):
            config = _config(tmp, video, scenario, 18700 + k)
            runs = [peak_rss(config, args.seconds) for _ in range(args.runs)]
            rows[scenario] = {
                "median_mb": round(statistics.median(r["peak"] for r in runs), 1),
                "runs_mb": [round(r["peak"], 1) for r in runs],
                "private_mb": round(statistics.median(r["private"] for r in runs), 1),
                "files_mb": round(statistics.median(r["files"] for r in runs), 1),
            }
    print(f"peak RSS of `edge-ocr run` (VmHWM after {args.seconds:g} s), {_cpu()}")
    for scenario, row in rows.items():
        print(
            f"  {scenario:<12} median {row['median_mb']:6.1f} MB   runs {row['runs_mb']}   at the end: "
            f"{row['private_mb']:.1f} MB private, {row['files_mb']:.1f} MB mapped from files"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"bench": "memory", "cpu": _cpu(), "scenarios": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
