"""What the daemon's rooms read out of a Config: engine and folder settings, the Home Assistant sensors
of the camera regions, the folders the storage guard watches. Pure functions, no state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_ocr.config import CameraSource as CameraConfig
from edge_ocr.config import Config
from edge_ocr.config import FolderSource as FolderConfig
from edge_ocr.pipeline import EngineSettings
from edge_ocr.publish.homeassistant import RegionSensor
from edge_ocr.results import safe_topic_level

if TYPE_CHECKING:
    from edge_ocr.sources.folder import FolderSettings


def engine_settings(cfg: Config) -> EngineSettings:
    e = cfg.engine
    kwargs: dict[str, Any] = {
        "threads": e.threads,
        "use_cls": e.use_cls,
        "precision": e.precision,
        "model_set": e.model_set,
        # The service's home may be read-only (ProtectHome=): optimized graphs live with its state.
        "graph_cache": cfg.state_dir / "graphs",
    }
    if e.models_dir is not None:
        kwargs["models_dir"] = e.models_dir
    kwargs["general"], kwargs["meter"] = readers_needed(cfg)
    # Only pages are turned: a daemon that reads cameras alone loads no orientation model.
    kwargs["orientation"] = e.page_orientation and reads_pages(cfg)
    kwargs["orientation_min_confidence"] = e.orientation_min_confidence
    return EngineSettings(**kwargs)


def reads_pages(cfg: Config) -> bool:
    """Whether whole pages come in: a folder (or any non-camera source), or the API's POST /api/ocr."""
    folders = any(not isinstance(src, CameraConfig) for src in cfg.sources)
    return folders or bool(cfg.http.enabled and cfg.http.api)


def readers_needed(cfg: Config) -> tuple[bool, bool]:
    """(general, meter): which models this config reads with. Folders, text regions and the API need
    the general models; a device that only reads meters loads the meter model alone (about 100 MB less).
    A camera with the page on needs both: its Setup tab tests a region, numeric or not, before it is
    saved (the meter model is a few MB and ships in the package)."""
    readers = {r.reader() for src in cfg.sources if isinstance(src, CameraConfig) for r in src.regions}
    cameras = any(isinstance(src, CameraConfig) for src in cfg.sources)
    cameras_whole = any(isinstance(src, CameraConfig) and not src.regions for src in cfg.sources)
    others = any(not isinstance(src, CameraConfig) for src in cfg.sources)
    page = bool(cfg.http.enabled and cfg.http.api)
    general = others or cameras_whole or "general" in readers or page
    return general or not readers, "meter" in readers or (page and cameras)


def folder_settings(src: Any) -> FolderSettings:
    # Imported here: `edge-ocr serve` reads engine_settings and needs no watchdog (the daemon extra).
    from edge_ocr.sources.folder import FolderSettings

    return FolderSettings(
        name=src.name,
        path=src.path,
        done_dir=src.done_dir,
        failed_dir=src.failed_dir,
        on_success=src.on_success,
        poll=src.poll,
        poll_interval_s=src.poll_interval_s,
        stable_s=src.stable_s,
        settle_s=min(src.settle_s, src.stable_s),
        rescan_s=src.rescan_s,
        recursive=src.recursive,
        include=tuple(src.include),
        exclude=tuple(src.exclude),
        max_bytes=int(src.max_file_mb * 1024 * 1024),
    )


def region_sensors(cfg: Config) -> list[RegionSensor]:
    """The Home Assistant sensor of every camera region whose `homeassistant.enabled` holds."""
    out = []
    for src in cfg.sources:
        if not isinstance(src, CameraConfig):
            continue
        for r in src.regions:
            ha, num = r.homeassistant, r.numeric
            if not ha.enabled:
                continue
            state_class = ha.state_class
            if state_class is None and num is not None:
                state_class = "total_increasing" if num.monotonic == "increasing" else "measurement"
            out.append(
                RegionSensor(
                    source=safe_topic_level(src.name),
                    region=safe_topic_level(r.name),
                    numeric=num is not None,
                    unit=num.unit if num else None,
                    device_class=ha.device_class,
                    state_class=state_class,
                    name=ha.name,
                    icon=ha.icon,
                    precision=num.decimals if num else None,
                )  # fmt: skip
            )
    return out


def storage_places(cfg: Config) -> list[tuple[str, str, Path]]:
    """The folders the daemon writes to, as the storage guard names them."""
    places: list[tuple[str, str, Path]] = [("state", "state_dir", cfg.state_dir)]
    for src in cfg.sources:
        if isinstance(src, FolderConfig):
            if src.on_success == "move" and src.done_dir is not None:
                places.append((f"done:{src.name}", f"done_dir of {src.name}", src.done_dir))
            if src.failed_dir is not None:
                places.append((f"failed:{src.name}", f"failed_dir of {src.name}", src.failed_dir))
    return places


def history_places(cfg: Config) -> list[tuple[str, str, Path, str]]:
    """The history's folder, a best-effort place of the storage guard (nothing waits for it)."""
    if not cfg.history.enabled:
        return []
    skipped = "readings are published but not kept in the history"
    return [("history", "history in state_dir", cfg.history_path.parent, skipped)]


def source_keys(src: FolderConfig) -> tuple[str, ...]:
    """The storage guard's keys of the folders a folder source writes to."""
    return ("state", f"done:{src.name}", f"failed:{src.name}")
