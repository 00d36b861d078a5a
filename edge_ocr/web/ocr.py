"""`POST /api/ocr` and `GET /api/ocr/options`: an image in, the result message out.

The answer is the message MQTT and `edge-ocr ocr --json` carry (`results.result_message`), plus
`request_id`, `width`, `height` (of the decoded, EXIF-rotated image the boxes refer to) and `cached`.

Admission: at most `workers + queue_size` requests are decoded, waiting or running; one more is
answered 429 with Retry-After. Every request has a deadline from its arrival; past it: 504 (a request
that has not started is dropped; one already running finishes and fills the cache). Decoding and
inference run on the API's own threads, never on the event loop, and take engine slots through the
gate, in turn with the folder and the cameras.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from edge_ocr.decode import decode, sniff
from edge_ocr.errors import ImageTooLargeError, InputError
from edge_ocr.results import message_id, result_message
from edge_ocr.types import OcrResult
from edge_ocr.web.cache import ResultCache
from edge_ocr.web.errors import ApiError, BodyTooLarge

# What we read; curl's --data-binary without -H sends application/x-www-form-urlencoded, so that and
# application/octet-stream are taken as raw bytes whose format is read from their magic.
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/x-ms-bmp", "image/tiff", "image/webp")
RAW_TYPES = ("application/octet-stream", "application/x-www-form-urlencoded")


class OcrOptions(BaseModel):
    """Options of one request, from the query string or the form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: bool = Field(False, description="The image is one text line: no detection, the box is the image.")
    cls: bool | None = Field(None, description="Run the 0/180 degree classifier (default: as configured).")
    min_confidence: float | None = Field(
        None, ge=0, le=1,
        description="Move a line whose mean or weakest character probability is below this out of the text, "
        "into `rejected` with its reason, as a camera region's min_confidence does.",
    )
    model_set: str | None = Field(None, description="Must name the model set this device runs, if given.")


class OcrService:
    """Admission, the deadline, the cache and the worker threads of the OCR API."""

    def __init__(self, ctx: Any, metrics: Any) -> None:
        self.ctx = ctx
        s = ctx.settings
        self.settings = s
        self.cache = ResultCache(s.cache_entries)
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=max(1, s.workers), thread_name_prefix="api")
        self._lock = threading.Lock()
        self.pending = 0  # admitted and not finished (decoding, waiting for a slot or running)
        self._latency = 2.0  # seconds per request, smoothed: what Retry-After is made of
        self._no_cls: tuple[int, Any] | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def snapshot(self) -> dict[str, Any]:
        return {"pending": self.pending, "capacity": self.capacity, "cache_entries": len(self.cache),
                "cache_hits": self.cache.hits, "gate": self.ctx.gate.snapshot()}  # fmt: skip

    @property
    def capacity(self) -> int:
        return max(1, self.settings.workers) + max(0, self.settings.queue_size)

    # ---------------------------------------------------------------- on the event loop

    async def handle(self, request: Request, query: OcrOptions) -> dict[str, Any]:
        arrived = time.monotonic()
        rid = request.state.request_id
        engine = self.ctx.engine()
        if engine is None:
            raise ApiError(503, "not_ready", "the OCR engine is not ready (loading models or stopping)",
                           {"Retry-After": "5"})  # fmt: skip
        data, declared, filename, opts = await self._read(request, query)
        if opts.model_set is not None and opts.model_set != engine.model_set:
            raise ApiError(422, "bad_option",
                           f"model_set {opts.model_set!r}: this device runs {engine.model_set!r} "
                           "(one model set in memory; change engine.model_set in the config)")  # fmt: skip
        if not data:
            raise ApiError(400, "empty_image", "the image is empty (0 bytes)")
        try:
            sniff(data)
        except InputError as exc:
            if declared in IMAGE_TYPES:
                raise ApiError(400, "undecodable_image", f"{exc} (declared {declared})") from exc
            raise ApiError(415, "unsupported_media_type", str(exc)) from exc
        sha = hashlib.sha256(data).hexdigest()
        use_cls = engine.settings.use_cls if opts.cls is None else opts.cls
        key = (sha, opts.line, use_cls, opts.min_confidence, engine.model_set, self.settings.max_pixels)
        hit = self.cache.get(key)
        if hit is not None:
            self.metrics.cache_hits.inc()
            # The same answer; only what names this request differs (id and file follow the file name).
            mid = message_id(self.settings.device_id, "api", filename or "", sha)
            return {**hit, "id": mid, "file": filename, "request_id": rid, "cached": True}
        with self._lock:
            if self.pending >= self.capacity:
                retry = max(1, math.ceil(self._latency * self.pending / max(1, self.settings.workers)))
                raise ApiError(429, "busy", f"{self.pending} requests are in hand; try again in {retry} s",
                               {"Retry-After": str(retry)})  # fmt: skip
            self.pending += 1
        deadline = arrived + self.settings.deadline_s
        fut = self._pool.submit(self._work, engine, data, opts, use_cls, deadline)
        fut.add_done_callback(self._finished)
        try:
            result, decode_ms, wait_ms = await asyncio.wait_for(
                asyncio.wrap_future(fut), max(0.001, deadline - time.monotonic())
            )
        except (asyncio.TimeoutError, _Deadline) as exc:
            raise ApiError(504, "deadline", f"no answer within the deadline of {self.settings.deadline_s:g} s"
                           " (the engine is busy)") from exc  # fmt: skip
        took = time.monotonic() - arrived
        with self._lock:
            self._latency = 0.8 * self._latency + 0.2 * took
        msg = result_message(
            msg_id=message_id(self.settings.device_id, "api", filename or "", sha),
            device_id=self.settings.device_id,
            source="api",
            file=filename,
            sha256=sha,
            captured_at=None,
            model=dict(engine.models),
            result=result,
        )
        msg["timings_ms"].update(decode=round(decode_ms, 2), queue=round(wait_ms, 2))
        msg.update(width=result.width, height=result.height, cached=False)
        self.cache.put(key, msg)
        return {**msg, "request_id": rid}

    def _finished(self, _fut: Any) -> None:
        with self._lock:
            self.pending -= 1

    async def _read(self, request: Request, query: OcrOptions) -> tuple[bytes, str, str | None, OcrOptions]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            return await self._read_form(request, query)
        if ctype not in IMAGE_TYPES and ctype not in RAW_TYPES:
            raise ApiError(415, "unsupported_media_type",
                           f"Content-Type {ctype or '(none)'!r} is not read here: send an image body "
                           "(image/jpeg, image/png, image/bmp, image/tiff, image/webp) or "
                           "multipart/form-data with a `file` part")  # fmt: skip
        chunks = []
        async for chunk in request.stream():
            chunks.append(chunk)
        return b"".join(chunks), ctype, None, query

    async def _read_form(
        self, request: Request, query: OcrOptions
    ) -> tuple[bytes, str, str | None, OcrOptions]:
        try:
            form = await request.form(max_files=1, max_fields=8)
        except BodyTooLarge:
            raise
        except Exception as exc:  # python-multipart's and Starlette's parse errors
            raise ApiError(400, "bad_form", f"the multipart form cannot be read: {exc}") from exc
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "no_file", "the form has no `file` part (curl -F file=@image.jpg)")
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
            try:
                opts = OcrOptions.model_validate({**query.model_dump(exclude_unset=True), **fields})
            except ValidationError as exc:
                raise ApiError(422, "bad_option", _validation_message(exc)) from exc
            part_type = (upload.content_type or "").split(";")[0].strip().lower()
            if part_type.startswith("image/") and part_type not in IMAGE_TYPES:
                raise ApiError(415, "unsupported_media_type", f"the file part is {part_type}, not read here")
            data = await upload.read()
            return data, part_type, (upload.filename or None), opts
        finally:
            await form.close()

    # ---------------------------------------------------------------- on an API thread

    def _engine_for(self, engine: Any, use_cls: bool) -> Any:
        if use_cls or getattr(engine, "_cls", None) is None:
            if use_cls and getattr(engine, "_cls", None) is None:
                raise _Unsupported("cls: this device's engine runs without the classifier (engine.use_cls)")
            return engine
        # The same sessions without the classifier: an Engine is immutable after construction, so a
        # shallow copy shares the models (no second copy in memory).
        cached = self._no_cls
        if cached is None or cached[0] != id(engine):
            twin = copy.copy(engine)
            twin._cls = None
            cached = self._no_cls = (id(engine), twin)
        return cached[1]

    def _work(self, engine: Any, data: bytes, opts: OcrOptions, use_cls: bool,
              deadline: float) -> tuple[OcrResult, float, float]:  # fmt: skip
        if time.monotonic() >= deadline:
            raise _Deadline()
        t0 = time.perf_counter()
        image = decode(data, max_pixels=self.settings.max_pixels)
        decode_ms = (time.perf_counter() - t0) * 1000
        eng = self._engine_for(engine, use_cls)
        t1 = time.perf_counter()
        if not self.ctx.gate.acquire("api", max(0.0, deadline - time.monotonic())):
            raise _Deadline()
        try:
            wait_ms = (time.perf_counter() - t1) * 1000
            result = eng.run_line(image) if opts.line else eng.run(image)
        finally:
            self.ctx.gate.release()
        if opts.min_confidence is not None:
            # The rule of a camera region's min_confidence and of `edge-ocr ocr --min-confidence`: the
            # weakest character counts as well as the mean, and what is held back is listed, not dropped.
            result = result.sure(opts.min_confidence)
        return result, decode_ms, wait_ms


class _Deadline(Exception):
    pass


class _Unsupported(Exception):
    pass


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors())


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_REQUEST_BODY = {
    "required": True,
    "content": {
        **{t: _BINARY for t in ("image/jpeg", "image/png", "image/webp", "image/tiff", "image/bmp",
                                "application/octet-stream")},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "line": {"type": "boolean"},
                    "cls": {"type": "boolean"},
                    "min_confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "model_set": {"type": "string"},
                },
            }
        },
    },
}  # fmt: skip
_ERROR = {"description": "The error envelope: {request_id, error: {code, message}}"}


def router() -> APIRouter:
    r = APIRouter(tags=["ocr"])

    @r.post(
        "/api/ocr",
        summary="Read the text of an image: the result message plus request_id, width, height, cached",
        openapi_extra={"requestBody": _REQUEST_BODY},
        responses={code: _ERROR for code in (400, 401, 413, 415, 422, 429, 503, 504)},
    )
    async def ocr(
        request: Request,
        line: bool = Query(False, description="The image is one text line (no detection)."),
        cls: bool | None = Query(None, description="Run the 0/180 degree classifier (default: configured)."),
        min_confidence: float | None = Query(
            None, ge=0, le=1, description="Lines less sure (mean or weakest character) go to rejected."
        ),
        model_set: str | None = Query(None, description="Must be the model set this device runs."),
    ) -> dict[str, Any]:
        given = {k: v for k, v in {"line": line, "cls": cls, "min_confidence": min_confidence,
                                    "model_set": model_set}.items() if k in request.query_params}  # fmt: skip
        service: OcrService = request.app.state.ocr
        try:
            return await service.handle(request, OcrOptions(**given))
        except _Unsupported as exc:
            raise ApiError(422, "bad_option", str(exc)) from exc
        except ImageTooLargeError as exc:
            raise ApiError(413, "image_too_large", str(exc)) from exc
        except InputError as exc:
            raise ApiError(400, "undecodable_image", str(exc)) from exc

    @r.get("/api/ocr/options", summary="The options of POST /api/ocr and the limits of this device")
    def options(request: Request) -> dict[str, Any]:
        s = request.app.state.ctx.settings
        engine = request.app.state.ctx.engine()
        schema = OcrOptions.model_json_schema()
        return {
            "options": schema["properties"],
            "content_types": [*IMAGE_TYPES, *RAW_TYPES, "multipart/form-data (part `file`)"],
            "limits": {
                "max_body_bytes": s.max_body_bytes,
                "max_pixels": s.max_pixels,
                "queue_size": s.queue_size,
                "workers": s.workers,
                "deadline_s": s.deadline_s,
                "cache_entries": s.cache_entries,
            },
            "engine": None if engine is None else {
                "model_set": engine.model_set, "use_cls": engine.settings.use_cls,
                "min_confidence": engine.settings.min_confidence, "model": engine.models,
            },
        }  # fmt: skip

    return r
