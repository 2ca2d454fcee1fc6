"""The model zoo: every family shares the :class:`~forecastflow.models.base.Forecaster`
interface. ``FAMILIES`` maps the names used in problem YAML to classes."""

from __future__ import annotations

from typing import Any

from forecastflow.models.arima import AutoArima
from forecastflow.models.base import FitError, Forecast, Forecaster, ModelError
from forecastflow.models.boosting import GradientBoosting
from forecastflow.models.ensemble import Ensemble
from forecastflow.models.ets import Ets
from forecastflow.models.fast_ets import FastEts
from forecastflow.models.local import PerColumn, PerSeries, adapt
from forecastflow.models.naive import Drift, Naive, SeasonalNaive
from forecastflow.models.sarimax import Sarimax
from forecastflow.models.theta import Theta
from forecastflow.models.varmax import Varmax

FAMILIES: dict[str, type[Forecaster]] = {
    cls.family: cls
    for cls in (Naive, SeasonalNaive, Drift, Sarimax, Varmax, GradientBoosting, Ets,
                FastEts, Theta, AutoArima, Ensemble)
}
BASELINE = "seasonal_naive"


def build_model(family: str, params: dict[str, Any] | None = None, *, coverage: float = 0.9,
                season_length: int | None = None, horizon: int | None = None) -> Forecaster:
    """Instantiate ``family`` with ``params``; ``season_length`` and ``horizon`` fill in when
    the family takes them and the params do not set them. Unknown parameter names are rejected
    by name."""
    if family not in FAMILIES:
        raise ModelError(f"unknown model family {family!r}; choose from {sorted(FAMILIES)}")
    cls = FAMILIES[family]
    params = dict(params or {})
    allowed = cls.param_names()
    unknown = sorted(set(params) - set(allowed))
    if "coverage" in params:  # it would be silently replaced by ``coverage`` below
        raise ModelError(f"{family}: set the interval coverage with the coverage argument "
                         "(the problem's coverage), not as a model parameter")
    if unknown:
        raise ModelError(f"{family} has no parameter(s) {unknown}; allowed: {allowed}")
    if "season_length" in allowed and params.get("season_length") is None:
        params["season_length"] = season_length
    if "horizon" in allowed and params.get("horizon") is None:
        params["horizon"] = horizon
    params["coverage"] = coverage
    return cls(**params)


__all__ = [
    "BASELINE",
    "FAMILIES",
    "AutoArima",
    "Drift",
    "Ensemble",
    "Ets",
    "FastEts",
    "FitError",
    "Forecast",
    "Forecaster",
    "GradientBoosting",
    "ModelError",
    "Naive",
    "PerColumn",
    "PerSeries",
    "Sarimax",
    "SeasonalNaive",
    "Theta",
    "Varmax",
    "adapt",
    "build_model",
]
