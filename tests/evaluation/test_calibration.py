"""Interval calibration from backtest forecasts, and the wrapper that applies it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow.evaluation import calibration
from forecastflow.models import ModelError, build_model
from forecastflow.models.calibrated import Calibrated
from tests.conftest import make_panel, seasonal_monthly


def predictions(half: float, sigma: float, windows: int = 4, n: int = 60, horizon: int = 3,
                seed: int = 0) -> pd.DataFrame:
    """Backtest rows whose intervals have half-width ``half`` around errors of scale
    ``sigma`` (normal): 0.9 coverage needs ``1.645 sigma``."""
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(windows):
        for _ in range(n):
            for step in range(1, horizon + 1):
                err = rng.normal(0, sigma * np.sqrt(step))
                rows.append({"window": w, "step": step, "forecast": 100.0,
                             "actual": 100.0 + err, "lower": 100.0 - half * np.sqrt(step),
                             "upper": 100.0 + half * np.sqrt(step)})
    return pd.DataFrame(rows)


def test_intervals_that_already_cover_are_left_alone():
    preds = predictions(1.645, 1.0)
    assert calibration.factors(preds, 0.9, 3) is None
    assert calibration.checked_coverage(preds, 0.9, 3) == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("half", [0.8, 4.0])
def test_factors_bring_coverage_to_nominal(half):
    preds = predictions(half, 1.0)
    found = calibration.factors(preds, 0.9, 3)
    assert len(found) == 3
    for f in found:
        assert f * half == pytest.approx(1.645, rel=0.15)
    checked = calibration.checked_coverage(preds, 0.9, 3)
    assert checked == pytest.approx(0.9, abs=0.03)


def test_too_few_points_mean_no_calibration():
    preds = predictions(1.0, 1.0, windows=1, n=3)
    assert calibration.factors(preds, 0.9, 3) is None
    assert calibration.checked_coverage(preds, 0.9, 3) is None


def test_wrapper_scales_half_widths_per_step_and_keeps_points():
    y = seasonal_monthly(60)
    base = build_model("naive", {}).fit(y)
    wrapped = Calibrated(build_model("naive", {}), [2.0, 0.5]).fit(y)
    a, b = base.predict(4), wrapped.predict(4)
    np.testing.assert_allclose(b.mean.to_numpy(), a.mean.to_numpy())
    ratio = ((b.upper - b.mean) / (a.upper - a.mean))["y"].to_numpy()
    np.testing.assert_allclose(ratio, [2.0, 0.5, 0.5, 0.5])
    assert wrapped.last_ == base.last_
    moved = wrapped.update(seasonal_monthly(62))
    assert moved.predict(1).mean.index[0] > b.mean.index[0]


def test_wrapper_works_on_panels_and_refuses_bad_factors():
    panel = make_panel()
    from forecastflow.models.transforms import ForecastPipeline

    model = Calibrated(ForecastPipeline(build_model("naive", {})), [1.5]).fit(panel)
    fc = model.predict(2)
    assert fc.mean.index.nlevels == 2
    with pytest.raises(ModelError, match="positive"):
        Calibrated(build_model("naive", {}), [0.0]).fit(seasonal_monthly(30))
