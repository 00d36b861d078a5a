"""`edge-ocr bench --daemon`: files/s through the whole daemon against the engine alone on the same
files, and drop-to-publish latency, with a real loopback mosquitto.

Both sides run in this process, one after the other, with the same engine settings (1 worker,
1 thread), and the engine-alone pass runs before *and* after the daemon pass so that drift of a noisy
shared machine falls on both sides equally. The daemon's overhead is everything around OCR: hashing,
SQLite commit (fsync), moving the file, MQTT with QoS 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from edge_ocr.bench.devbroker import Mosquitto, Received, Subscriber, wait_until
from edge_ocr.config import FolderSource, parse_config
from edge_ocr.daemon import Daemon, engine_settings
from edge_ocr.decode import decode
from edge_ocr.pipeline import Engine


def _inputs(data: Path, kind: str, n: int) -> list[Path]:
    if kind == "pages":
        files = sorted((data / "pages").glob("*.jpg"))
    else:
        files = sorted((data / "lines_en" / "img").glob("*.png"))
    if not files:
        raise SystemExit(f"no {kind} images under {data}")
    return files[:n]


def _engine_alone(engine: Engine, files: list[Path], max_pixels: int) -> float:
    t0 = time.perf_counter()
    for f in files:
        engine.run(decode(f.read_bytes(), max_pixels=max_pixels))
    return time.perf_counter() - t0


def _drop(src: Path, inbox: Path, name: str) -> float:
    """Write beside the inbox, then rename in: the way a well-behaved producer delivers a file."""
    tmp = inbox.parent / f".{name}.part"
    shutil.copyfile(src, tmp)
    t = time.monotonic()
    os.replace(tmp, inbox / name)
    return t


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_daemon_bench(data: Path, kind: str = "pages", n: int = 12, latency_n: int = 10) -> dict:
    files = _inputs(data, kind, n)
    work = Path(tempfile.mkdtemp(prefix="edge-ocr-bench-"))
    broker = Mosquitto(work / "broker").start()
    try:
        cfg = parse_config(
            f"""
device_id: bench
state_dir: {work}/state
sources:
  - name: inbox
    type: folder
    path: {work}/inbox
mqtt:
  url: {broker.url}
  stats_interval_s: 3600
engine:
  workers: 1
  threads: 1
""",
            "<bench>",
        )
        engine = Engine(engine_settings(cfg))
        engine.run(decode(files[0].read_bytes()))  # warm-up: first-run allocations
        alone = [_engine_alone(engine, files, cfg.engine.max_pixels)]

        topic = "edge-ocr/bench/result/inbox"
        sub = Subscriber(broker, [topic])
        daemon = Daemon(cfg)
        daemon.use_engine(engine, engine_settings(cfg))  # same sessions: the comparison is of all around OCR
        thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        thread.start()
        wait_until(lambda: daemon.gen is not None and bool(daemon.gen.sources), timeout=60)
        src = cfg.sources[0]
        assert isinstance(src, FolderSource)  # the config above has one folder source
        inbox = src.path

        # Throughput on a backlog: steady state from the first result to the last (the settle delay
        # before the first file is latency, measured below, not throughput).
        for i, f in enumerate(files):
            _drop(f, inbox, f"t{i:04d}{f.suffix}")
        if not sub.wait_for(lambda m: len(m) >= len(files), timeout=60 + 20 * len(files)):
            raise SystemExit("daemon bench: not every result arrived")
        arrivals = sorted(m.at for m in sub.on(topic))
        daemon_s = (arrivals[-1] - arrivals[0]) * len(files) / (len(files) - 1)

        # Latency: one file at a time, drop to its message on the broker.
        latencies = []
        for i in range(latency_n):
            f = files[i % len(files)]
            before = len(sub.on(topic))
            t = _drop(f, inbox, f"l{i:04d}{f.suffix}")

            def arrived(m: list[Received], b: int = before) -> bool:
                return len([x for x in m if x.topic == topic]) > b

            sub.wait_for(arrived, timeout=120)
            latencies.append(sub.on(topic)[-1].at - t)
        daemon.request_stop()
        thread.join(60)
        sub.close()

        alone.append(_engine_alone(engine, files, cfg.engine.max_pixels))
        alone_s = statistics.mean(alone)
        return {
            "files": len(files),
            "kind": kind,
            "engine_alone_files_per_s": round(len(files) / alone_s, 3),
            "daemon_files_per_s": round(len(files) / daemon_s, 3),
            "overhead_pct": round(100 * (daemon_s - alone_s) / alone_s, 2),
            "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
            "latency_p95_ms": round(1000 * _pct(latencies, 0.95), 1),
            "engine_alone_runs_s": [round(x, 3) for x in alone],
        }
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/eval")
    p.add_argument("--kind", choices=["pages", "lines"], default="pages")
    p.add_argument("-n", type=int, default=12, help="files in the throughput burst")
    p.add_argument("--latency-n", type=int, default=10, help="files dropped one at a time")
    args = p.parse_args(argv)
    res = run_daemon_bench(Path(args.data), args.kind, args.n, args.latency_n)
    print(f"{'':<28}{'files/s':>10}")
    print(f"{'engine alone':<28}{res['engine_alone_files_per_s']:>10.3f}")
    print(f"{'daemon (folder->MQTT QoS1)':<28}{res['daemon_files_per_s']:>10.3f}")
    print(f"daemon overhead: {res['overhead_pct']:+.1f}% (goal <= 5%)")
    print(
        f"drop-to-publish latency: p50 {res['latency_p50_ms']:.0f} ms, p95 {res['latency_p95_ms']:.0f} ms"
        " (includes the folder's settle_s, default 0.5 s)"
    )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
