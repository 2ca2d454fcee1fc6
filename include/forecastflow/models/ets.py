"""Exponential smoothing state-space models (ETS), with the automatic choice of AutoETS.

Each of ``error`` (add, mul), ``trend`` (none, add), ``damped`` and ``seasonal`` (none, add, mul)
is fixed by a parameter or, with ``auto``, chosen per series by AICc among the combinations
the data allow: multiplicative components only for strictly positive series, a seasonal
component only with ``season_length`` > 1 and at least two full cycles, damping only with a
trend. Fitting is statsmodels' ``ETSModel`` by maximum likelihood; intervals are its
analytical ones for additive-error models and simulated ones (from the fitted parameters, a
fixed seed) otherwise.

The fitted state is the chosen specification, the estimated parameters and the training
values: the statsmodels results are rebuilt on load (and on :meth:`update`) by one smoothing
pass with those parameters, without re-estimation.
"""

from __future__ import annotations

import itertools
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.models.base import FitError, Forecaster, ModelError, check_finite_forecast
from forecastflow.models.statespace import RebuiltResults

AUTO = "auto"
_CHOICES = {"error": ("add", "mul"), "trend": (None, "add"), "seasonal": (None, "add", "mul")}


class Ets(RebuiltResults, Forecaster):
    """ETS(error, trend[, damped], seasonal); ``auto`` components are chosen by AICc."""

    family = "ets"
    capabilities = {"multivariate": False, "exogenous": False, "panel": False,
                    "intervals": True}
    single_threaded = True

    def __init__(self, error: str = AUTO, trend: str | None = AUTO, damped: bool | str = AUTO,
                 seasonal: str | None = AUTO, season_length: int | None = None,
                 maxiter: int = 200, coverage: float = 0.9) -> None:
        self.error = error
        self.trend = trend
        self.damped = damped
        self.seasonal = seasonal
        self.season_length = season_length
        self.maxiter = maxiter
        self.coverage = coverage

    # Candidates --------------------------------------------------------------------------

    def _options(self, name: str, values: np.ndarray) -> tuple[Any, ...]:
        given = getattr(self, name)
        given = None if given in ("none", "None", "N") else given
        if given != AUTO:
            if given not in _CHOICES[name]:
                raise ModelError(f"ets {name} must be one of {list(_CHOICES[name])} or "
                                 f"'auto', got {given!r}")
            return (given,)
        options = _CHOICES[name]
        if np.min(values) <= 0:
            options = tuple(o for o in options if o != "mul")
        if name == "seasonal" and not self._seasonal_ok(values):
            options = (None,)
        return options

    def _seasonal_ok(self, values: np.ndarray) -> bool:
        m = self.season_length or 1
        return m > 1 and len(values) >= 2 * m + 2

    def candidates(self, values: np.ndarray) -> list[dict[str, Any]]:
        """The specifications AICc chooses among for these values."""
        found = []
        for error, trend, seasonal in itertools.product(
                self._options("error", values), self._options("trend", values),
                self._options("seasonal", values)):
            if seasonal and not self._seasonal_ok(values):
                raise ModelError(f"ets seasonal {seasonal!r} needs season_length > 1 and two "
                                 f"full cycles; got m={self.season_length}, n={len(values)}")
            dampings = (False,) if trend is None else (
                (False, True) if self.damped == AUTO else (bool(self.damped),))
            for damped in dampings:
                if error == "add" and seasonal == "mul":
                    continue  # numerically unstable; AutoETS leaves it out too
                found.append({"error": error, "trend": trend, "damped_trend": damped,
                              "seasonal": seasonal})
        return found

    # Fitting -----------------------------------------------------------------------------

    def _model(self, values: np.ndarray, spec: dict[str, Any]) -> Any:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        # A Series (not an array): statsmodels' simulated intervals need an index.
        return ETSModel(pd.Series(values), error=spec["error"], trend=spec["trend"],
                        damped_trend=spec["damped_trend"], seasonal=spec["seasonal"],
                        seasonal_periods=self.season_length if spec["seasonal"] else None)

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        values = y.to_numpy(dtype=float)[:, 0]
        start = time.perf_counter()
        best, tried = None, []
        for spec in self.candidates(values):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    results = self._model(values, spec).fit(disp=False, maxiter=self.maxiter)
                except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as err:
                    tried.append(f"{_name(spec)}: {err}")
                    continue
            aicc = float(results.aicc)
            tried.append(f"{_name(spec)}: AICc {aicc:.1f}")
            if np.isfinite(aicc) and (best is None or aicc < best[0]):
                best = (aicc, spec, results)
        if best is None:
            raise FitError(f"ets: no specification could be fitted ({'; '.join(tried)})")
        self.aicc_, self.spec_, self.results_ = best
        self.params_ = np.asarray(self.results_.params)
        self.values_ = values
        self.fit_seconds_ = time.perf_counter() - start
        self.fit_info_ = {"converged": True, "warnings": [], "chosen": _name(self.spec_),
                          "aicc": self.aicc_, "tried": tried}

    def _refilter(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.results_ = self._model(self.values_, self.spec_).smooth(self.params_)

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.values_ = y.to_numpy(dtype=float)[:, 0]
        self._refilter()

    # Forecasting -------------------------------------------------------------------------

    def _predict(self, horizon: int, X: pd.DataFrame | None,
                 index: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.values_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Simulated intervals (multiplicative models) are repeatable: a fixed seed.
            pred = self.results_.get_prediction(start=n, end=n + horizon - 1,
                                                rng=np.random.default_rng(0))
            frame = pred.summary_frame(alpha=1.0 - self.coverage)
        mean = frame["mean"].to_numpy(dtype=float)[:, None]
        lower = frame["pi_lower"].to_numpy(dtype=float)[:, None]
        upper = frame["pi_upper"].to_numpy(dtype=float)[:, None]
        check_finite_forecast(self.family, mean)
        return mean, lower, upper


def _name(spec: dict[str, Any]) -> str:
    """``ETS(M,Ad,A)``-style name of a specification."""
    def letter(value: str | None) -> str:
        return {"add": "A", "mul": "M", None: "N"}[value]

    trend = letter(spec["trend"]) + ("d" if spec["damped_trend"] else "")
    return f"ETS({letter(spec['error'])},{trend},{letter(spec['seasonal'])})"
