"""Watch the device: each camera's latest analysed frame with its regions, the folder sources, status.

`CameraView` is filled by the daemon on a camera's analysis thread and read by the routes; it keeps
one frame (a reference, not a copy: frames are never changed after capture) and encodes it to JPEG
only when asked, at most once per frame.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from edge_ocr import __version__
from edge_ocr.results import iso
from edge_ocr.web.errors import ApiError


class CameraView:
    def __init__(self, name: str, regions: Any) -> None:
        self.name = name
        self.regions = tuple(regions)  # edge_ocr.regions.Region
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bool, bytes] | None = None
        self._captured_at: float | None = None
        self._readings: dict[str, Any] = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._alignment: Any = None  # edge_ocr.alignment.Alignment of the frame shown

    def update(self, image: np.ndarray, captured_at: float, readings: dict[str, Any],
               messages: list[dict[str, Any]], alignment: Any = None) -> None:  # fmt: skip
        with self._lock:
            self._image, self._captured_at = image, captured_at
            self._seq += 1
            self._readings = dict(readings)
            self._alignment = alignment
            for m in messages:
                keep = ("text", "valid", "reason", "value", "unit", "confidence", "captured_at")
                self._values[m["region"]] = {k: m.get(k) for k in keep}

    def latest(self) -> tuple[np.ndarray | None, float | None]:
        """The frame last analysed and when it was captured (the setup page tests a region on it)."""
        with self._lock:
            return self._image, self._captured_at

    def _quad(self, region: Any, w: int, h: int, alignment: Any) -> list[list[float]]:
        """The region's corners on the frame as shown: regions are configured on the reference frame,
        so with alignment they are drawn where the re-aligned frame found them (the inverse warp)."""
        pts = np.asarray(region.quad(w, h), np.float64)
        matrix = getattr(alignment, "matrix", None)
        if matrix is not None:
            inverse = cv2.invertAffineTransform(matrix)
            pts = pts @ inverse[:, :2].T + inverse[:, 2]
        return [[round(float(x), 1), round(float(y), 1)] for x, y in pts]

    def jpeg(self, aligned: bool = False) -> bytes | None:
        """The frame as JPEG; `aligned`: warped onto the alignment reference, where regions are configured
        (the setup page draws them there), when the frame was aligned."""
        with self._lock:
            image, seq, cached, alignment = self._image, self._seq, self._jpeg, self._alignment
        if image is None:
            return None
        matrix = getattr(alignment, "matrix", None) if aligned else None
        if cached is not None and cached[:2] == (seq, matrix is not None):
            return cached[2]
        if matrix is not None:
            h, w = image.shape[:2]
            image = cv2.warpAffine(
                image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            return None
        data = buf.tobytes()
        with self._lock:
            self._jpeg = (seq, matrix is not None, data)
        return data

    def status(self) -> dict[str, Any]:
        with self._lock:
            image, captured_at, seq = self._image, self._captured_at, self._seq
            readings, values, alignment = self._readings, self._values, self._alignment
        h, w = image.shape[:2] if image is not None else (0, 0)
        regions = []
        for r in self.regions:
            pub = values.get(r.name)
            reading = readings.get(r.name)
            text = reading.text if reading is not None else None
            regions.append({
                "name": r.name,
                "mode": r.mode,
                "quad": self._quad(r, w, h, alignment) if w else None,
                "text": text,
                "confidence": round(reading.confidence, 4) if reading is not None else None,
                # What was last reported decides (a rule or the alignment may have rejected it).
                "valid": pub["valid"] if pub else (r.is_valid(text) if text else None),
                "reason": pub.get("reason") if pub else None,
                "published": pub,
            })  # fmt: skip
        return {
            "name": self.name,
            "frame": seq,
            "width": w,
            "height": h,
            "captured_at": iso(captured_at) if captured_at is not None else None,
            "regions": regions,
            "alignment": alignment.to_dict() if alignment is not None else None,
        }


def router() -> APIRouter:
    r = APIRouter(tags=["watch"])

    @r.get("/api/status", summary="Version, model set and precision per role, outbox, broker, uptime")
    def status(request: Request) -> dict[str, Any]:
        ctx = request.app.state.ctx
        st = dict(ctx.status())
        st.setdefault("version", __version__)
        st["api"] = request.app.state.ocr.snapshot()
        st["time"] = time.time()
        return st

    @r.get("/api/sources", summary="Folder sources: counts and the last results; camera sources: status")
    def sources(request: Request) -> dict[str, Any]:
        ctx = request.app.state.ctx
        st = ctx.status().get("sources") or {}
        recent = ctx.recent()
        cams = ctx.cameras()
        out: dict[str, Any] = {}
        for name, s in st.items():
            item = dict(s)
            if name in cams:
                item["type"] = "camera"
                item["view"] = cams[name].status()
            else:
                item.setdefault("type", "folder")
                item["recent"] = recent.get(name, [])
            out[name] = item
        return {"sources": out}

    @r.get("/api/cameras/{name}", summary="A camera's latest analysed frame: regions, values, validity")
    def camera(name: str, request: Request) -> dict[str, Any]:
        view = request.app.state.ctx.cameras().get(name)
        if view is None:
            raise ApiError(404, "not_found", f"no camera source {name!r}")
        return view.status()  # type: ignore[no-any-return]

    @r.get(
        "/api/cameras/{name}/frame.jpg",
        summary="The latest analysed frame of a camera (JPEG); aligned=true: warped onto its alignment "
        "reference, in the coordinates of its regions",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def frame(name: str, request: Request, aligned: bool = False) -> Response:
        view = request.app.state.ctx.cameras().get(name)
        if view is None:
            raise ApiError(404, "not_found", f"no camera source {name!r}")
        data = view.jpeg(aligned)
        if data is None:
            raise ApiError(404, "no_frame", f"camera {name!r} has not analysed a frame yet")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return r
