"""The candidate models of a problem that declares none (``models:`` omitted in the YAML).

Chosen from what the data are like, once they are validated:

- always: ``ensemble`` of automatic ETS, Theta and the seasonal or plain naive forecast
  (and automatic ARIMA on problems of at most ``ARIMA_MAX_SERIES`` series: its stepwise
  search costs seconds per series), validated on the last two windows of each series' own
  history: on panels of at least ``GLOBAL_MIN_SERIES`` series the median of all members per
  series, with ETS fitted for the whole panel at once (``fast_ets``), otherwise the mean of
  each series' best two (what measured best on bench/accuracy_panels.py: M1 and Tourism
  panels, single series); and ``seasonal_naive``, the baseline every champion must beat;
- with exogenous columns: ``sarimax`` with them as regressors, a small grid of orders;
- several targets: ``varmax`` on them jointly, orders (1,0) and (2,0);
- a panel of at least ``GLOBAL_MIN_SERIES`` series whose median length is at least two
  seasons plus the horizon: one global ``gradient_boosting`` model on lags of a season;
- series shorter than two seasons: non-seasonal members only (the ensemble's ETS already
  drops its seasonal forms there) and ``naive`` instead of ``seasonal_naive``.
"""

from __future__ import annotations

from typing import Any

from forecastflow.data.problem import ModelSpec, ProblemConfig
from forecastflow.data.series import SeriesData
from forecastflow.models.ensemble import default_members

GLOBAL_MIN_SERIES = 20
ARIMA_MAX_SERIES = 5
# Every family a default candidate set may hold (the DAG form offers these).
POSSIBLE = ("ensemble", "sarimax", "varmax", "gradient_boosting", "seasonal_naive", "naive")


def default_models(problem: ProblemConfig, data: SeriesData) -> list[ModelSpec]:
    """The candidate set for ``problem`` on ``data`` (see the module docstring)."""
    season = data.season
    lengths = (data.y.groupby(level=0).size() if data.is_panel else [len(data.y)])
    median = float(sorted(lengths)[len(lengths) // 2])
    seasonal = season > 1 and median >= 2 * season
    n_series = len(data.series_ids)
    specs: list[dict[str, Any]] = [{"family": "ensemble",
                                    "params": ensemble_params(n_series, season)}]
    if problem.exog:
        specs.append({"family": "sarimax", "search": {
            "order": [[1, 1, 0], [0, 1, 1], [1, 1, 1]],
            "seasonal_order": [[0, 1, 1]] if seasonal else [[0, 0, 0]]}})
    if problem.is_multivariate:
        specs.append({"family": "varmax", "search": {"order": [[1, 0], [2, 0]]}})
    if n_series >= GLOBAL_MIN_SERIES and median >= 2 * season + problem.horizon:
        specs.append({"family": "gradient_boosting",
                      "params": {"lags": max(season, 4), "differencing": 1}})
    specs.append({"family": "seasonal_naive" if seasonal else "naive"})
    return [ModelSpec(**spec) for spec in specs]


def ensemble_params(n_series: int, season: int | None) -> dict[str, Any]:
    """The default ensemble's parameters for a problem of ``n_series`` series."""
    if n_series >= GLOBAL_MIN_SERIES:
        # ETS estimated for the whole panel at once: as accurate in the combination (M1
        # sMAPE 14.30 vs 14.25, Tourism better) and 3-10x faster than one series at a time.
        members = [{"family": "fast_ets"}, *default_members(season)[1:]]
        return {"combination": "median", "top_k": None, "members": members}
    params: dict[str, Any] = {"combination": "mean", "top_k": 2}
    if n_series <= ARIMA_MAX_SERIES:
        members = default_members(season)
        params["members"] = [*members[:-1], {"family": "auto_arima"}, members[-1]]
    return params
