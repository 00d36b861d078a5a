"""`python -m edge_ocr.bench.api` (`edge-ocr bench --api`): the HTTP path's cost against the engine.

For lines and pages, at concurrency 1 and 4: requests/s and p50/p95 latency of
- direct: decode + `Engine.run` (`run_line` for lines) on N threads of this process;
- api: `POST /api/ocr` (raw body, keep-alive) to `edge-ocr serve` in its own process with api_workers
  = the concurrency, the result cache off, the same engine settings (threads 1 per session).
The overhead is the api's throughput loss against direct. On a shared machine the load moves while a
run lasts, so the two sides take turns (`--rounds`, direct first in one round, api first in the next)
and each keeps its fastest round, as `edge-ocr bench --repeat` keeps an item's fastest time.

The throughput comparison is of two processes, and the same models in two processes run at speeds a few
% apart that change from start to start (on 2 shared cores: pages over HTTP from 2% faster to 9% slower
than in-process, in runs minutes apart). So each API request is also measured at both ends: the HTTP
path's share is the client's latency less the server's own decode, queue and engine time (the
`timings_ms` the answer carries), over the client's latency. A tool, not runtime: it starts a server.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml


def _free_port() -> int:
    from edge_ocr.bench.devbroker import free_port

    return free_port()


def _measure(
    items: list[bytes], call: Callable[[bytes], float | None], concurrency: int, warm: int = 1
) -> dict[str, float]:
    """`call` returns the server's own time for the request (decode + queue + engine, ms), or None."""
    lat: list[float] = []
    inside: list[float] = []
    lock = threading.Lock()

    def one(data: bytes) -> None:
        t = time.perf_counter()
        own = call(data)
        took = time.perf_counter() - t
        with lock:
            lat.append(took)
            if own is not None:
                inside.append(own / 1000)

    # Warm-up: connections, and onnxruntime's first run at each input shape (the recognizer's widths
    # vary by line; a first run at a new shape costs several times a later one, on either side).
    for data in items[:warm]:
        call(data)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, items))
    wall = time.perf_counter() - t0
    out = {"rps": len(items) / wall}
    if inside:
        # What the HTTP path adds to a request, the same requests measured at both ends: the client's
        # latency less the server's own decode, queue and engine time (its timings_ms).
        out["http_share"] = max(0.0, 1 - sum(inside) / sum(lat))
    lat.sort()
    out["p50_ms"] = statistics.median(lat) * 1000
    out["p95_ms"] = lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000
    return out


class _Poster:
    """POST /api/ocr with one keep-alive connection per client thread."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api/ocr"
        self.local = threading.local()

    def __call__(self, data: bytes, line: bool) -> float:
        """The server's own time for the request (ms): decode, queue and engine, from its timings_ms."""
        import httpx

        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=600)
        r = client.post(self.url, content=data, params={"line": "true"} if line else None,
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        r.raise_for_status()
        t = r.json()["timings_ms"]
        return float(t["total"]) + float(t.get("decode", 0)) + float(t.get("queue", 0))


def _serve(cfg_dir: Path, models: Path | None, workers: int, port: int) -> subprocess.Popen[bytes]:
    cfg: dict[str, Any] = {
        "state_dir": str(cfg_dir / "state"),
        "sources": [{"name": "unused", "type": "folder", "path": str(cfg_dir / "inbox")}],
        "engine": {"threads": 1, **({"models_dir": str(models)} if models else {})},
        "http": {
            "port": port,
            "api_workers": workers,
            "queue_size": 256,
            "cache_entries": 0,
            "deadline_s": 600.0,
            "max_body_mb": 64.0,
        },  # fmt: skip
        "logging": {"level": "WARNING"},
    }
    path = cfg_dir / f"serve-{workers}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "edge_ocr", "serve", "--config", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("edge-ocr serve exited at start")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("edge-ocr serve did not become ready")


def _same_models(direct: dict[str, Any], port: int) -> None:
    """Print each side's model per role. `precision: auto` probes INT8 against FP32 at a start without
    a cached verdict (the server's graph cache is new in its temporary state_dir): on a busy machine the
    two sides may choose differently, and then they are not the same work."""
    import httpx

    served = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=30).json().get("model") or {}

    def files(models: dict[str, Any]) -> dict[str, str]:
        return {role: m["file"] for role, m in models.items() if isinstance(m, dict) and "file" in m}

    mine, theirs = files(direct), files(served)
    print(f"models: direct {mine}", flush=True)
    if theirs != mine:
        print(f"WARNING: the server runs other models, so not the same work: {theirs}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-ocr bench --api", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("EDGE_OCR_EVAL", "../shared/eval"), type=Path)
    p.add_argument("--pages", type=int, default=8, help="page images per run (from pages/)")
    p.add_argument("--lines", type=int, default=80, help="line crops per run (from lines_en/img)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    p.add_argument("--models", type=Path, default=None)
    p.add_argument("--rounds", type=int, default=3, help="turns of each side; each keeps its fastest")
    args = p.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request

    from edge_ocr.decode import decode
    from edge_ocr.pipeline import Engine, EngineSettings

    pages = sorted((args.data / "pages").glob("*.jpg"))
    lines = sorted((args.data / "lines_en" / "img").glob("*.png"))[: args.lines]
    kinds = {
        "lines": [f.read_bytes() for f in lines],
        "pages": [pages[i % len(pages)].read_bytes() for i in range(args.pages)],
    }
    settings = EngineSettings(threads=1, **({"models_dir": args.models} if args.models else {}))
    engine = Engine(settings)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-api-") as tmp:
        for c in args.concurrency:
            port = _free_port()
            proc = _serve(Path(tmp), args.models, c, port)
            try:
                post = _Poster(port)
                _same_models(engine.models, port)

                for kind, items in kinds.items():
                    line = kind == "lines"

                    def direct(data: bytes, line: bool = line) -> None:
                        image = decode(data)
                        engine.run_line(image) if line else engine.run(image)

                    def via_api(data: bytes, line: bool = line) -> float:
                        return post(data, line)  # noqa: B023

                    warm = len(items) if line else 1
                    turns: dict[str, list[dict[str, float]]] = {"direct": [], "api": []}
                    calls = {"direct": direct, "api": via_api}
                    for r in range(max(1, args.rounds)):
                        for side in ("direct", "api") if r % 2 == 0 else ("api", "direct"):
                            turns[side].append(_measure(items, calls[side], c, warm))
                    d = max(turns["direct"], key=lambda m: m["rps"])
                    a = max(turns["api"], key=lambda m: m["rps"])
                    each = ", ".join(f"{x['rps']:.2f}/{y['rps']:.2f}"
                                     for x, y in zip(turns["direct"], turns["api"], strict=True))  # fmt: skip
                    print(f"{kind:5s} c={c}: rounds (direct/api req/s) {each}", flush=True)
                    rows.append((kind, c, d, a, statistics.median(m["http_share"] for m in turns["api"])))
                    loss = 100 * (1 - a["rps"] / d["rps"])
                    http = 100 * statistics.median(m["http_share"] for m in turns["api"])
                    print(f"{kind:5s} c={c}: direct {d['rps']:6.2f}/s p50 {d['p50_ms']:7.0f} "
                          f"p95 {d['p95_ms']:7.0f} ms | api {a['rps']:6.2f}/s p50 {a['p50_ms']:7.0f} "
                          f"p95 {a['p95_ms']:7.0f} ms | overhead {loss:+5.1f}% | HTTP path {http:4.1f}%",
                          flush=True)  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(30)
    print()
    print(
        "| kind | concurrency | direct req/s | direct p50/p95 ms | API req/s | API p50/p95 ms | overhead "
        "| HTTP path |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, c, d, a, http in rows:
        print(
            f"| {kind} | {c} | {d['rps']:.2f} | {d['p50_ms']:.0f} / {d['p95_ms']:.0f} | {a['rps']:.2f} | "
            f"{a['p50_ms']:.0f} / {a['p95_ms']:.0f} | {100 * (1 - a['rps'] / d['rps']):+.1f}% "
            f"| {100 * http:.1f}% |"
        )
    print(
        "overhead: the API's req/s against the engine in this process (two processes: the load and each "
        "process's luck move it by several %).\nHTTP path: the share of each request's latency spent "
        "outside the server's decode, queue and engine (its timings_ms), the same requests at both ends."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
