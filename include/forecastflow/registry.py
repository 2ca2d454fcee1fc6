"""The MLflow model registry: the pyfunc wrapper, idempotent registration, gated promotion by
alias (``challenger``, ``champion``, ``previous``; never stages) and rollback.

Pyfunc contract (``mlflow.pyfunc.load_model("models:/<problem>@champion").predict(df)``):

- input: a DataFrame with a ``horizon`` column (the same positive integer on every row; at
  most the problem's ``max_horizon``). Exogenous models need one row per future step carrying
  the exog columns (panels: one row per step and series, with ``series_id``). For panels an
  optional ``series_id`` column selects the series wanted (default all).
- output: long format, one row per series, target and timestamp: ``series_id`` (panels),
  ``target``, ``date``, ``step``, ``forecast``, ``lower``, ``upper``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from forecastflow import storage, tracking

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
EXAMPLE_FORECAST = "model_example/forecast.csv"


class ForecastRequestError(ValueError):
    """A pyfunc input that breaks the contract; the message names the column or value."""


def _pyfunc_base() -> type:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class ForecastModel(_pyfunc_base()):
    """MLflow pyfunc around a fitted ``ForecastPipeline`` (artifact ``model``) and its
    metadata (artifact ``meta``: problem, horizon limit, exog, series ids)."""

    def load_context(self, context: Any) -> None:
        self.model = storage.read_model(context.artifacts["model"])
        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_frame(self.model, self.meta, model_input)


def predict_frame(model: Any, meta: dict[str, Any], request: pd.DataFrame) -> pd.DataFrame:
    """Validate a request frame and return the long-format forecast."""
    from forecastflow.data import SERIES

    if not isinstance(request, pd.DataFrame):
        request = pd.DataFrame(request)
    if "horizon" not in request.columns or request.empty:
        raise ForecastRequestError("input needs a 'horizon' column with at least one row")
    horizons = pd.to_numeric(request["horizon"], errors="coerce").dropna().unique()
    if len(horizons) != 1 or horizons[0] != int(horizons[0]):
        raise ForecastRequestError(f"'horizon' must be one integer on every row, got "
                                   f"{request['horizon'].unique().tolist()[:5]}")
    horizon = int(horizons[0])
    limit = int(meta["horizon_limit"])
    if not 1 <= horizon <= limit:
        raise ForecastRequestError(f"horizon {horizon} is outside 1..{limit} for problem "
                                   f"{meta['problem']!r}")
    exog = list(meta.get("exog") or [])
    wanted = None
    if meta.get("panel") and SERIES in request.columns:
        wanted = [str(s) for s in request[SERIES].dropna().unique()]
        unknown = sorted(set(wanted) - set(meta["series"]))
        if unknown:
            raise ForecastRequestError(f"unknown series_id(s) {unknown[:5]}")
    X = None
    if exog:
        missing = [c for c in exog if c not in request.columns]
        if missing:
            raise ForecastRequestError(f"exogenous column(s) {missing} are required, one row "
                                       f"per future step; expected {exog}")
        values = request[exog].apply(pd.to_numeric, errors="coerce")
        if values.isna().to_numpy().any():
            bad = values.columns[values.isna().any()].tolist()
            raise ForecastRequestError(f"exogenous column(s) {bad} have missing or "
                                       "non-numeric values")
        if meta.get("panel"):
            values = _panel_exog(model, meta, request, values, wanted, horizon)
        else:
            if len(values) < horizon:
                raise ForecastRequestError(f"{len(values)} exog row(s) for horizon {horizon}; "
                                           f"one row per future step is required")
            values = values.iloc[:horizon]
            values.index = model.forecast_index(horizon)
        X = values
    forecast = model.predict(horizon, X).to_long()
    if wanted is not None:
        forecast = forecast[forecast[SERIES].isin(wanted)].reset_index(drop=True)
    return forecast


def _panel_exog(model: Any, meta: dict[str, Any], request: pd.DataFrame,
                values: pd.DataFrame, wanted: list[str] | None, horizon: int) -> pd.DataFrame:
    """Exog rows of the requested series (in step order) on the forecast dates; series not
    requested are held at their last training values (their forecasts are dropped)."""
    from forecastflow.data import DATE, SERIES
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
    from forecastflow.data import SERIES

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


# Registration -----------------------------------------------------------------------------

def registered_version(name: str, run_id: str) -> str | None:
    """The version already registered from ``run_id`` (a retried task must not add one)."""
    mlflow_client = tracking.client()
    versions = tracking.retry(lambda: mlflow_client.search_model_versions(
        f"name = '{name}' and run_id = '{run_id}'"), "search versions")
    return str(versions[0].version) if versions else None


def register(name: str, run_id: str, model_path: Path, meta: dict[str, Any],
             tags: dict[str, str]) -> str:
    """Log the model as a pyfunc in ``run_id`` and register it under ``name`` (once per
    run); give it alias ``challenger``. Returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    existing = registered_version(name, run_id)
    if existing:
        log.info("model %s: run %s already registered as version %s", name, run_id, existing)
        return existing
    tracking.client()
    folder = model_path.parent
    meta_path = storage.write_json(meta, folder / "model_meta.json")
    model = storage.read_model(model_path)
    example = request_example(model, meta, min(int(meta["horizon"]), int(meta["horizon_limit"])))
    output = predict_frame(model, meta, example)
    signature = infer_signature(example, output)
    import forecastflow

    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=ForecastModel(),
            artifacts={"model": str(model_path), "meta": str(meta_path)},
            code_paths=[str(Path(forecastflow.__file__).parent)],
            signature=signature, input_example=example,
            pip_requirements=_requirements())
    mlflow_client = tracking.client()
    # The forecast for the input example: a fresh process must reproduce it from the registry.
    tracking.retry(lambda: mlflow_client.log_text(run_id, output.to_csv(index=False),
                                                  EXAMPLE_FORECAST), "log example forecast")
    version = tracking.retry(lambda: mlflow.register_model(info.model_uri, name, tags=tags),
                             "register model")
    tracking.retry(lambda: mlflow_client.set_registered_model_alias(
        name, CHALLENGER, version.version), "set alias")
    log.info("model %s: registered version %s from run %s (alias %s)", name, version.version,
             run_id, CHALLENGER)
    return str(version.version)


def _requirements() -> list[str]:
    from importlib.metadata import version

    pins = []
    for package in ("pandas", "numpy", "scipy", "statsmodels", "scikit-learn", "pyarrow",
                    "pydantic", "PyYAML"):
        pins.append(f"{package}=={version(package)}")
    return pins


# Promotion --------------------------------------------------------------------------------

def alias_version(name: str, alias: str) -> Any | None:
    """The model version behind ``alias``, or None (also when the model does not exist)."""
    from mlflow.exceptions import MlflowException

    mlflow_client = tracking.client()
    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def decide(score: float, baseline: float, champion_score: float | None, margin: float,
           first_must_beat_baseline: bool, force: bool = False) -> tuple[bool, list[str]]:
    """Whether a challenger with backtest ``score`` (lower is better) becomes champion."""
    reasons = []
    beats_baseline = score < baseline
    reasons.append(f"challenger {score:.4f} {'<' if beats_baseline else '>='} seasonal naive "
                   f"{baseline:.4f}")
    if champion_score is None:
        ok = beats_baseline or not first_must_beat_baseline
        reasons.append("no champion yet" + ("" if ok else "; a first champion must beat "
                                            "seasonal naive"))
    else:
        target = champion_score * (1.0 - margin)
        beats_champion = score < target
        reasons.append(f"challenger {score:.4f} {'<' if beats_champion else '>='} champion "
                       f"{champion_score:.4f} x (1 - margin {margin})")
        ok = beats_baseline and beats_champion
    if force and not ok:
        reasons.append("promotion forced by the run's force_promotion param")
        ok = True
    return ok, reasons


def promote(name: str, version: str, reasons: list[str]) -> str | None:
    """Make ``version`` champion; the displaced champion keeps alias ``previous``."""
    mlflow_client = tracking.client()
    current = alias_version(name, CHAMPION)
    displaced = None
    if current is not None and str(current.version) != str(version):
        displaced = str(current.version)
        tracking.retry(lambda: mlflow_client.set_registered_model_alias(
            name, PREVIOUS, displaced), "set previous")
    tracking.retry(lambda: mlflow_client.set_registered_model_alias(name, CHAMPION, version),
                   "set champion")
    tracking.retry(lambda: mlflow_client.set_model_version_tag(
        name, version, "promotion", "promoted: " + "; ".join(reasons)), "tag version")
    return displaced


def rollback(name: str) -> tuple[str, str]:
    """Move ``champion`` back to ``previous``; returns (old champion, new champion)."""
    current = alias_version(name, CHAMPION)
    previous = alias_version(name, PREVIOUS)
    if previous is None:
        raise LookupError(f"model {name!r} has no 'previous' version to roll back to")
    mlflow_client = tracking.client()
    old = None if current is None else str(current.version)
    mlflow_client.set_registered_model_alias(name, CHAMPION, previous.version)
    mlflow_client.delete_registered_model_alias(name, PREVIOUS)
    if old:
        mlflow_client.set_model_version_tag(name, old, "rolled_back", "true")
    return old or "-", str(previous.version)
