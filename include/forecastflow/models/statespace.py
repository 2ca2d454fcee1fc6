"""Shared machinery for statsmodels state-space models (SARIMAX, VARMAX).

Fitted state is kept compact: the estimated parameters and the (small) training arrays. The
statsmodels results object, whose pickle carries smoothed states and covariances (tens of
MB for a monthly SARIMAX), is rebuilt on load by one Kalman filter pass with the fixed
parameters, which reproduces the forecasts exactly without re-estimation.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.models.base import FitError, Forecaster, ModelError, check_finite_forecast


class RebuiltResults:
    """Pickles without the statsmodels results (``results_``), which are rebuilt on load by
    ``_refilter()`` from the estimated ``params_``."""

    def _refilter(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("results_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "params_" in state:
            self._refilter()


class StateSpaceForecaster(RebuiltResults, Forecaster):
    """Subclasses define ``_build(endog, exog)`` returning an unfitted statsmodels model."""

    maxiter: int = 50
    single_threaded = True

    def _build(self, endog: np.ndarray, exog: np.ndarray | None) -> Any:
        raise NotImplementedError

    def _arrays(self, y: pd.DataFrame, X: pd.DataFrame | None, refit: bool = True,
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Model inputs (``refit=False``: with any scaling learned at fit time)."""
        return y.to_numpy(dtype=float), None if X is None else X.to_numpy(dtype=float)

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning

        self.endog_, self.exog_values_ = self._arrays(y, X)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = self._build(self.endog_, self.exog_values_)
                results = model.fit(disp=False, maxiter=self.maxiter)
            except ModelError:
                raise  # a bad hyperparameter, not a failure to fit these data
            except (np.linalg.LinAlgError, ValueError, IndexError) as err:
                raise FitError(f"{self.family} {self.get_params()} failed to fit: {err}") from err
        self.fit_seconds_ = time.perf_counter() - start
        self.params_ = np.asarray(results.params)
        if not np.all(np.isfinite(self.params_)):
            raise FitError(f"{self.family} {self.get_params()} estimated non-finite parameters")
        converged = bool(results.mle_retvals.get("converged", True)) if hasattr(
            results, "mle_retvals") and results.mle_retvals else True
        messages = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:120]}"
                           for w in caught if issubclass(w.category, (ConvergenceWarning,
                                                                      RuntimeWarning,
                                                                      UserWarning))})
        converged = converged and not any(m.startswith("ConvergenceWarning") for m in messages)
        self.fit_info_ = {"converged": converged, "warnings": messages,
                          "iterations": int(results.mle_retvals.get("iterations", -1))
                          if getattr(results, "mle_retvals", None) else -1,
                          "aic": float(results.aic) if np.isfinite(results.aic) else None}
        self.results_ = results

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        # One Kalman filter pass over the longer history with the estimated parameters.
        self.endog_, self.exog_values_ = self._arrays(y, X, refit=False)
        self._refilter()

    def _refilter(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = self._build(self.endog_, self.exog_values_)
            self.results_ = model.filter(self.params_)

    def _forecast(self, horizon: int, X: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray]:
        exog = None if X is None else self._scale_exog(X.to_numpy(dtype=float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = self.results_.get_forecast(horizon, exog=exog)
            mean = np.asarray(pred.predicted_mean, dtype=float).reshape(horizon, -1)
            ci = np.asarray(pred.conf_int(alpha=1.0 - self.coverage), dtype=float)
        k = mean.shape[1]
        lower, upper = ci[:, :k], ci[:, k:]
        check_finite_forecast(self.family, mean)
        return mean, lower, upper

    def _scale_exog(self, exog: np.ndarray) -> np.ndarray:
        return exog
