"""PerSeries / PerColumn wrappers: one model per series or per target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import SERIES
from forecastflow.models import FitError, GradientBoosting, PerSeries, Sarimax, SeasonalNaive
from forecastflow.models.base import Forecaster


class FailsOn(Forecaster):
    """Naive forecaster that cannot fit series whose first value is above ``limit``."""

    family = "fails_on"
    capabilities = {"multivariate": False, "exogenous": False, "panel": False,
                    "intervals": True}

    def __init__(self, limit: float = 1000.0, coverage: float = 0.9) -> None:
        self.limit = limit
        self.coverage = coverage

    def _fit(self, y, X):
        if y.iloc[0, 0] > self.limit:
            raise FitError(f"first value {y.iloc[0, 0]:.0f} above {self.limit}")
        self.last_value_ = y.iloc[-1, 0]

    def _predict(self, horizon, X, index):
        mean = np.full((horizon, 1), self.last_value_)
        return mean, mean - 1, mean + 1


def test_a_failing_series_falls_back_to_seasonal_naive(panel):
    model = PerSeries(FailsOn(limit=1000.0)).fit(panel)
    info = model.fit_info_
    assert list(info["fallbacks"]) == ["c"]  # level 5000: the only one above the limit
    assert "first value" in info["fallbacks"]["c"]
    assert any("fell back to seasonal naive" in w for w in info["warnings"])
    assert isinstance(model.models_["c"], SeasonalNaive)
    fc = model.predict(3)
    assert set(fc.mean.index.get_level_values(SERIES)) == {"a", "b", "c"}
    assert np.isfinite(fc.mean.to_numpy()).all()


def test_every_series_failing_is_a_fit_error_naming_one(panel):
    with pytest.raises(FitError, match=r"failed on every series, e\.g\. 'a'"):
        PerSeries(FailsOn(limit=0.0)).fit(panel)


def test_local_sarimax_per_series_matches_single_fits(panel):
    model = PerSeries(Sarimax(order=(1, 0, 0), trend="c", maxiter=20)).fit(panel)
    one = Sarimax(order=(1, 0, 0), trend="c", maxiter=20).fit(
        panel.xs("b", level=SERIES).asfreq("MS"))
    np.testing.assert_allclose(model.predict(4).mean.xs("b", level=SERIES).to_numpy(),
                               one.predict(4).mean.to_numpy())


def test_global_boosting_calibrates_without_a_short_series(make_panel_frame):
    panel = make_panel_frame(ids=("long", "short"), n=100, levels=(100.0, 200.0))
    short = panel.xs("short", level=SERIES, drop_level=False).iloc[-26:]
    panel = pd.concat([panel.drop(index="short", level=SERIES), short])
    model = GradientBoosting(season_length=12, lags=22, max_iter=20).fit(panel)
    fc = model.predict(6)
    assert set(fc.mean.index.get_level_values(SERIES)) == {"long", "short"}
