"""The one place onnxruntime sessions are created: CPU only, fixed threads, verified files."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import onnxruntime as ort

from edge_ocr.errors import InferenceError, ModelError
from edge_ocr.inference import graphcache
from edge_ocr.models import ModelFile

log = logging.getLogger(__name__)


def _options(threads: int, level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    if threads > 0:  # 0: onnxruntime's default (one thread per physical core)
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = level
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    return opts


def _session(path: Path, opts: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def create_session(model: ModelFile, threads: int = 1, cache_dir: Path | None = None) -> ort.InferenceSession:
    """Create a CPU session for an already sha256-verified model file.

    The memory arena and memory patterns are off: shapes vary per image, so an arena keeps growing
    with fragments (a shared kSameAsRequested arena: 212 MB peak RSS after 10 receipts, 303 MB after
    30), and memory patterns added 30 MB to the detector's peak for no speed. Without either, the
    peak stays put however many images a daemon reads.

    With a cache_dir, the graph onnxruntime optimizes for this machine is kept there (see
    graphcache) and later sessions load it as it is (engine built in 0.13 s instead of 0.26 s).
    A cache that cannot be written or read (full, read-only) only costs that time: the graph is then
    optimized in memory, and ModelError is raised only when the model fails to load without the cache.
    """
    if cache_dir is not None:
        cached = graphcache.lookup(cache_dir, model)
        if cached is not None:
            try:
                return _session(cached, _options(threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
            except Exception as exc:  # a graph this onnxruntime cannot load: rebuild it from the source
                log.warning(
                    "cached graph %s does not load (%s); optimizing %s again", cached, exc, model.path
                )
    opts = _options(threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    staged = graphcache.staging_path(cache_dir, model) if cache_dir is not None else None
    if staged is not None and cache_dir is not None:
        opts.optimized_model_filepath = str(staged)
        try:
            session = _session(model.path, opts)
        except Exception as exc:
            # onnxruntime writes the optimized graph at the end of loading and fails the whole load
            # when that write fails (a full disk: "INVALID_PROTOBUF : Protobuf serialization failed").
            # Only a load without the cache can tell a cache fault from a model fault.
            with contextlib.suppress(OSError):
                staged.unlink(missing_ok=True)
            session = _uncached(model, threads)
            graphcache.unusable(
                cache_dir, f"onnxruntime could not write the graph of {model.path.name}: {exc}"
            )
            return session
        graphcache.publish(cache_dir, model, staged)
        # The session that optimized the graph keeps more memory than one loading the optimized graph
        # (the default page engine's peak: 213 vs 197 MB over the 30 eval receipts, 13 MB more resident
        # for the life of the process): so the first start, too, runs from the cached graph.
        cached = graphcache.lookup(cache_dir, model)
        if cached is not None:
            with contextlib.suppress(Exception):  # keep the working session if this one does not load
                reloaded = _session(cached, _options(threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
                del session
                return reloaded
        return session
    return _uncached(model, threads)


def _uncached(model: ModelFile, threads: int) -> ort.InferenceSession:
    """Optimize in memory; a failure here is the model's (or this onnxruntime's), not the disk's."""
    try:
        return _session(model.path, _options(threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load {model.path}: {exc}") from exc


def run(session: ort.InferenceSession, feeds: dict) -> list:
    try:
        return session.run(None, feeds)
    except Exception as exc:
        raise InferenceError(f"inference failed: {exc}") from exc
