"""Batch forecasts from the champion: task bodies of the ``forecast_<problem>`` DAG.

The champion (``models:/<problem>@champion``, resolved to a version number once per run so a
promotion mid-run cannot mix versions) forecasts the problem's horizon from the latest data
before the run's cutoff: its state is moved to the end of those data with its estimated
parameters unchanged (``Forecaster.update``, no refit). When the data cannot be read or do not
fit the model (a series it does not know is missing, say), it forecasts from the end of its
training data instead and says why; the ``origin_from`` column records which. Exogenous inputs
are held at their last observed values (``exog_scenario``). Rows go to the forecast store,
partitioned by problem and run (the data interval), so a re-run replaces its own partition; a
plot of the latest history with the forecast and its interval band goes to MLflow.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.lifecycle import registry, tracking
from forecastflow.lifecycle.contract import origin_of
from forecastflow.lifecycle.forecast_store import FORECASTS, open_store, run_key

log = logging.getLogger(__name__)


class NoChampionError(LookupError):
    """The problem has no ``champion`` yet: nothing to forecast with."""


def champion(problem: str) -> dict[str, Any]:
    """Version, run and family of the current champion."""
    version = registry.alias_version(problem, registry.CHAMPION)
    if version is None:
        raise NoChampionError(f"problem {problem!r} has no champion model yet; run "
                              f"train_{problem} (or `forecastflow demo`) first")
    return {"version": str(version.version), "run_id": version.run_id,
            "family": version.tags.get("family", "?"), "tags": dict(version.tags)}


def forecast_frame(model: Any, meta: dict[str, Any], horizon: int) -> pd.DataFrame:
    """Long-format forecast for ``horizon`` steps (exog held at their last values); a horizon
    outside 1..max_horizon raises ``ForecastRequestError``."""
    request = registry.request_example(model, meta, horizon)
    return registry.predict_frame(model, meta, request)


def forecast(ctx: dict[str, Any]) -> dict[str, Any]:
    """Forecast with the champion and store the rows for this run's data interval."""
    from forecastflow.data.problem import find_problem

    problem = find_problem(ctx["problem"])
    name = problem.name
    current = champion(name)
    model, meta = registry.load_version(name, current["version"],
                                        sha256=current["tags"].get(registry.SHA256_TAG))
    trained_to = origin_of(model)
    horizon = int((ctx.get("params") or {}).get("horizon") or meta["horizon"])
    data = latest_data(problem, ctx)
    model, meta, origin_from = from_latest(name, model, meta, data)
    rows = forecast_frame(model, meta, horizon)
    origin = origin_of(model)
    key = run_key(ctx["cutoff"])
    rows = rows.assign(model_version=current["version"], family=current["family"],
                       origin=series_origins(model, rows, origin), origin_from=origin_from,
                       cutoff=pd.Timestamp(ctx["cutoff"]),
                       created_at=pd.Timestamp(ctx["created_at"]), run_key=key,
                       exog_scenario="held_last" if meta.get("exog") else "none")
    location = open_store(problem.forecast_store).write(name, key, FORECASTS, rows)
    log.info("forecast %s: champion v%s (%s) trained up to %s, forecasting from %s (%s), "
             "%d steps x %d series/targets -> %s", name, current["version"], current["family"],
             trained_to.date(), origin.date(), origin_from, horizon,
             len(rows) // max(horizon, 1), location)
    run_id = tracking.find_or_create_run(
        name, {"airflow_run_id": ctx["run_id"], "forecastflow.role": "forecast"},
        run_name=f"{ctx['dag_id']} {ctx['run_id']}",
        tags={"dag_id": ctx["dag_id"], "model_version": current["version"],
              "data_cutoff": ctx["cutoff"]})
    history = None if data is None else data.y
    with artifact_folder(location) as folder:
        plot = plot_forecast_rows(name, rows, history, float(meta.get("coverage", 0.9)),
                                  f"champion v{current['version']} ({current['family']}), "
                                  f"from {origin.date()}", folder / "forecast.png")
        csv = folder / "forecast.csv"
        rows.to_csv(csv, index=False)
        tracking.log_run(run_id, params={"model_version": current["version"],
                                         "horizon": horizon, "family": current["family"]},
                         tags={"origin": str(origin.date()), "store": location},
                         status="FINISHED")
        tracking.log_artifacts(run_id, [plot, csv], "forecast")
    return {"problem": name, "store": location, "rows": len(rows), "run_key": key,
            "model_version": current["version"], "origin": str(origin),
            "parent_run_id": run_id}


@contextmanager
def artifact_folder(location: str) -> Iterator[Path]:
    """Where the plot and CSV of a run are written before MLflow takes them: next to a local
    partition, else a scratch folder of this task (removed afterwards)."""
    if "://" not in location and Path(location).parent.is_dir():
        yield Path(location).parent
        return
    with tempfile.TemporaryDirectory(prefix="forecastflow-") as scratch:
        yield Path(scratch)


def latest_data(problem: Any, ctx: dict[str, Any]) -> Any | None:
    """The source's validated data before the run's cutoff (``SeriesData``), or None (logged)
    when the source cannot be read or fails validation."""
    from forecastflow.data.sources import SourceError
    from forecastflow.data.validation import DataValidationError, load_data
    from forecastflow.orchestration.context import inclusive_cutoff

    try:
        return load_data(problem, cutoff=inclusive_cutoff(ctx))
    except (SourceError, DataValidationError) as err:
        log.error("forecast %s: cannot use the latest data, forecasting from the end of the "
                  "training data: %s", problem.name, err)
        return None


def from_latest(name: str, model: Any, meta: dict[str, Any], data: Any | None,
                ) -> tuple[Any, dict[str, Any], str]:
    """The model moved to the end of ``data`` (and metadata whose held exog values are the
    latest observed), with ``"latest_data"``; or the model as trained, with
    ``"training_end"``, when there are no newer data or they do not fit the model."""
    from forecastflow.data.series import last_exog
    from forecastflow.models.base import ModelError

    if data is None:
        return model, meta, "training_end"
    y, X = data.y, data.X
    if data.is_panel:  # series the model does not know cannot be forecast by it: left out
        known = y.index.get_level_values(SERIES).astype(str).isin(meta["series"])
        if not known.all():
            extra = sorted(set(y.index.get_level_values(SERIES)[~known].astype(str)))
            log.warning("forecast %s: %d series not in the champion are left out: %s", name,
                        len(extra), extra[:10])
            y, X = y[known], None if X is None else X[known]
    try:
        moved = model.update(y, X)
    except ModelError as err:
        log.warning("forecast %s: forecasting from the end of the training data (%s), not "
                    "from the latest data: %s", name, origin_of(model).date(), err)
        return model, meta, "training_end"
    if origin_of(moved) == origin_of(model):
        return model, meta, "training_end"  # no newer data
    if X is not None:
        meta = {**meta, "exog_last": last_exog(X)}
    return moved, meta, "latest_data"


def plot_forecast_rows(name: str, rows: pd.DataFrame, history: pd.DataFrame | None,
                       coverage: float, title: str, path: Path) -> Path:
    """Latest history, the forecast and its interval band (first few series/targets)."""
    from forecastflow.evaluation.plots import plot_forecast
    from forecastflow.models.base import Forecast

    index = [SERIES, DATE] if SERIES in rows.columns else [DATE]
    frames = [rows.pivot_table(index=index, columns="target", values=col, sort=False)
              for col in ("forecast", "lower", "upper")]
    if history is None:
        history = frames[0].iloc[:0]
    return plot_forecast(history, Forecast(*frames, coverage=coverage), path,
                         title=f"{name}: {title}")


def series_origins(model: Any, rows: pd.DataFrame, origin: pd.Timestamp) -> Any:
    """Each row's forecast origin: its own series' last observation in a ragged panel."""
    last = getattr(model, "last_", None)
    if not isinstance(last, dict) or SERIES not in rows.columns:
        return origin
    return pd.to_datetime(rows[SERIES].astype(str).map(
        {str(k): v for k, v in last.items()})).fillna(origin)
