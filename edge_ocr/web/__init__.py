"""The web layer: one HTTP server for `/healthz`, `/metrics`, `POST /api/ocr`, the watch API and the page.

- `settings`: `ApiSettings` (from the config's `http:` section) and the exposure rule (a non-loopback
  bind needs a token).
- `fairshare`: `EngineGate`, the engine's share between the API and the daemon's own work.
- `cache`: the content-hash result cache.
- `app`: the FastAPI application (middleware, the error envelope); routers by concern in `ocr`
  (`/api/ocr`), `watch` (cameras, folder sources, status), `history` (`/api/history`: the readings
  the daemon keeps, JSON or CSV) and `ops` (`/healthz`, `/metrics`, the page).
- `metrics`: the Prometheus collector reading the daemon's status at each scrape.
- `server`: uvicorn in a thread owned by the daemon (or `edge-ocr serve`), with a clean stop.

Inference never runs on the event loop: decoding and the engine run in the API's own worker threads,
which take their turn at the engine through the gate.
"""
