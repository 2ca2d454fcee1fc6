"""The data profile: one row per series and target, equal to each series' own statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.profile import data_profile
from forecastflow.data.series import DATE, SERIES, SeriesData


def test_profile_of_a_ragged_panel_with_two_targets():
    rng = np.random.default_rng(0)
    frames = []
    for sid, n, start in (("b", 30, "2019-01-01"), ("a", 18, "2020-03-01"), ("c", 5, "2021-01-01")):
        dates = pd.date_range(start, periods=n, freq="MS", name=DATE)
        frames.append(pd.DataFrame({"y": rng.normal(10, 2, n), "z": rng.gamma(2.0, 1.0, n)},
                                   index=pd.MultiIndex.from_product([[sid], dates],
                                                                    names=[SERIES, DATE])))
    panel = pd.concat(frames)
    profile = data_profile(SeriesData(panel, None, "MS", 12))
    assert list(profile.index) == [(s, t) for s in ("b", "a", "c") for t in ("y", "z")]
    for (sid, target), row in profile.iterrows():
        values = panel.xs(sid, level=SERIES)[target]
        assert row["start"] == values.index.min().date()
        assert row["end"] == values.index.max().date()
        assert row["length"] == len(values)
        for stat in ("mean", "std", "min", "max"):
            assert np.isclose(row[stat], getattr(values, stat)())


def test_profile_of_one_series():
    dates = pd.date_range("2020-01-01", periods=12, freq="MS", name=DATE)
    y = pd.DataFrame({"y": np.arange(12.0)}, index=dates)
    profile = data_profile(SeriesData(y, None, "MS", 12))
    assert list(profile.index) == [("-", "y")]
    assert profile.loc[("-", "y"), "length"] == 12 and profile.loc[("-", "y"), "max"] == 11.0
