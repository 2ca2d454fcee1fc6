"""Theta fitted on a whole panel at once (array code over series) against the same model
fitted series by series, and against statsforecast's AutoTheta on the same panel.

    cd bench && ../.venv/bin/python vectorized.py [--copies 16] [--jobs 2]

Panels: M1 monthly (617 series) and ``--copies`` rescaled copies of it (each copy's series
multiplied by its own factor and given independent noise, so no two are equal). Prints fit +
forecast wall seconds, series per second, and the sMAPE of the vectorized and the peer's
forecasts on M1's held-out part (the same method, so they should be close).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
from competitions import Competition, load, scores
from panels import run_peers


def copies(comp: Competition, n: int, seed: int = 0) -> Competition:
    """``n`` noisy rescaled copies of every series of ``comp`` (training part only)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n):
        part = comp.train.copy()
        noise = rng.normal(1.0, 0.02, len(part))
        part["value"] = part["value"] * rng.uniform(0.5, 2.0) * noise
        part["series_id"] = part["series_id"] + f"_c{k}"
        parts.append(part)
    return Competition(f"{comp.name}_x{n}", pd.concat(parts, ignore_index=True),
                       comp.test.iloc[:0], comp.horizon, comp.season, comp.freq)


def fit_forecast(comp: Competition, one_by_one: bool) -> tuple[pd.DataFrame, float]:
    from forecastflow.models.theta import Theta

    y = comp.train.set_index(["series_id", "date"])[["value"]]
    start = time.perf_counter()
    if one_by_one:
        frames = []
        for sid, part in y.groupby(level="series_id", sort=False):
            single = part.droplevel("series_id")
            single.index = pd.DatetimeIndex(single.index, freq=comp.freq, name="date")
            long = Theta(season_length=comp.season).fit(single).predict(
                comp.horizon).to_long()
            frames.append(long.assign(series_id=sid))
        long = pd.concat(frames, ignore_index=True)
    else:
        long = Theta(season_length=comp.season).fit(y).predict(comp.horizon).to_long()
    seconds = time.perf_counter() - start
    long = long.rename(columns={"forecast": "mean"})
    long["date"] = pd.to_datetime(long["date"]).astype("datetime64[ns]")
    return long[["series_id", "date", "mean", "lower", "upper"]], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    m1 = load("m1_monthly")
    big = copies(m1, args.copies)
    print("| panel | series | method | wall s | series/s | sMAPE (M1 holdout) |")
    print("|---|---|---|---|---|---|")
    for comp in (m1, big):
        runs = [("ForecastFlow theta, vectorized", *fit_forecast(comp, False))]
        if comp is m1:
            runs.append(("ForecastFlow theta, one by one", *fit_forecast(comp, True)))
        fc, seconds = run_peers(comp, args.jobs, ("AutoTheta",))["AutoTheta"]
        runs.append((f"statsforecast AutoTheta ({args.jobs} jobs)", fc, seconds))
        for name, fc, seconds in runs:
            smape = f"{scores(comp, fc)['smape']:.2f}" if comp is m1 else "-"
            print(f"| {comp.name} | {comp.n_series} | {name} | {seconds:.2f} | "
                  f"{comp.n_series / seconds:.0f} | {smape} |", flush=True)


if __name__ == "__main__":
    main()
