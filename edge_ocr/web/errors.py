"""The API's one error envelope: `{"request_id", "error": {"code", "message"}}` with an HTTP status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse


class ErrorBody(BaseModel):
    code: str = Field(description="What went wrong, for programs: bad_option, not_found, unauthorized, ...")
    message: str = Field(description="What went wrong, for people, naming the parameter when one is bad.")
    problems: list[dict[str, Any]] | None = Field(
        None, description="A configuration or region refused (422): each problem's key, line and message."
    )


class ErrorEnvelope(BaseModel):
    """The body of every error answer (for the OpenAPI spec; `envelope` writes it)."""

    request_id: str | None = Field(description="The request's id, also in the X-Request-ID header.")
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route whose errors are these statuses, each with the envelope's schema."""
    return {s: {"model": ErrorEnvelope, "description": "The error envelope"} for s in statuses}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 *, fields: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.fields = fields or {}  # more of `error` (e.g. `problems`: each bad key of a configuration)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "body_too_large", f"the request body is over the limit of {limit:,} bytes")


def envelope(request_id: str | None, status: int, code: str, message: str,
             headers: dict[str, str] | None = None,
             fields: dict[str, Any] | None = None) -> JSONResponse:  # fmt: skip
    error = {"code": code, "message": message, **(fields or {})}
    body: dict[str, Any] = {"request_id": request_id, "error": error}
    return JSONResponse(body, status_code=status, headers=headers)
