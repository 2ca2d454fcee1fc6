"""SeriesData: storage round trip, fingerprints and the panel helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.problem import parse_problem
from forecastflow.data.series import DATE, SERIES, SeriesData, period_ordinals
from forecastflow.data.validation import validate

N = 24


def single(n: int = N, exog: bool = True) -> SeriesData:
    index = pd.date_range("2020-01-01", periods=n, freq="MS", name=DATE)
    y = pd.DataFrame({"y": np.linspace(1.0, 5.0, n), "z": np.arange(n) * 1.5}, index=index)
    X = pd.DataFrame({"x": np.sin(np.arange(n))}, index=index) if exog else None
    return SeriesData(y, X, "MS", 12)


def panel() -> SeriesData:
    """A validated three-city panel with one city dropped (so ``dropped`` is set)."""
    rows = []
    for sid, offset in (("austin", 0.0), ("dallas", 10.0), ("waco", 20.0)):
        dates = pd.date_range("2020-01-01", periods=N, freq="MS")
        sales = offset + np.arange(1.0, N + 1.0) + (np.arange(N) % 3) / 10
        temp = np.cos(np.arange(N)) + offset
        part = pd.DataFrame({"city": sid, "month": dates, "sales": sales, "temp": temp})
        if sid == "waco":
            part = part.iloc[:-2]  # stale: dropped
        rows.append(part)
    problem = parse_problem({
        "name": "cities", "source": "cities.csv", "time_column": "month", "target": "sales",
        "exog": ["temp"], "id_column": "city", "frequency": "MS", "season_length": 1,
        "horizon": 2, "models": [{"family": "seasonal_naive"}], "backtest": {"windows": 1},
        "drop_invalid_series": True, "ragged_ends": "drop",
    })
    return validate(pd.concat(rows, ignore_index=True), problem)


def assert_same(a: SeriesData, b: SeriesData) -> None:
    pd.testing.assert_frame_equal(a.y, b.y, check_freq=True)
    if a.X is None:
        assert b.X is None
    else:
        pd.testing.assert_frame_equal(a.X, b.X, check_freq=True)
    assert (a.freq, a.season, a.dropped) == (b.freq, b.season, b.dropped)


def test_single_series_round_trip(tmp_path: Path):
    data = single()
    path = data.save(tmp_path / "nested" / "data.parquet")
    assert path == tmp_path / "nested" / "data.parquet" and path.is_file()
    loaded = SeriesData.load(path)
    assert_same(data, loaded)
    assert loaded.y.index.freqstr == "MS"
    assert loaded.X.index.freqstr == "MS"
    assert loaded.targets == ["y", "z"] and loaded.exog == ["x"]
    assert loaded.fingerprint() == data.fingerprint()


def test_round_trip_without_exog(tmp_path: Path):
    data = single(exog=False)
    loaded = SeriesData.load(data.save(tmp_path / "data.parquet"))
    assert loaded.X is None and loaded.exog == []
    assert_same(data, loaded)
    assert loaded.fingerprint() == data.fingerprint()


def test_panel_round_trip_keeps_index_and_dropped(tmp_path: Path):
    data = panel()
    assert data.series_ids == ["austin", "dallas"]
    assert set(data.dropped) == {"waco"} and "stale_series" in data.dropped["waco"]
    loaded = SeriesData.load(data.save(tmp_path / "panel.parquet"))
    assert_same(data, loaded)
    assert loaded.is_panel
    assert list(loaded.y.index.names) == [SERIES, DATE]
    assert loaded.series_ids == ["austin", "dallas"]
    assert loaded.fingerprint() == data.fingerprint()


def test_save_overwrites(tmp_path: Path):
    path = tmp_path / "data.parquet"
    single(n=30).save(path)
    data = single()
    data.save(path)
    assert_same(data, SeriesData.load(path))
    assert [p.name for p in tmp_path.iterdir()] == ["data.parquet"]  # no temp files left


def test_save_does_not_touch_the_frames(tmp_path: Path):
    data = single()
    data.save(tmp_path / "data.parquet")
    assert data.y.attrs == {} and list(data.y.columns) == ["y", "z"]


def test_fingerprint_is_stable_and_sensitive():
    data = single()
    print_ = data.fingerprint()
    assert len(print_) == 16 and int(print_, 16) >= 0
    assert single().fingerprint() == print_  # same values, new objects

    changed = single()
    changed.y.iloc[5, 0] += 1e-6
    assert changed.fingerprint() != print_

    changed_x = single()
    changed_x.X.iloc[0, 0] = 99.0
    assert changed_x.fingerprint() != print_

    shifted = single()
    shifted.y.index = shifted.y.index + pd.offsets.MonthBegin(1)
    assert shifted.fingerprint() != print_

    renamed = single()
    renamed.y.columns = ["y", "w"]
    assert renamed.fingerprint() != print_

    assert single(exog=False).fingerprint() != print_
    assert SeriesData(data.y, data.X, "D", 12).fingerprint() != print_


def test_fingerprint_changes_when_one_panel_value_changes(tmp_path: Path):
    data = panel()
    loaded = SeriesData.load(data.save(tmp_path / "panel.parquet"))
    loaded.y.iloc[-1, 0] += 1.0
    assert loaded.fingerprint() != data.fingerprint()


def test_panel_helpers():
    data = panel()
    assert data.end == pd.Timestamp("2020-01-01") + pd.offsets.MonthBegin(N - 1)
    one = data.series("dallas")
    assert not one.is_panel and one.series_ids == []
    assert one.y.index.freqstr == "MS" and one.X.index.freqstr == "MS"
    assert one.y["sales"].iloc[0] == pytest.approx(11.0)
    assert [sid for sid, _ in data.iter_series()] == ["austin", "dallas"]
    sub = data.subset(["dallas"])
    assert sub.series_ids == ["dallas"] and len(sub.X) == N
    early = data.until(pd.Timestamp("2020-06-01"))
    assert early.end == pd.Timestamp("2020-06-01")
    assert len(early.y) == 2 * 6 and len(early.X) == 2 * 6


def test_single_series_helpers():
    data = single()
    assert [sid for sid, _ in data.iter_series()] == [None]
    assert data.subset(["anything"]) is data
    early = data.until(pd.Timestamp("2020-12-01"))
    assert len(early.y) == 12 and len(early.X) == 12
    assert early.end == pd.Timestamp("2020-12-01")


@pytest.mark.parametrize(("freq", "periods"), [("MS", 12), ("QS", 4), ("D", 7), ("W-SUN", 52),
                                               ("YS", 1), ("h", 24), ("ME", 12)])
def test_period_ordinals_are_consecutive(freq: str, periods: int):
    index = pd.date_range("2019-01-01", periods=3 * periods + 2, freq=freq)
    ordinals = period_ordinals(index, freq)
    assert np.array_equal(np.diff(ordinals), np.ones(len(index) - 1, dtype=ordinals.dtype))
    # The season position depends on the date only, not on where a series starts.
    later = period_ordinals(index[periods:], freq)
    assert np.array_equal(later % periods, ordinals[periods:] % periods)


def test_period_ordinals_agree_across_series():
    a = pd.date_range("2018-03-01", periods=30, freq="MS")
    b = pd.date_range("2020-03-01", periods=5, freq="MS")
    assert period_ordinals(a, "MS")[24] % 12 == period_ordinals(b, "MS")[0] % 12
