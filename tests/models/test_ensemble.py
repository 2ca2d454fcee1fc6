"""The ensemble family: per-series choice, combinations, calibrated intervals, ragged ends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastflow import storage
from forecastflow.data.series import DATE, SERIES
from forecastflow.models import Ensemble, ModelError, build_model
from forecastflow.models.transforms import ForecastPipeline

MEMBERS = [{"family": "seasonal_naive"}, {"family": "drift"}, {"family": "naive"}]


def two_kinds(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Series ``seasonal`` (a pure yearly cycle: seasonal naive is right) and ``trend`` (a
    straight line: drift is right), with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    dates = pd.date_range("2015-01-01", periods=n, freq="MS", name=DATE)
    seasonal = 100 + 20 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, n)
    trend = 50 + 3.0 * t + rng.normal(0, 0.5, n)
    return pd.concat({"seasonal": pd.DataFrame({"y": seasonal}, index=dates),
                      "trend": pd.DataFrame({"y": trend}, index=dates)}, names=[SERIES, DATE])


def ensemble(**params: object) -> Ensemble:
    params = {"members": MEMBERS, "combination": "best", "top_k": 1, **params}
    return build_model("ensemble", params, season_length=12, horizon=6)


def test_each_series_gets_the_member_that_forecasts_it_best():
    model = ensemble().fit(two_kinds())
    assert model.choice_ == {"seasonal": [0], "trend": [1]}
    assert model.wins() == {"drift": 1, "seasonal_naive": 1}
    table = model.choice_table()
    assert list(table[SERIES]) == ["seasonal", "trend"]
    assert list(table["family"]) == ["seasonal_naive", "drift"]
    assert {"mae: seasonal_naive", "mae: drift", "mae: naive"} <= set(table.columns)
    # Only the members some series uses are fitted, each on its own series.
    assert set(model.members_) == {0, 1}
    assert set(model.members_[1].last_) == {"trend"}


def test_forecasts_are_the_chosen_members_forecasts():
    y = two_kinds()
    model = ensemble(calibrate=False).fit(y)
    fc = model.predict(6)
    alone = build_model("drift", {}).fit(y.xs("trend", level=SERIES).asfreq("MS"))
    np.testing.assert_allclose(fc.mean.loc["trend", "y"].to_numpy(),
                               alone.predict(6).mean["y"].to_numpy())
    np.testing.assert_allclose(fc.upper.loc["trend", "y"].to_numpy(),
                               alone.predict(6).upper["y"].to_numpy())


@pytest.mark.parametrize("how", ["mean", "median"])
def test_combinations_of_the_top_members(how):
    y = two_kinds()
    model = ensemble(combination=how, top_k=3 if how == "median" else 2,
                     calibrate=False).fit(y)
    fc = model.predict(4).mean.loc["trend", "y"].to_numpy()
    single = y.xs("trend", level=SERIES).asfreq("MS")
    parts = {m["family"]: build_model(m["family"], {}, season_length=12).fit(single).predict(
        4).mean["y"].to_numpy() for m in MEMBERS}
    chosen = [MEMBERS[i]["family"] for i in model.choice_["trend"]]
    expected = (np.median if how == "median" else np.mean)([parts[f] for f in chosen], axis=0)
    np.testing.assert_allclose(fc, expected)
    assert chosen[0] == "drift"


def test_calibration_moves_interval_width_towards_the_nominal_coverage():
    rng = np.random.default_rng(3)
    dates = pd.date_range("2010-01-01", periods=80, freq="MS", name=DATE)
    # Random walks with one early jump: in-sample residuals overstate the noise, so the
    # members' intervals are too wide and the validation errors say so.
    frames = {}
    for k in range(12):
        steps = rng.normal(0, 1, 80)
        steps[5] = 40.0
        frames[f"s{k}"] = pd.DataFrame({"y": 100 + np.cumsum(steps)}, index=dates)
    y = pd.concat(frames, names=[SERIES, DATE])
    raw = ensemble(calibrate=False, windows=3).fit(y)
    calibrated = ensemble(windows=3).fit(y)
    assert calibrated.factors_ is not None and len(calibrated.factors_) == 6
    assert all(0.2 <= f < 1.0 for f in calibrated.factors_)  # narrower
    a, b = raw.predict(6), calibrated.predict(6)
    np.testing.assert_allclose(a.mean.to_numpy(), b.mean.to_numpy())
    ratio = ((b.upper - b.mean) / (a.upper - a.mean)).to_numpy().ravel()
    steps = np.tile(np.arange(6), 12)
    np.testing.assert_allclose(ratio, np.asarray(calibrated.factors_)[steps], rtol=1e-9)
    # The weight shrinks the validation factors toward the members' own intervals
    # (geometrically): 1 applies them fully, 0 not at all.
    full = ensemble(windows=3, calibration_weight=1.0).fit(y)
    np.testing.assert_allclose(np.asarray(calibrated.factors_),
                               np.sqrt(np.asarray(full.factors_)), rtol=1e-9)
    none = ensemble(windows=3, calibration_weight=0.0).fit(y)
    np.testing.assert_allclose(none.predict(6).upper.to_numpy(), a.upper.to_numpy())
    with pytest.raises(ModelError, match="calibration_weight"):
        ensemble(calibration_weight=1.5).fit(y)


def test_ragged_series_are_validated_and_forecast_from_their_own_ends():
    y = two_kinds()
    y = y.drop(index=y.loc["trend"].index[-5:].map(lambda d: ("trend", d)))
    model = ensemble().fit(y)
    fc = model.predict(3)
    starts = fc.mean.reset_index().groupby(SERIES)[DATE].min()
    assert starts["seasonal"] == pd.Timestamp("2020-01-01")
    assert starts["trend"] == pd.Timestamp("2019-08-01")
    assert model.choice_["trend"] == [1]


def test_single_series_pipeline_round_trip_and_update(tmp_path):
    y = two_kinds().xs("trend", level=SERIES).asfreq("MS")
    model = ForecastPipeline(ensemble(), "log").fit(y.iloc[:-6])
    assert model.model_.choice_["_"] != [0]  # a trend: not seasonal naive
    loaded = storage.read_model(storage.write_model(model, tmp_path / "m.pkl"))
    pd.testing.assert_frame_equal(loaded.predict(6).mean, model.predict(6).mean)
    moved = model.update(y)
    assert moved.predict(1).mean.index[0] == y.index[-1] + pd.offsets.MonthBegin()


@pytest.mark.parametrize(("params", "words"), [
    ({"combination": "vote"}, ["combination", "'vote'"]),
    ({"combination": "mean", "top_k": 4}, ["top_k", "3 member"]),
    ({"windows": 0}, ["windows", "0"]),
    ({"members": [{"family": "prophet"}]}, ["prophet"]),
    ({"members": [{"family": "ets", "params": {"alpha": 1}}]}, ["ets", "alpha"]),
    ({"members": [{"family": "ensemble"}]}, ["ensemble member"]),
    ({"members": [{"family": "naive", "lags": 2}]}, ["unknown keys", "lags"]),
])
def test_bad_parameters_are_refused_by_name(params, words):
    with pytest.raises(ModelError) as info:
        build_model("ensemble", {"members": MEMBERS, **params}, season_length=12,
                    horizon=6).fit(two_kinds())
    assert all(w in str(info.value) for w in words), str(info.value)


def test_variants_reuse_one_validation():
    model = ensemble(combination="mean", top_k=3).fit(two_kinds())
    best = model.variant("best", 1)
    assert best.choice_ == {"seasonal": [0], "trend": [1]}
    assert model.choice_["trend"][0] == 1 and len(model.choice_["trend"]) == 3
    refit = ensemble().fit(two_kinds())
    np.testing.assert_allclose(best.predict(6).mean.to_numpy(), refit.predict(6).mean.to_numpy())
    narrow = ensemble().fit(two_kinds())
    with pytest.raises(ModelError, match=r"members .* were not fitted"):
        narrow.variant("mean", 3)
    import pickle

    with pytest.raises(ModelError, match="validation forecasts"):
        pickle.loads(pickle.dumps(model)).variant("best", 1)


def test_default_members_follow_the_season():
    assert [m["family"] for m in Ensemble(season_length=12).member_specs()] == [
        "ets", "theta", "seasonal_naive"]
    assert Ensemble(season_length=1).member_specs()[-1]["family"] == "naive"


def test_validation_moves_earlier_fits_and_fits_only_series_new_to_a_window(monkeypatch):
    """A series too short for the earlier validation window joins in the later one: the
    other series' fits are moved (update), only the newcomer is fitted."""
    panel = two_kinds(60)
    short = two_kinds(36, seed=1).rename(index={"seasonal": "short"}, level=SERIES).loc[
        ["short"]]
    panel = pd.concat([panel, short])
    fits: list[list[str]] = []
    original = Ensemble._build

    def counting(self: Ensemble, spec: dict) -> object:
        model = original(self, spec)
        fit = model.fit

        def recorded(y: pd.DataFrame, X: pd.DataFrame | None = None) -> object:
            if spec["family"] == "drift":
                fits.append(sorted(set(y.index.get_level_values(SERIES))))
            return fit(y, X)

        model.fit = recorded
        return model

    monkeypatch.setattr(Ensemble, "_build", counting)
    model = ensemble(windows=2, horizon=6).fit(panel)
    # window 2: the two long series; window 1: only the short one (the others moved); then
    # the final fit of the series drift forecasts.
    assert fits[:2] == [["seasonal", "trend"], ["short"]]
    assert np.isfinite(model.scores_.to_numpy()).all()
