"""Tools, not runtime: benchmarks, the eval sets' scoring rules and the development broker.

- `ocr`: `edge-ocr bench` — accuracy and speed of the model sets against RapidOCR and Tesseract;
- `startup`: process start to first result (`python -m edge_ocr.bench.startup`);
- `api`: the HTTP path against the engine (`edge-ocr bench --api`);
- `daemon`, `camera`: files/s and frames/s through the daemon (`edge-ocr bench --daemon`,
  `python -m edge_ocr.bench.camera`);
- `scoring`: SOURCES.md's rules (CER, exact lines, page matching);
- `devbroker`: a real mosquitto on loopback for tests and benchmarks.

The runtime never imports this package.
"""
