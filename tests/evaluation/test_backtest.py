"""Rolling-origin backtests: cutoffs, window modes, failures recorded per window."""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.series import DATE, SERIES, SeriesData
from forecastflow.evaluation.backtest import BacktestSpec, backtest, cutoffs
from forecastflow.evaluation.metrics import METRICS
from forecastflow.models import FitError, ModelError, Naive, Sarimax, SeasonalNaive
from forecastflow.models.transforms import ForecastPipeline


class FailsWhenShort(Naive):
    """Naive that cannot be fitted on fewer than ``min_length`` observations."""

    family = "fails_when_short"

    def __init__(self, min_length: int = 60, coverage: float = 0.9) -> None:
        self.min_length = min_length
        self.coverage = coverage

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        if len(y) < self.min_length:
            raise FitError(f"only {len(y)} observations, need {self.min_length}")
        super()._fit(y, X)


class Recorder(Naive):
    """Naive that records the training data each clone sees."""

    family = "recorder"
    seen: ClassVar[list[pd.DataFrame]] = []

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        Recorder.seen.append(y.copy())
        super()._fit(y, X)


class Broken(Naive):
    family = "broken"

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        raise TypeError("a programming error, not a data problem")


SPEC = BacktestSpec(horizon=6, windows=3, step=4, min_train=10)


def test_cutoffs_spaced_by_step_and_last_window_ends_at_data_end(monthly_data):
    cuts = cutoffs(monthly_data, SPEC)
    assert len(cuts) == 3
    assert cuts == sorted(cuts)
    for a, b in itertools.pairwise(cuts):
        assert a + pd.DateOffset(months=4) == b
    assert cuts[-1] + pd.DateOffset(months=6) == monthly_data.end
    assert cuts[-1] == pd.Timestamp("2020-06-01")


def test_default_step_is_the_horizon(monthly_data):
    cuts = cutoffs(monthly_data, BacktestSpec(horizon=6, windows=2))
    assert cuts == [pd.Timestamp("2019-12-01"), pd.Timestamp("2020-06-01")]


def test_expanding_and_sliding_train_lengths(monthly_data):
    expanding = backtest(Naive(), monthly_data, SPEC).windows
    assert expanding["train_length"].tolist() == [58, 62, 66]
    sliding_spec = BacktestSpec(horizon=6, windows=3, step=4, mode="sliding", window_length=24)
    sliding = backtest(Naive(), monthly_data, sliding_spec).windows
    assert sliding["train_length"].tolist() == [24, 24, 24]
    assert (sliding["status"] == "ok").all()


def test_windows_train_only_on_data_up_to_cutoff(monthly_data):
    Recorder.seen.clear()
    spec = BacktestSpec(horizon=6, windows=3, step=4, mode="sliding", window_length=20)
    result = backtest(Recorder(), monthly_data, spec)
    assert len(Recorder.seen) == 3
    for y, cutoff in zip(Recorder.seen, result.windows["cutoff"], strict=True):
        assert y.index[-1] == cutoff
        assert len(y) == 20
        pd.testing.assert_frame_equal(y, monthly_data.y.loc[y.index], check_freq=False)


def test_failed_window_is_recorded_and_others_succeed(monthly_data):
    result = backtest(FailsWhenShort(min_length=60), monthly_data, SPEC)
    w = result.windows
    assert w["status"].tolist() == ["failed", "ok", "ok"]
    assert "FitError" in w.loc[0, "error"]
    assert "only 58 observations" in w.loc[0, "error"]
    assert w.loc[1, "error"] == ""
    assert np.isnan(w.loc[0, "mase"])
    assert result.ok
    assert result.n_failed == 1
    metrics = result.metrics()
    assert metrics["mase"] == pytest.approx(w.loc[1:, "mase"].mean())
    assert set(result.predictions["window"]) == {1, 2}


def test_all_windows_failing_is_not_ok(monthly_data):
    result = backtest(FailsWhenShort(min_length=1000), monthly_data, SPEC)
    assert not result.ok
    assert result.n_failed == 3
    assert all(np.isnan(v) for v in result.metrics().values())
    assert result.predictions.empty


def test_programming_errors_propagate(monthly_data):
    with pytest.raises(TypeError, match="programming error"):
        backtest(Broken(), monthly_data, SPEC)


def test_min_train_is_enforced(monthly_data):
    spec = BacktestSpec(horizon=6, windows=3, step=4, min_train=60)
    w = backtest(Naive(), monthly_data, spec).windows
    assert w["status"].tolist() == ["failed", "ok", "ok"]
    assert "min_train" in w.loc[0, "error"]
    assert np.isnan(w.loc[0, "fit_seconds"])


def test_window_table_columns(monthly_data):
    w = backtest(SeasonalNaive(season_length=12), monthly_data, SPEC).windows
    assert {"window", "cutoff", "train_length", "fit_seconds", "predict_seconds", "status",
            "error", "converged", "warnings", *METRICS} <= set(w.columns)
    assert w["window"].tolist() == [0, 1, 2]
    assert (w["fit_seconds"] >= 0).all()
    assert w["converged"].all()


def test_predictions_frame(monthly_data):
    result = backtest(SeasonalNaive(season_length=12), monthly_data, SPEC)
    p = result.predictions
    assert {"window", "cutoff", "actual", "forecast", "lower", "upper", "step", "target",
            DATE} <= set(p.columns)
    assert len(p) == 3 * 6
    assert list(p.columns[:2]) == ["window", "cutoff"]
    np.testing.assert_allclose(p["actual"], monthly_data.y.loc[p[DATE], "y"].to_numpy())
    for k, group in p.groupby("window"):
        cutoff = result.windows.loc[k, "cutoff"]
        assert (group["cutoff"] == cutoff).all()
        assert group[DATE].min() == cutoff + pd.DateOffset(months=1)
        assert group["step"].tolist() == list(range(1, 7))
    # window metrics are those of the stored predictions
    w0 = p[p["window"] == 0]
    assert result.windows.loc[0, "mae"] == pytest.approx(
        (w0["actual"] - w0["forecast"]).abs().mean())


def test_panel_backtest(panel_data):
    result = backtest(ForecastPipeline(Naive(), "none"), panel_data, SPEC)
    assert (result.windows["status"] == "ok").all()
    assert result.windows["train_length"].tolist() == [34, 38, 42]
    p = result.predictions
    assert SERIES in p.columns
    assert len(p) == 3 * 3 * 6
    assert p["actual"].notna().all()


def test_backtest_with_exog(quarterly):
    y, X = quarterly
    data = SeriesData(y[["gdp"]], X, "QS", season=4)
    spec = BacktestSpec(horizon=4, windows=2, min_train=20)
    result = backtest(Sarimax(order=(1, 0, 0), trend="c", maxiter=20), data, spec)
    assert (result.windows["status"] == "ok").all(), result.windows["error"].tolist()
    assert result.windows["converged"].dtype == bool


def test_backtest_leaves_the_model_unfitted(monthly_data):
    model = Naive()
    backtest(model, monthly_data, SPEC)
    assert not [k for k in vars(model) if k.endswith("_")]


def test_spec_from_problem(make_problem):
    problem = make_problem(horizon=3, backtest={"windows": 4, "step": 2, "mode": "sliding",
                                               "window_length": 30})
    spec = BacktestSpec.from_problem(problem, season=12)
    assert spec == BacktestSpec(horizon=3, windows=4, step=2, mode="sliding", window_length=30,
                                min_train=30)
    default = BacktestSpec.from_problem(make_problem(), season=12)
    assert default.step == 6
    assert default.min_train == 2 * 12 + 2
    override = BacktestSpec.from_problem(make_problem(), season=12, windows=1, horizon=2)
    assert (override.windows, override.horizon) == (1, 2)


class NoUpdate(Naive):
    """Naive that cannot move its origin (as a family without ``_update``)."""

    family = "no_update"

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        raise ModelError("no_update cannot move its origin without refitting")


@pytest.mark.parametrize(("refit", "fitted"), [(1, [True, True, True]),
                                               (0, [True, False, False]),
                                               (2, [True, False, True])])
def test_refit_fits_the_windows_it_names_and_moves_the_others(monthly_data, refit, fitted):
    Recorder.seen.clear()
    spec = BacktestSpec(horizon=6, windows=3, step=4, min_train=10, refit=refit)
    result = backtest(Recorder(), monthly_data, spec)
    assert result.windows["refit"].tolist() == fitted
    assert len(Recorder.seen) == sum(fitted)  # moved windows estimate nothing
    # A moved window forecasts from its own cutoff: the last value before it (naive).
    for k, cutoff in enumerate(cutoffs(monthly_data, spec)):
        window = result.predictions[result.predictions["window"] == k]
        assert np.allclose(window["forecast"], monthly_data.y.loc[cutoff].iloc[0])


def test_refit_moved_panel_window_keeps_the_first_windows_estimates(panel_data):
    spec = BacktestSpec(horizon=6, windows=3, step=6, min_train=12, refit=0)
    moved = backtest(SeasonalNaive(season_length=12), panel_data, spec)
    assert moved.windows["refit"].tolist() == [True, False, False]
    # Seasonal naive's point forecasts do not depend on its estimates: equal to refitting.
    every = backtest(SeasonalNaive(season_length=12), panel_data,
                     BacktestSpec(horizon=6, windows=3, step=6, min_train=12))
    np.testing.assert_allclose(moved.predictions["forecast"], every.predictions["forecast"])


def test_a_model_that_cannot_move_is_refitted(monthly_data):
    spec = BacktestSpec(horizon=6, windows=3, step=4, min_train=10, refit=0)
    result = backtest(NoUpdate(), monthly_data, spec)
    assert result.windows["refit"].tolist() == [True, True, True]
    assert result.ok and result.n_failed == 0


def test_refit_default_follows_the_number_of_series(make_problem):
    from forecastflow.evaluation.backtest import REFIT_MAX_SERIES

    problem = make_problem()
    assert BacktestSpec.from_problem(problem, 12, n_series=10).refit == 1
    assert BacktestSpec.from_problem(problem, 12, n_series=REFIT_MAX_SERIES).refit == 0
    said = make_problem(backtest={"refit": 3})
    assert BacktestSpec.from_problem(said, 12, n_series=REFIT_MAX_SERIES).refit == 3
    assert BacktestSpec.from_problem(make_problem(backtest={"refit": True}), 12,
                                     n_series=50_000).refit == 1
    with pytest.raises(ValueError, match="refit must be true, false or a window count"):
        make_problem(backtest={"refit": 0})
