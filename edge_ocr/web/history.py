"""`GET /api/history`: the published readings of the camera regions, as JSON or CSV.

The daemon keeps them (edge_ocr.history); this router only filters and formats. Reading runs on the
server's worker threads (a sync route), with its own SQLite connection: a long export never waits for,
or holds up, the camera that writes.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from edge_ocr.history import COLUMNS, HistoryError, Reading
from edge_ocr.results import iso
from edge_ocr.web.errors import ApiError, error_responses

MAX_LIMIT = 100_000
# A cell a spreadsheet would run as a formula (CSV injection): text read off a camera is not trusted.
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class HistoryReading(BaseModel):
    time: str = Field(description="When the frame was captured (ISO 8601, UTC).")
    source: str = Field(description="The camera source.")
    region: str = Field(description="The region of the camera.")
    text: str = Field(description="What was read.")
    value: float | None = Field(description="The accepted number of a numeric region; null when rejected.")
    valid: bool = Field(description="Whether the region's rules accepted the reading.")
    reason: str | None = Field(description="The rule that rejected it (null when valid).")
    confidence: float | None = Field(description="The reader's confidence, 0 to 1.")
    unit: str | None = Field(description="The numeric region's unit.")


class HistoryPage(BaseModel):
    count: int = Field(description="Readings in this answer.")
    truncated: bool = Field(description="More readings matched: these are the newest `limit` of them.")
    readings: list[HistoryReading] = Field(description="Oldest first.")


def _epoch(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and _FORMULA.match(value) and not _NUMBER.match(value):
        return "'" + value
    return value


def _row(r: Reading) -> dict[str, Any]:
    return {"time": iso(r.t), "source": r.source, "region": r.region, "text": r.text, "value": r.value,
            "valid": r.valid, "reason": r.reason, "confidence": r.confidence, "unit": r.unit}  # fmt: skip


def to_csv(readings: list[Reading]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for r in readings:
        row = _row(r)
        row["valid"] = "true" if r.valid else "false"
        writer.writerow([_cell(row[c]) if row[c] is not None else "" for c in COLUMNS])
    return out.getvalue()


def router() -> APIRouter:
    r = APIRouter(tags=["history"])

    @r.get(
        "/api/history",
        summary="The published readings of the camera regions (valid or not), as JSON or CSV",
        response_model=HistoryPage,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "JSON (HistoryPage) or, with format=csv, one row per reading: "
                + ",".join(COLUMNS),
            },
            **error_responses(401, 404, 422, 503),
        },  # fmt: skip
    )
    def history(
        request: Request,
        source: Annotated[str | None, Query(description="Only this camera source.")] = None,
        region: Annotated[str | None, Query(description="Only this region.")] = None,
        since: Annotated[
            datetime | None, Query(description="From this time on (ISO 8601; UTC if no zone).")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="Up to this time (ISO 8601; UTC if no zone).")
        ] = None,
        format: Annotated[
            Literal["json", "csv"], Query(description="json, or csv (a file download).")
        ] = "json",
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="The newest this many readings, at most.")
        ] = 10_000,
    ) -> Any:
        try:
            start, end = _epoch(since), _epoch(until)
        except (OverflowError, ValueError, OSError) as exc:
            raise ApiError(422, "bad_option", f"since/until: not a time this device can use ({exc})") from exc
        if start is not None and end is not None and start > end:
            raise ApiError(422, "bad_option", "since: must not be after until")
        store = request.app.state.ctx.history()
        if store is None:
            raise ApiError(404, "no_history", "no history here: history.enabled is false, the state "
                           "folder is full, or this is `edge-ocr serve` (which reads no camera)")  # fmt: skip
        try:
            readings, more = store.query(source=source, region=region, since=start, until=end, limit=limit)
        except HistoryError as exc:
            raise ApiError(503, "history_unavailable", str(exc)) from exc
        if format == "csv":
            name = "-".join(["history", *(x for x in (source, region) if x)])
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            return Response(to_csv(readings), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                                     "Cache-Control": "no-store"})  # fmt: skip
        return {"count": len(readings), "truncated": more, "readings": [_row(x) for x in readings]}

    return r
