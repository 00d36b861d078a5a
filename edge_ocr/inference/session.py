"""The one place onnxruntime sessions are created: CPU only, fixed threads, verified files."""

from __future__ import annotations

import onnxruntime as ort

from edge_ocr.errors import InferenceError, ModelError
from edge_ocr.models import ModelFile


def create_session(model: ModelFile, threads: int = 1) -> ort.InferenceSession:
    """Create a CPU session for an already sha256-verified model file.

    The memory arena and memory patterns are off: shapes vary per image, so an arena keeps growing
    with fragments (a shared kSameAsRequested arena: 212 MB peak RSS after 10 receipts, 303 MB after
    30), and memory patterns added 30 MB to the detector's peak for no speed. Without either, the
    peak stays put however many images a daemon reads.
    """
    opts = ort.SessionOptions()
    if threads > 0:  # 0: onnxruntime's default (one thread per physical core)
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model.path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load {model.path}: {exc}") from exc


def run(session: ort.InferenceSession, feeds: dict) -> list:
    try:
        return session.run(None, feeds)
    except Exception as exc:
        raise InferenceError(f"inference failed: {exc}") from exc
