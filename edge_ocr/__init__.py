"""edge-ocr: on-device OCR daemon (hot folder / camera -> ONNX OCR -> durable outbox -> MQTT)."""

__version__ = "0.1.0"
