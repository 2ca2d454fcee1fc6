"""The REST API's request and response models, and the checks of a request against the
served model's contract (horizon, exogenous columns and values, series ids), each refusal
a ``RequestError`` with the HTTP status and a message naming the field."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_BODY_BYTES = 1_000_000
MAX_EXOG_ROWS = 20_000
MAX_ERRORS_SHOWN = 5  # validation errors named in a 422 (the count of the others follows)
SHOWN_CHARS = 80  # of a client's value quoted in an error message


def shown(value: Any, quote: bool = True) -> str:
    """``value`` for an error message: quoted (``repr``: control characters escaped; always
    when it has any), cut to ``SHOWN_CHARS`` with its full length named."""
    text = str(value)
    if quote or not text.isprintable():
        text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


class ForecastRequest(BaseModel):
    """Body of ``POST /problems/{name}/forecast``."""

    # Valid for any exog-free problem; /openapi.json adds one example per served problem,
    # built from its champion's metadata (see ``forecast_example``).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"horizon": 1}]})

    horizon: int = Field(ge=1, description="Steps ahead (at most the problem's max_horizon).")
    exog: list[dict[str, Any]] | None = Field(
        default=None, max_length=MAX_EXOG_ROWS,
        description="Future exogenous values: one row per step (panels: per step and "
        "series, with series_id), carrying every exog column of the problem.")
    series_ids: list[str] | None = Field(
        default=None, max_length=MAX_EXOG_ROWS,
        description="Panels: the series wanted (default all).")


class ForecastPoint(BaseModel):
    series_id: str | None = None
    target: str
    date: str
    step: int
    forecast: float
    lower: float
    upper: float


class ForecastResponse(BaseModel):
    problem: str
    model_version: str
    family: str
    horizon: int
    origin: str
    forecasts: list[ForecastPoint]


class ErrorMessage(BaseModel):
    """Body of every 4xx/5xx answer: what was refused and why, naming the field or value."""

    detail: str


class RequestError(ValueError):
    """A request the API refuses with ``status`` and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request(body: bytes) -> ForecastRequest:
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body is {len(body)} bytes; the limit is "
                           f"{MAX_BODY_BYTES}")
    try:
        return ForecastRequest.model_validate_json(body or b"{}")
    except ValidationError as err:
        errors = err.errors()
        problems = "; ".join(
            f"{shown('.'.join(str(p) for p in e['loc']) or 'body', quote=False)}: {e['msg']}"
            for e in errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        raise RequestError(422, problems + (f"; and {more} more" if more > 0 else "")) from None


def check_request(slot: Any, request: ForecastRequest) -> None:
    """Check a request against the served model's contract (horizon, exog, series)."""
    meta = slot.meta
    limit = int(meta["horizon_limit"])
    if request.horizon > limit:
        raise RequestError(422, f"horizon: {request.horizon} is above the maximum {limit} "
                           f"for problem {slot.problem!r}")
    exog = list(meta.get("exog") or [])
    panel = bool(meta.get("panel"))
    if request.series_ids is not None and not panel:
        raise RequestError(422, f"series_ids: problem {slot.problem!r} has a single series")
    if exog and not request.exog:
        raise RequestError(422, f"exog: problem {slot.problem!r} needs future values of "
                           f"{exog}, one row per step{' and series' if panel else ''}")
    if request.exog and not exog:
        raise RequestError(422, f"exog: problem {slot.problem!r} takes no exogenous inputs")
    allowed = set(exog) | ({"series_id"} if panel else set()) | {"date"}
    for i, row in enumerate(request.exog or []):
        extra = sorted(set(row) - allowed)
        if extra:
            raise RequestError(422, f"exog[{i}]: unexpected column(s) {shown(extra)}; "
                               f"expected {exog}")
        missing = [c for c in exog if c not in row]
        if missing:
            raise RequestError(422, f"exog[{i}]: missing column(s) {missing}")
        for col in exog:
            value = row[col]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    not _finite(value)):
                raise RequestError(422, f"exog[{i}].{col}: expected a finite number, got "
                                   f"{shown(value)}")
    if request.series_ids is not None:
        known = getattr(slot, "known", None) or set(meta["series"])
        unknown = sorted(set(request.series_ids) - known)
        if unknown or not request.series_ids:
            raise RequestError(422, f"series_ids: unknown series {shown(unknown[:5])}" if unknown
                               else "series_ids: empty list")


def _finite(value: float) -> bool:
    """A JSON number a float can hold (an integer of 400 digits cannot)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def forecast_example(meta: dict[str, Any], n_series: int = 2) -> dict[str, Any]:
    """A request body the champion described by ``meta`` accepts: its default horizon (within
    the limit), future exog held at the last observed values, the first series of a panel."""
    horizon = max(1, min(int(meta.get("horizon") or 1), int(meta["horizon_limit"])))
    body: dict[str, Any] = {"horizon": horizon}
    series = [str(s) for s in meta.get("series") or []][:n_series]
    panel = bool(meta.get("panel"))
    if panel and series:
        body["series_ids"] = series
    exog = list(meta.get("exog") or [])
    if exog:
        last = meta.get("exog_last") or {}
        if panel:
            body["exog"] = [{"series_id": sid, **_held(last.get(sid) or {}, exog)}
                            for sid in series for _ in range(horizon)]
        else:
            body["exog"] = [_held(last, exog) for _ in range(horizon)]
    return body


def _held(last: dict[str, Any], columns: list[str]) -> dict[str, float]:
    """The last observed exog values as JSON numbers (0.0 where missing or not finite, so
    the example is still a valid request)."""
    out = {}
    for col in columns:
        try:
            value = float(last.get(col, 0.0))
        except (TypeError, ValueError):
            value = 0.0
        out[col] = value if math.isfinite(value) else 0.0
    return out
