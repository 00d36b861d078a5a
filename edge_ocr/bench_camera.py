"""`python -m edge_ocr.bench_camera [args]`: the camera benchmark (development tooling, not runtime).

A 7-segment water meter video with camera drift and injected misreads, played in real time by a real
daemon against a throw-away mosquitto: each value read once, misreads rejected, frames/s analysed and
change -> MQTT latency (`--scenario digits`: the earlier big-digit video). `--help` lists the options.
The code lives in `edge_ocr/bench/camera.py` (also `python -m edge_ocr.bench.camera`); the runtime never
imports either module.
"""

from __future__ import annotations

from edge_ocr.bench.camera import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m edge_ocr.bench_camera"))
