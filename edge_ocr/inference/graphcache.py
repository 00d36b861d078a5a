"""Optimized graphs, cached per machine, so a restart skips onnxruntime's graph optimization.

Optimizing the graphs is most of the engine's session start-up: on the bench machine det 40 ms,
rec 98, cls 25 (an INT8 QDQ detector took 241); loading the already optimized graphs without
optimization takes 16, 24 and 9 ms and gives bit-identical outputs. The fully optimized graph holds
layout transforms chosen for this CPU (NCHWc blocks sized for its vector unit), so it is only valid
on the machine that made it: the cache
key is the source model's sha256, the onnxruntime version, the architecture and the CPU's feature
flags. A cached file is written atomically with a sidecar holding its own sha256 and is checked
against it before it is loaded; a torn write after a power cut (SD cards) is then rebuilt, not loaded.

The cache only ever saves start-up time. A cache folder that is full, read-only, not ours or gone
(ENOSPC, EROFS, EACCES, a short write) must not stop the engine: the caller then optimizes in memory,
and `unusable` logs one warning naming the folder and its free space, once until the cache works
again (the engine asks for three sessions at each start; one warning says it all). A staging file is
not even attempted where the free space could not plausibly hold the graph (see `STAGING_FACTOR`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import threading
from functools import lru_cache
from pathlib import Path

import onnxruntime as ort

from edge_ocr.models import ModelFile, sha256_file

log = logging.getLogger(__name__)

# A staged graph is only attempted with this many times the source model's size free: the fused FP32
# graphs optimize to about their source size (NCHWc reorders add a little), and writing the last bytes
# of a filesystem would starve the outbox living beside the cache in state_dir.
STAGING_FACTOR = 3

_warned_lock = threading.Lock()
_warned: set[str] = set()  # cache folders reported unusable, until a graph is written there again


def free_bytes(path: Path) -> int | None:
    """Free bytes for unprivileged writers on the filesystem holding `path` (or its nearest parent)."""
    for p in (path, *path.parents):
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize
    return None


def _mb(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:.1f} MB"


def unusable(cache_dir: Path, why: str) -> None:
    """Report, once until the cache works again, that optimized graphs cannot be cached in cache_dir."""
    key = str(cache_dir)
    with _warned_lock:
        if key in _warned:
            log.debug("graph cache %s still unusable: %s", cache_dir, why)
            return
        _warned.add(key)
    log.warning(
        "graph cache %s cannot be used (%s; %s free there): the engine optimizes its graphs in memory, "
        "which only makes start-up slower",
        cache_dir,
        why,
        _mb(free_bytes(cache_dir)),
    )


def _usable_again(cache_dir: Path) -> None:
    with _warned_lock:
        if str(cache_dir) in _warned:
            _warned.discard(str(cache_dir))
            log.info("graph cache %s works again", cache_dir)


def default_cache_dir() -> Path:
    """$EDGE_OCR_CACHE, else $XDG_CACHE_HOME/edge-ocr/graphs, else ~/.cache/edge-ocr/graphs."""
    env = os.environ.get("EDGE_OCR_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-ocr" / "graphs"


@lru_cache(maxsize=1)
def machine_signature() -> str:
    """Architecture + CPU feature flags (x86 `flags`, ARM `Features`): what the optimizer tunes for."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    raw = f"{platform.machine()}|{flags}|onnxruntime {ort.__version__}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _paths(cache_dir: Path, model: ModelFile) -> tuple[Path, Path]:
    stem = f"{model.path.stem}-{model.sha256[:16]}-{machine_signature()}"
    return cache_dir / f"{stem}.ort.onnx", cache_dir / f"{stem}.json"


def lookup(cache_dir: Path, model: ModelFile) -> Path | None:
    """The cached optimized graph of a verified model, if present and intact."""
    graph, sidecar = _paths(cache_dir, model)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("source_sha256") == model.sha256 and sha256_file(graph) == meta.get("sha256"):
            return graph
    except (OSError, ValueError):
        return None
    log.warning("cached graph %s does not match its checksum; rebuilding it", graph)
    try:
        for p in (graph, sidecar):
            p.unlink(missing_ok=True)
    except OSError as exc:  # a read-only cache: the damaged file stays, and is never loaded
        unusable(cache_dir, f"cannot remove the damaged {graph.name}: {exc.strerror or exc}")
    return None


def staging_path(cache_dir: Path, model: ModelFile) -> Path | None:
    """Where onnxruntime may write a new optimized graph, or None when the cache cannot take it."""
    graph, _ = _paths(cache_dir, model)
    try:
        need = STAGING_FACTOR * model.path.stat().st_size
    except OSError:
        need = 0
    free = free_bytes(cache_dir)
    if free is not None and free < need:
        # onnxruntime would fail at the end of the optimization ("Protobuf serialization failed"):
        # skip the doomed attempt and the time it costs.
        unusable(cache_dir, f"{model.path.name} needs about {_mb(need)}")
        return None
    tmp = graph.with_name(f".{graph.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.touch()
        return tmp
    except OSError as exc:
        unusable(cache_dir, exc.strerror or str(exc))
        return None


def _prune(cache_dir: Path, model: ModelFile, keep: set[str]) -> None:
    """Drop this model file's graphs for other sources or machines: upgrades must not pile them up."""
    for old in cache_dir.glob(f"{model.path.stem}-*"):
        if old.name not in keep and old.suffix in (".onnx", ".json"):
            old.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write, fsync and rename into place: a power cut leaves the old file or the new one, never a torn
    one (SD cards). On failure the temporary file is removed and the OSError raised."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def publish(cache_dir: Path, model: ModelFile, staged: Path) -> None:
    """Move a graph onnxruntime wrote to `staged` into the cache (graph first, then its sidecar)."""
    graph, sidecar = _paths(cache_dir, model)
    try:
        if staged.stat().st_size == 0:
            raise OSError("onnxruntime wrote nothing")
        meta = {"sha256": sha256_file(staged), "source": model.path.name, "source_sha256": model.sha256,
                "onnxruntime": ort.__version__, "machine": platform.machine()}  # fmt: skip
        with open(staged, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(staged, graph)
        write_json_atomic(sidecar, meta)
        _prune(cache_dir, model, keep={graph.name, sidecar.name})
    except OSError as exc:
        unusable(cache_dir, f"cannot store the graph of {model.path.name}: {exc.strerror or exc}")
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        return
    _usable_again(cache_dir)
