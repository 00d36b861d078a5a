"""The setup page's API: the configuration (read masked, written back with its comments, then reloaded), a
region tried on a camera's current frame before it is saved, the alignment reference and a meter's
remembered value.

- `GET /api/config`: the file as written (secrets masked: `edge_ocr.config.write`) and the configuration
  in force (`Config.redacted()`).
- `PUT /api/config` (JSON or YAML): merged into the file, validated by the loader of `edge-ocr config
  validate` (422 naming each key; nothing written), saved atomically beside `<file>.bak`, then the daemon
  reloads and the answer comes once the new configuration runs. A reload the daemon refuses puts the
  old file back (422). When the new `http:` section replaces this very server the answer (202) comes
  before the server stops.
- `POST /api/sources/{source}/test`, `.../capture`, `.../regions/{region}/value`.

Writes: the edge middleware already demands the bearer token on every /api/ path when one is set. A
server without a token is on loopback (the exposure rule); there a write must also come from a
loopback address name (a DNS-rebinding page gets its own host name in `Host`) and with a JSON or YAML
content type (a cross-site form can only send text/plain, urlencoded or multipart without a preflight).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import yaml
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from edge_ocr.config import ConfigFileError, RegionConfig
from edge_ocr.config.write import backup_path, masked_document, restore_backup, save
from edge_ocr.errors import ConfigError, ModelError
from edge_ocr.logs import redact
from edge_ocr.web.context import SetupHooks
from edge_ocr.web.errors import ApiError, error_responses
from edge_ocr.web.settings import is_loopback

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1024 * 1024
RELOAD_TIMEOUT_S = 120.0
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class TrialRequest(BaseModel):
    region: dict[str, Any] = Field(description="A region as in the configuration (name, box or polygon, "
                                   "numeric, charset, ...); it need not be saved.")  # fmt: skip


class CaptureRequest(BaseModel):
    reference: bool = Field(False, description="The next frame becomes the camera's alignment reference.")


class ValueRequest(BaseModel):
    value: float = Field(description="The meter's value now; the next readings are checked against it.")


class Problems(ApiError):
    """422 with each problem at its key (the envelope's message lists them too)."""

    def __init__(self, code: str, problems: list[dict[str, Any]], message: str | None = None) -> None:
        text = message or "; ".join(
            f"{p['key']}: {p['message']}" if p.get("key") else str(p["message"]) for p in problems
        )
        super().__init__(422, code, text, fields={"problems": problems})


def router() -> APIRouter:
    r = APIRouter(tags=["setup"])
    lock = threading.Lock()  # one Save at a time: merge, write and reload are one step

    @r.get("/api/config", summary="The configuration file (secrets masked) and the configuration in force",
           responses=error_responses(401, 409))
    def get_config(request: Request) -> dict[str, Any]:
        hooks = _hooks(request)
        path = hooks.config_path()
        running = json.loads(redact(json.dumps(hooks.running().redacted(), default=str)))
        try:
            document = masked_document(path) if path is not None else None
        except ConfigError as exc:
            raise ApiError(409, "config_unreadable", str(exc)) from exc
        return {"path": str(path) if path else None, "config": document, "running": running,
                "editable": path is not None}  # fmt: skip

    @r.put(
        "/api/config",
        summary="Validate, save (keeping comments, with <file>.bak) and reload; 422 names each bad key",
        responses=error_responses(401, 403, 409, 413, 415, 422, 504),
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        }}},
    )  # fmt: skip
    async def put_config(request: Request) -> Any:
        hooks = _hooks(request)
        _may_write(request, (*JSON_TYPES, *YAML_TYPES))
        path = hooks.config_path()
        if path is None:
            raise ApiError(409, "no_config_file", "the daemon runs on its embedded default configuration; "
                           "start it with --config FILE to edit the configuration here")  # fmt: skip
        body = await _body(request, MAX_CONFIG_BYTES)
        data = _parse(body, request.headers.get("content-type", ""))
        return await run_in_threadpool(_save_and_reload, hooks, Path(path), data, lock)

    @r.post("/api/sources/{source}/test", summary="A region read on the camera's current frame, not saved",
            responses=error_responses(401, 403, 404, 409, 415, 422))
    def try_region(source: str, body: TrialRequest, request: Request) -> dict[str, Any]:
        hooks = _hooks(request)
        _may_write(request, JSON_TYPES)
        region = _region(body.region, hooks)
        try:
            trial = hooks.try_region(source, region)
        except LookupError as exc:
            raise ApiError(404, "no_frame", str(exc)) from exc
        except ModelError as exc:
            raise ApiError(409, "model_not_loaded", str(exc)) from exc
        ok, png = cv2.imencode(".png", trial.crop)
        return {
            "source": source,
            "region": region.name,
            "text": trial.text,
            "confidence": round(trial.confidence, 4),
            "char_confidences": [round(c, 4) for c in trial.char_confidences],
            "value": trial.value,
            "last_value": trial.last_value,
            "unit": region.numeric.unit if region.numeric else None,
            "valid": trial.valid,
            "reason": trial.reason,
            "detail": trial.detail,
            "alignment": trial.alignment,
            "crop_png": base64.b64encode(png.tobytes()).decode() if ok else None,
            "crop_size": [int(trial.crop.shape[1]), int(trial.crop.shape[0])],
            "advice": trial.advice,
        }

    @r.post("/api/sources/{source}/capture", summary="Read the next frame now; with reference, make it the "
            "alignment reference (cmd/capture)", responses=error_responses(401, 403, 404, 409, 415, 422))
    def capture(source: str, request: Request, body: CaptureRequest | None = None) -> dict[str, Any]:
        hooks = _hooks(request)
        _may_write(request, JSON_TYPES, body_optional=True)
        args: dict[str, Any] = {"source": source}
        if body is not None and body.reference:
            args["reference"] = True
        return _command(hooks, "capture", args)

    @r.post("/api/sources/{source}/regions/{region}/value",
            summary="Set a numeric region's remembered value (cmd/set_value)",
            responses=error_responses(401, 403, 404, 409, 415, 422))  # fmt: skip
    def set_value(source: str, region: str, body: ValueRequest, request: Request) -> dict[str, Any]:
        hooks = _hooks(request)
        _may_write(request, JSON_TYPES)
        return _command(hooks, "set_value", {"source": source, "region": region, "value": body.value})

    return r


# --------------------------------------------------------------------------------------------- helpers


def _hooks(request: Request) -> SetupHooks:
    hooks: SetupHooks | None = request.app.state.ctx.setup
    if hooks is None:
        raise ApiError(409, "not_available", "this server runs no daemon configuration (edge-ocr serve): "
                       "nothing to set up here")  # fmt: skip
    return hooks


def _may_write(request: Request, types: tuple[str, ...], *, body_optional: bool = False) -> None:
    """Without a token, only a loopback page may write, with a content type a form cannot send."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in types and not (body_optional and not ctype):
        raise ApiError(415, "unsupported_media_type", f"send the body as {' or '.join(types)}")
    if request.app.state.ctx.settings.token:
        return  # the middleware checked it
    host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    origin = request.headers.get("origin")
    origin_host = urlsplit(origin).hostname if origin else None
    allowed = set(request.app.state.ctx.settings.cors_origins)
    if not is_loopback(host) or (origin and origin not in allowed and not is_loopback(origin_host or "")):
        raise ApiError(403, "forbidden", "without a token, changes are accepted from a loopback address "
                       "only (http://127.0.0.1:PORT/); set http.token_file to change it from elsewhere")


async def _body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, "body_too_large", f"a configuration is at most {limit:,} bytes")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "body_too_large", f"a configuration is at most {limit:,} bytes")
    return data


def _parse(body: bytes, ctype: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problems("invalid_config", [{"key": "", "line": None, "message": "not UTF-8"}]) from exc
    as_json = ctype.split(";")[0].strip().lower() in JSON_TYPES
    try:
        data = json.loads(text) if as_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise Problems("invalid_config", [{"key": "", "line": None, "message": f"not valid: {exc}"}]) from exc
    if not isinstance(data, dict):
        raise Problems("invalid_config", [{"key": "", "line": None,
                                           "message": "the configuration is a mapping of keys"}])  # fmt: skip
    return data


def _save_and_reload(hooks: SetupHooks, path: Path, data: dict[str, Any], lock: threading.Lock) -> Any:
    """On a worker thread: the reload may take seconds (cameras restart), never on the event loop."""
    with lock:
        try:
            _, changed = save(path, data)
        except ConfigFileError as exc:
            problems = [{"key": p.key, "line": p.line, "message": p.message} for p in exc.problems]
            raise Problems("invalid_config", problems) from exc
        except ConfigError as exc:
            raise ApiError(500, "cannot_write", str(exc)) from exc
        answer: dict[str, Any] = {"path": str(path), "backup": str(backup_path(path)), "changed": changed}
        if not changed:
            return {**answer, "reloaded": False}
        log.warning("configuration %s changed from the page; reloading", path)
        try:
            outcome = hooks.reload(RELOAD_TIMEOUT_S)
        except TimeoutError as exc:
            raise ApiError(504, "reload_timeout", f"saved, but {exc}") from exc
        if outcome == "restarting":
            message = "the HTTP server restarts with its new settings (or stops, if http is now off)"
            return JSONResponse({**answer, "reloaded": "restarting", "message": message}, status_code=202)
        if outcome is not None:
            restore_backup(path)
            raise Problems("reload_refused", [{"key": "", "line": None, "message": outcome}],
                           f"{outcome}; the previous file is back in place")  # fmt: skip
        return {**answer, "reloaded": True}


def _region(data: dict[str, Any], hooks: SetupHooks) -> RegionConfig:
    """The posted region validated by the schema, each problem at `region.<key>`."""
    path = hooks.config_path()
    context = {"base_dir": path.parent if path is not None else Path.cwd()}
    try:
        region = RegionConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [{"key": ".".join(["region", *map(str, e["loc"])]), "line": None, "message": e["msg"]}
                    for e in exc.errors()]  # fmt: skip
        raise Problems("invalid_region", problems) from exc
    rules = region.rules().problems
    if rules:
        raise Problems("invalid_region", [{"key": ".".join(["region", *map(str, key)]), "line": None,
                                           "message": message} for key, message in rules])  # fmt: skip
    return region


def _command(hooks: SetupHooks, verb: str, args: dict[str, Any]) -> dict[str, Any]:
    reply = hooks.command(verb, args) or {"ok": True}
    if not reply.get("ok"):
        message = str(reply.get("error") or f"{verb} refused")
        status = 404 if message.startswith("no camera") else 422
        raise ApiError(status, "refused", message)
    return reply
