"""Realized accuracy: stored batch forecasts joined with the actuals that arrived since.

Task body of the ``monitor_<problem>`` DAG. Per model version and horizon step it computes
RMSE, MASE (scaled by the in-sample seasonal-naive MAE of the history before each forecast's
origin, per series and target) and interval coverage; stores the table in the forecast store
next to the forecasts; logs it to the MLflow experiment ``forecastflow/<problem>/monitoring``
(one run per model version, metrics on a time axis); and decides whether to retrain: the
champion's realized MASE above the problem's ``monitoring.max_mase``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.lifecycle import tracking
from forecastflow.lifecycle.forecast_store import (
    ACCURACY,
    FORECASTS,
    REALIZED,
    ForecastStore,
    open_store,
    run_key,
)

log = logging.getLogger(__name__)


def bad_input() -> tuple[type[Exception], ...]:
    """Errors that fail the monitor task without retries: the data or its source is wrong."""
    from forecastflow.data.sources import SourceError
    from forecastflow.data.validation import DataValidationError

    return DataValidationError, SourceError

KEYS = ["model_version", "origin", SERIES, "target", DATE]
REALIZED_COLUMNS = [*KEYS, "step", "forecast", "lower", "upper", "actual", "error", "scaled",
                    "inside"]


def actuals_long(y: pd.DataFrame) -> pd.DataFrame:
    """Targets as rows ``(series_id, target, date, actual)`` (series_id '' for one series)."""
    frame = y.copy()
    if isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    else:
        frame = frame.rename_axis(DATE).reset_index().assign(**{SERIES: ""})
    return frame.melt(id_vars=[SERIES, DATE], var_name="target", value_name="actual")


def _scales(y: pd.DataFrame, origins: pd.DataFrame, season: int) -> pd.DataFrame:
    """MASE denominators per (series, target, origin): mean |y_t - y_{t-m}| before origin."""
    long = actuals_long(y).sort_values([SERIES, "target", DATE])
    rows = []
    for (sid, target, origin), _ in origins.groupby([SERIES, "target", "origin"], sort=False):
        values = long.loc[(long[SERIES] == sid) & (long["target"] == target)
                          & (long[DATE] <= origin), "actual"].to_numpy(dtype=float)
        m = season if len(values) > season else 1
        diffs = np.abs(values[m:] - values[:-m]) if len(values) > m else np.array([])
        rows.append({SERIES: sid, "target": target, "origin": origin,
                     "scale": float(diffs.mean()) if len(diffs) else float("nan")})
    return pd.DataFrame(rows, columns=[SERIES, "target", "origin", "scale"])


def matched_points(forecasts: pd.DataFrame, y: pd.DataFrame, season: int) -> pd.DataFrame:
    """Forecast rows that now have an actual, with error, scaled error and hit flag. The same
    forecast stored by several runs (same version and origin) counts once (latest run)."""
    if forecasts.empty:
        return pd.DataFrame(columns=[*KEYS, "step", "actual", "error", "scaled", "inside"])
    fc = forecasts.copy()
    if SERIES not in fc.columns:
        fc[SERIES] = ""
    fc[SERIES] = fc[SERIES].astype(str)
    fc[DATE] = pd.to_datetime(fc[DATE])
    fc["origin"] = pd.to_datetime(fc["origin"])
    fc = fc.sort_values("run_key").drop_duplicates(KEYS, keep="last")
    actual = actuals_long(y)
    actual[SERIES] = actual[SERIES].astype(str)
    points = fc.merge(actual, on=[SERIES, "target", DATE], how="inner")
    if points.empty:
        return points.assign(error=[], scaled=[], inside=[])
    scales = _scales(y, points[[SERIES, "target", "origin"]].drop_duplicates(), season)
    points = points.merge(scales, on=[SERIES, "target", "origin"], how="left")
    points["error"] = points["actual"] - points["forecast"]
    with np.errstate(divide="ignore", invalid="ignore"):
        points["scaled"] = np.where(points["scale"] > 0,
                                    points["error"].abs() / points["scale"], np.nan)
    points["inside"] = (points["actual"] >= points["lower"]) & (
        points["actual"] <= points["upper"])
    return points


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    """Realized RMSE, MASE and coverage per model version and step, plus ``step = 0`` for
    all steps together."""
    def stats(group: pd.DataFrame) -> pd.Series:
        return pd.Series({"n": len(group), "rmse": float(np.sqrt(np.mean(group["error"] ** 2))),
                          "mase": float(group["scaled"].mean()),
                          "coverage": float(group["inside"].mean()),
                          "last_date": group[DATE].max()})

    if points.empty:
        return pd.DataFrame(columns=["model_version", "step", "n", "rmse", "mase", "coverage",
                                     "last_date"])
    per_step = [stats(g).rename((v, int(s))) for (v, s), g in
                points.groupby(["model_version", "step"], sort=True)]
    overall = [stats(g).rename((v, 0)) for v, g in points.groupby("model_version", sort=True)]
    table = pd.DataFrame(per_step + overall)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["model_version", "step"])
    table["n"] = table["n"].astype(int)
    return table.reset_index().sort_values(["model_version", "step"], ignore_index=True)


def decide(summary: pd.DataFrame, champion: str | None, max_mase: float | None,
           min_points: int) -> tuple[bool, str]:
    """Retrain when the champion's (else the latest version's) realized MASE exceeds
    ``max_mase`` over at least ``min_points`` points."""
    if summary.empty:
        return False, "no stored forecast has an actual yet"
    overall = summary[summary["step"] == 0].set_index("model_version")
    version = champion if champion in overall.index else max(overall.index, key=int)
    row = overall.loc[version]
    what = (f"version {version}: realized MASE {row['mase']:.3f} over {int(row['n'])} "
            f"point(s), coverage {row['coverage']:.2f}")
    if max_mase is None:
        return False, f"{what}; no monitoring.max_mase threshold declared"
    if row["n"] < min_points:
        return False, f"{what}; fewer than monitoring.min_points={min_points}"
    if not math.isfinite(row["mase"]):
        return False, f"{what}; MASE undefined (flat history)"
    if row["mase"] > max_mase:
        return True, f"{what} > monitoring.max_mase {max_mase}: retrain"
    return False, f"{what} <= monitoring.max_mase {max_mase}"


def monitor(ctx: dict[str, Any]) -> dict[str, Any]:
    """Join stored forecasts with the source's actuals before this run's cutoff, store and
    log realized accuracy, and say whether to retrain."""
    from forecastflow.data.problem import find_problem
    from forecastflow.data.validation import load_data
    from forecastflow.lifecycle import registry
    from forecastflow.orchestration.context import inclusive_cutoff

    problem = find_problem(ctx["problem"])
    name = problem.name
    if registry.alias_version(name, registry.CHAMPION) is None:
        log.info("monitor %s: no champion yet (run train_%s first); nothing to score", name,
                 name)
        return {"problem": name, "retrain": False, "reason": "no champion yet", "points": 0}
    store = open_store(problem.forecast_store)
    forecasts = store.read(name, FORECASTS)
    if forecasts.empty:
        log.info("monitor %s: no stored forecasts yet (run forecast_%s first)", name, name)
        return {"problem": name, "retrain": False, "reason": "no stored forecasts yet",
                "points": 0}
    data = load_data(problem, cutoff=inclusive_cutoff(ctx))
    points = matched_points(forecasts, data.y, data.season)
    summary = summarize(points)
    current = registry.alias_version(name, registry.CHAMPION)
    champion = None if current is None else str(current.version)
    retrain, reason = decide(summary, champion, problem.monitoring.max_mase,
                             problem.monitoring.min_points)
    key = run_key(ctx["cutoff"])
    location = None
    realized = store_realized(store, name, points, pd.Timestamp(ctx["cutoff"]))
    if not summary.empty:
        location = store.write(name, key, ACCURACY, summary.assign(
            cutoff=pd.Timestamp(ctx["cutoff"]), run_key=key))
        log_to_mlflow(name, summary, ctx)
        log.info("monitor %s: realized accuracy per version and step:\n%s", name,
                 summary.to_string(index=False))
    log.info("monitor %s: %d forecast point(s) with actuals; %s", name, len(points), reason)
    return {"problem": name, "retrain": retrain, "reason": reason, "points": len(points),
            "champion": champion, "accuracy": location, "realized_partitions": realized}


def store_realized(store: ForecastStore, name: str, points: pd.DataFrame,
                   as_of: pd.Timestamp) -> int:
    """Each forecast partition's points that have an actual (forecast, actual, error per
    series and period), stored next to its forecasts: one row per forecast point, never
    counted twice across monitor runs. A partition is rewritten only when its points
    changed, and never by a run older than the one that wrote it. Returns how many were."""
    stored = store.read(name, REALIZED)
    before: dict[str, tuple[int, float, pd.Timestamp]] = {}
    if not stored.empty:
        for key, group in stored.groupby("run_key"):
            before[str(key)] = (len(group), float(group["actual"].sum()),
                                pd.Timestamp(group["as_of"].max()))
    written = 0
    for key in store.runs(name):
        rows = points.loc[points["run_key"] == key, REALIZED_COLUMNS] if len(points) else \
            pd.DataFrame(columns=REALIZED_COLUMNS)
        n, total, when = before.get(key, (0, 0.0, None))
        if when is not None and when > as_of:
            continue  # a later monitor run wrote these points
        if len(rows) == n and math.isclose(float(rows["actual"].sum()), total):
            continue  # unchanged (or still empty)
        store.write(name, key, REALIZED, rows.assign(as_of=as_of, run_key=key))
        written += 1
    if written:
        log.info("monitor %s: realized points of %d forecast run(s) stored", name, written)
    return written


def log_to_mlflow(problem: str, summary: pd.DataFrame, ctx: dict[str, Any]) -> None:
    """One run per model version in ``forecastflow/<problem>/monitoring``; each monitor run
    adds a point (timestamp = the run's cutoff) to ``realized_*`` and ``realized_*_step<k>``."""
    from mlflow.entities import Metric

    mlflow_client = tracking.client()
    cutoff = pd.Timestamp(ctx["cutoff"])
    stamp = int(cutoff.tz_localize("UTC").timestamp() * 1000) if cutoff.tzinfo is None else int(
        cutoff.timestamp() * 1000)
    step = int(stamp // 86_400_000)  # days since 1970: a time axis in the compare view
    for version, group in summary.groupby("model_version"):
        run_id = tracking.find_or_create_run(
            f"{problem}/monitoring", {"model_version": str(version),
                                      "forecastflow.role": "monitoring"},
            run_name=f"{problem} v{version} realized accuracy",
            tags={"problem": problem})
        metrics = []
        for _, row in group.iterrows():
            suffix = "" if row["step"] == 0 else f"_step{int(row['step'])}"
            for name in ("rmse", "mase", "coverage", "n"):
                value = float(row[name])
                if math.isfinite(value):
                    metrics.append(Metric(f"realized_{name}{suffix}", value, stamp, step))
        tracking.retry(lambda r=run_id, m=metrics: mlflow_client.log_batch(r, metrics=m),
                       "log realized accuracy")
