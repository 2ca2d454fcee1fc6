"""Statistical models fit and forecast with one BLAS thread (small matrices), others with
what the process has."""

from __future__ import annotations

import pandas as pd
from threadpoolctl import threadpool_info, threadpool_limits

from forecastflow.models.base import Forecaster
from tests.conftest import seasonal_monthly


def blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


class Recording(Forecaster):
    family = "recording"

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.seen_ = blas_threads()

    def _predict(self, horizon, X, index):
        self.seen_predict_ = blas_threads()
        values = [[0.0]] * horizon
        return values, values, values


class SingleThreaded(Recording):
    single_threaded = True


def test_single_threaded_models_limit_blas_inside_fit_and_predict_only():
    with threadpool_limits(limits=2, user_api="blas"):
        single = SingleThreaded().fit(seasonal_monthly(24))
        single.predict(2)
        other = Recording().fit(seasonal_monthly(24))
        assert single.seen_ == {1} and single.seen_predict_ == {1}
        assert other.seen_ == {2}
        assert blas_threads() == {2}  # restored


def test_statsmodels_families_are_single_threaded():
    from forecastflow.models import FAMILIES

    single = {name for name, cls in FAMILIES.items() if cls.single_threaded}
    assert {"ets", "sarimax", "varmax", "auto_arima"} <= single
    assert "gradient_boosting" not in single
