"""Tools, not runtime: benchmarks, the eval sets' scoring rules and the development broker.

- `ocr`: `edge-ocr bench` — accuracy and speed of the model sets against RapidOCR and Tesseract;
- `startup`: process start to first result (`python -m edge_ocr.bench.startup`);
- `api`: the HTTP path against the engine (`edge-ocr bench --api`);
- `daemon`: files/s through the daemon (`edge-ocr bench --daemon`);
- `camera`: a real daemon reading a generated meter video over MQTT (`python -m edge_ocr.bench.camera`):
  the 7-segment meter with camera drift and injected misreads (values read once, misreads rejected,
  frames/s analysed, change -> MQTT latency, alignment), or `--scenario digits`, the big-digit video
  (frames/s and latency only);
- `evalsets`: the eval sets' labels on disk (line sets and pages);
- `meter`: the generated 7-segment utility meter (frames, videos, schedules) of tests and benchmarks;
- `scoring`: SOURCES.md's rules (CER, exact lines, page matching);
- `devbroker`: a real mosquitto on loopback for tests and benchmarks;
- `options`: `edge-ocr bench`'s options, the standard library only: every command line is built with
  them.

The runtime never imports this package, and the command line only its `options`.
"""
