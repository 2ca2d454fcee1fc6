"""The forecast request contract shared by the pyfunc model, the batch DAG and the REST API.

- input: a DataFrame with a ``horizon`` column (the same positive integer on every row; at
  most the problem's ``max_horizon``). Exogenous models need one row per future step carrying
  the exog columns (panels: one row per step and series, with ``series_id``). For panels an
  optional ``series_id`` column selects the series wanted (default all).
- output: long format, one row per series, target and timestamp: ``series_id`` (panels),
  ``target``, ``date``, ``step``, ``forecast``, ``lower``, ``upper``.

Imports pandas and the library only (no MLflow), so a serving process starts fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class ForecastRequestError(ValueError):
    """A pyfunc input that breaks the contract; the message names the column or value."""



def predict_frame(model: Any, meta: dict[str, Any], request: pd.DataFrame) -> pd.DataFrame:
    """Validate a request frame and return the long-format forecast."""
    return pd.DataFrame(predict_columns(model, meta, request))


def predict_columns(model: Any, meta: dict[str, Any], request: pd.DataFrame,
                    ) -> dict[str, np.ndarray]:
    """:func:`predict_frame` as arrays, one per column (what the REST API turns into rows
    without building the frame)."""
    from forecastflow.data.series import SERIES

    if not isinstance(request, pd.DataFrame):
        request = pd.DataFrame(request)
    if "horizon" not in request.columns or request.empty:
        raise ForecastRequestError("input needs a 'horizon' column with at least one row")
    horizons = _distinct_numbers(request["horizon"])
    if len(horizons) != 1 or horizons[0] != int(horizons[0]):
        raise ForecastRequestError(f"'horizon' must be one integer on every row, got "
                                   f"{request['horizon'].unique().tolist()[:5]}")
    horizon = int(horizons[0])
    limit = int(meta["horizon_limit"])
    if not 1 <= horizon <= limit:
        raise ForecastRequestError(f"horizon {horizon} is outside 1..{limit} for problem "
                                   f"{meta['problem']!r}")
    wanted = None
    if meta.get("panel") and SERIES in request.columns:
        wanted = [str(s) for s in request[SERIES].dropna().unique()]
        unknown = sorted(set(wanted) - set(meta["series"]))
        if unknown:
            raise ForecastRequestError(f"unknown series_id(s) {unknown[:5]}")
    X = _request_exog(model, meta, request, wanted, horizon)
    columns = model.predict(horizon, X).long_columns()
    if wanted is not None:
        keep = set(wanted)
        mask = np.fromiter((sid in keep for sid in columns[SERIES]), bool,
                           len(columns[SERIES]))
        columns = {name: values[mask] for name, values in columns.items()}
    return columns


def _request_exog(model: Any, meta: dict[str, Any], request: pd.DataFrame,
                  wanted: list[str] | None, horizon: int) -> pd.DataFrame | None:
    """The future exog rows of a request on the forecast index (None without exog)."""
    exog = list(meta.get("exog") or [])
    if not exog:
        return None
    missing = [c for c in exog if c not in request.columns]
    if missing:
        raise ForecastRequestError(f"exogenous column(s) {missing} are required, one row "
                                   f"per future step; expected {exog}")
    if not meta.get("panel"):
        fast = _plain_exog(model, request, exog, horizon)
        if fast is not None:
            return fast
    values = _numeric(request[exog])
    if values.isna().to_numpy().any():
        bad = values.columns[values.isna().any()].tolist()
        raise ForecastRequestError(f"exogenous column(s) {bad} have missing or "
                                   "non-numeric values")
    if meta.get("panel"):
        return _panel_exog(model, meta, request, values, wanted, horizon)
    if len(values) < horizon:
        raise ForecastRequestError(f"{len(values)} exog row(s) for horizon {horizon}; "
                                   f"one row per future step is required")
    values = values.iloc[:horizon]
    values.index = model.forecast_index(horizon)
    return values


def _plain_exog(model: Any, request: pd.DataFrame, exog: list[str], horizon: int,
                ) -> pd.DataFrame | None:
    """The exog of a single-series request when its columns hold numbers of one dtype and
    cover ``horizon`` rows without gaps: the frame the general path builds, from one array
    (selecting columns by a list of names costs more than the forecast). None otherwise."""
    from forecastflow.models.base import column_index

    columns = [request[c] for c in exog]
    if not all(isinstance(c, pd.Series) for c in columns) or len(request) < horizon:
        return None  # repeated column names, or too few rows: the general path says why
    dtypes = {c.dtype for c in columns}
    dtype = next(iter(dtypes))
    if len(dtypes) != 1 or not isinstance(dtype, np.dtype) or dtype.kind not in "iuf":
        return None
    values = np.column_stack([c.to_numpy()[:horizon] for c in columns])
    if dtype.kind == "f" and np.isnan(values).any():
        return None
    return pd.DataFrame(values, index=model.forecast_index(horizon),
                        columns=column_index(exog))


def _distinct_numbers(column: pd.Series) -> Any:
    """The distinct numbers of a column, non-numbers dropped (integer columns read as they
    are: converting them changes nothing)."""
    if column.dtype.kind in "iu":
        return pd.unique(column.to_numpy())
    return pd.to_numeric(column, errors="coerce").dropna().unique()


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column converted to numbers (non-numbers missing); integer and
    float columns are numbers already."""
    if all(dtype.kind in "iuf" for dtype in frame.dtypes):
        return frame
    return frame.apply(pd.to_numeric, errors="coerce")


def _panel_exog(model: Any, meta: dict[str, Any], request: pd.DataFrame,
                values: pd.DataFrame, wanted: list[str] | None, horizon: int) -> pd.DataFrame:
    """Exog rows of the requested series (in step order) on the forecast dates; series not
    requested are held at their last training values (their forecasts are dropped)."""
    from forecastflow.data.series import DATE, SERIES
    from forecastflow.models.base import future_index

    if SERIES not in request.columns:
        raise ForecastRequestError("panel exog rows need a 'series_id' column")
    ids = request[SERIES].astype(str).to_numpy()
    needed = wanted or list(model.last_)
    counts = pd.Series(ids).value_counts()
    short = {sid: int(counts.get(sid, 0)) for sid in needed if counts.get(sid, 0) < horizon}
    if short:
        raise ForecastRequestError(f"exog rows per series must cover horizon {horizon}; "
                                   f"short: {dict(list(short.items())[:5])}")
    parts = []
    for sid, last in model.last_.items():
        dates = future_index(last, model.freq_, horizon)
        if sid in needed:
            rows = values[ids == sid].iloc[:horizon].copy()
        else:
            held = meta["exog_last"][sid]
            rows = pd.DataFrame([held] * horizon)[list(values.columns)]
        rows.index = pd.MultiIndex.from_product([[sid], dates], names=[SERIES, DATE])
        parts.append(rows)
    return pd.concat(parts)


def request_example(model: Any, meta: dict[str, Any], horizon: int) -> pd.DataFrame:
    """A valid pyfunc input for ``horizon`` steps (exog held at the training's last values)."""
    from forecastflow.data.series import SERIES

    frame = pd.DataFrame({"horizon": [horizon] * horizon})
    if meta.get("exog"):
        last = meta["exog_last"]
        if meta.get("panel"):
            rows = [{"horizon": horizon, SERIES: sid, **last[sid]} for sid in meta["series"]
                    for _ in range(horizon)]
            return pd.DataFrame(rows)
        for col in meta["exog"]:
            frame[col] = float(last[col])
    return frame


def forecast_rows(forecast: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows of a long-format forecast (dates as ``YYYY-MM-DD``)."""
    columns = {name: forecast[name] for name in forecast.columns}
    columns["date"] = forecast["date"].to_numpy(dtype="datetime64[D]")
    return column_rows(columns)


def column_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON-ready rows of long-format forecast columns (arrays or Series, as
    :func:`predict_columns` returns them; dates as ``YYYY-MM-DD``)."""
    columns = {name: np.datetime_as_string(np.asarray(values, dtype="datetime64[D]")).tolist()
               if name == "date" else values.tolist() for name, values in columns.items()}
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def serving_card(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """What a server needs to answer before it unpickles the model: metadata, origin and, for
    problems without exogenous inputs, the forecast table for the maximum horizon (a forecast
    for ``h`` steps is its first ``h`` steps; tested for every family)."""
    table = None
    if not meta.get("exog"):
        request = pd.DataFrame({"horizon": [int(meta["horizon_limit"])]})
        table = forecast_rows(predict_frame(model, meta, request))
    return {"origin": str(origin_of(model).date()), "meta": meta, "table": table}


def origin_of(model: Any) -> pd.Timestamp:
    """Last training date of a fitted forecaster (latest over the series of a panel): the
    forecasts start one period after it."""
    last = model.last_
    return max(last.values()) if isinstance(last, dict) else pd.Timestamp(last)


def model_meta(problem: Any, data: Any, model: Any,
               selected: dict[str, Any]) -> dict[str, Any]:
    """What the pyfunc needs besides the fitted model."""
    from forecastflow.data.series import last_exog

    exog_last = {} if data.X is None else last_exog(data.X)
    return {"problem": problem.name, "horizon": problem.horizon,
            "horizon_limit": problem.horizon_limit, "exog": data.exog, "exog_last": exog_last,
            "panel": data.is_panel, "series": [str(s) for s in data.series_ids],
            "targets": data.targets, "freq": data.freq, "family": selected["trial"]["family"],
            "coverage": problem.coverage}
