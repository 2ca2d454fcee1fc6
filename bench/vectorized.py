"""The array-code families, fitted on a whole panel at once: ``theta`` against the same model
fitted series by series and against statsforecast's AutoTheta; ``fast_ets`` against
statsforecast's AutoETS, on the same panels in the same run.

    cd bench && ../.venv/bin/python vectorized.py [--copies 16] [--jobs 2]

Panels: M1 monthly (617 series) and ``--copies`` rescaled copies of it (each copy's series
multiplied by its own factor and given independent noise, so no two are equal). Prints fit +
forecast wall seconds, series per second, and the sMAPE and MASE on M1's held-out part.
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


def fit_forecast(comp: Competition, family: str, one_by_one: bool = False,
                 ) -> tuple[pd.DataFrame, float]:
    from forecastflow.models import build_model

    def model():
        return build_model(family, {}, season_length=comp.season)

    y = comp.train.set_index(["series_id", "date"])[["value"]]
    start = time.perf_counter()
    if one_by_one:
        frames = []
        for sid, part in y.groupby(level="series_id", sort=False):
            single = part.droplevel("series_id")
            single.index = pd.DatetimeIndex(single.index, freq=comp.freq, name="date")
            long = model().fit(single).predict(comp.horizon).to_long()
            frames.append(long.assign(series_id=sid))
        long = pd.concat(frames, ignore_index=True)
    else:
        long = model().fit(y).predict(comp.horizon).to_long()
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
    print("| panel | series | method | wall s | series/s | sMAPE / MASE (M1 holdout) |")
    print("|---|---|---|---|---|---|")
    for comp in (m1, big):
        runs = [("ForecastFlow theta, whole panel", *fit_forecast(comp, "theta"))]
        if comp is m1:
            runs.append(("ForecastFlow theta, one by one", *fit_forecast(comp, "theta", True)))
        runs.append(("ForecastFlow fast_ets, whole panel", *fit_forecast(comp, "fast_ets")))
        peers = run_peers(comp, args.jobs, ("AutoTheta", "AutoETS"))
        for peer, (fc, seconds) in peers.items():
            runs.append((f"statsforecast {peer} ({args.jobs} jobs)", fc, seconds))
        for name, fc, seconds in runs:
            found = scores(comp, fc) if comp is m1 else None
            accuracy = f"{found['smape']:.2f} / {found['mase']:.3f}" if found else "-"
            print(f"| {comp.name} | {comp.n_series} | {name} | {seconds:.2f} | "
                  f"{comp.n_series / seconds:.0f} | {accuracy} |", flush=True)


if __name__ == "__main__":
    main()
