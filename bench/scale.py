"""How fitting and forecasting grow with the number of series (first part of the scale
benchmark: the model level; the DAG-level runs come next).

    cd bench && ../.venv/bin/python scale.py [--sizes 1000 10000] [--jobs 2]

Panels of N monthly series are built from real ones the project loads offline (M1 monthly and
Tourism monthly, 983 series): series k is base series k mod 983, multiplied by its own random
scale and by independent noise (3% per point), and cut to a random length (at least 4 years),
so no two are equal. The last 12 months are held out. For each size, in a fresh process (so
that its peak memory is its own): the default ensemble of a problem without ``models:``
(``forecastflow.evaluation.defaults``), fit and forecast, with its pickled size; ``fast_ets``
alone; and statsforecast's AutoETS with the same number of processes (in the bench's peers
virtualenv). Prints seconds per 1,000 series, so linear growth shows as a constant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
from competitions import END, Competition, m1_monthly, scores, tourism

HORIZON, SEASON = 12, 12


def bases() -> list[np.ndarray]:
    """The whole of every M1 and Tourism monthly series (training and test parts)."""
    out = []
    for comp in (m1_monthly(), tourism("monthly")):
        full = pd.concat([comp.train, comp.test]).sort_values(["series_id", "date"])
        out += [g.to_numpy(dtype=float) for _, g in full.groupby("series_id")["value"]]
    return [b for b in out if len(b) >= 4 * SEASON + HORIZON]


def panel(n_series: int, seed: int = 0) -> Competition:
    """``n_series`` rescaled, noisy, cut copies of the base series, split as a competition."""
    rng = np.random.default_rng(seed)
    found = bases()
    train, test = [], []
    for k in range(n_series):
        base = found[k % len(found)]
        length = int(rng.integers(4 * SEASON + HORIZON, len(base) + 1))
        values = base[-length:] * rng.lognormal(0.0, 0.5) * rng.normal(1.0, 0.03, length)
        values = np.maximum(values, 0.0)
        dates = pd.date_range(end=END["MS"], periods=length, freq="MS")
        sid = f"s{k:06d}"
        train.append(pd.DataFrame({"series_id": sid, "date": dates[:-HORIZON],
                                   "value": values[:-HORIZON]}))
        test.append(pd.DataFrame({"series_id": sid, "date": dates[-HORIZON:],
                                  "value": values[-HORIZON:]}))
    return Competition(f"scale_{n_series}", pd.concat(train, ignore_index=True),
                       pd.concat(test, ignore_index=True), HORIZON, SEASON, "MS")


def _long(fc: object, comp: Competition) -> pd.DataFrame:
    long = fc.to_long().rename(columns={"forecast": "mean"})  # type: ignore[attr-defined]
    long["date"] = pd.to_datetime(long["date"]).astype("datetime64[ns]")
    return long[["series_id", "date", "mean", "lower", "upper"]]


def measure_one(n_series: int) -> dict[str, float]:
    """One size, in this process: ForecastFlow's default ensemble and fast_ets."""
    from forecastflow.evaluation.defaults import ensemble_params
    from forecastflow.models import build_model

    comp = panel(n_series)
    y = comp.train.set_index(["series_id", "date"])[["value"]]
    out: dict[str, float] = {"series": n_series, "points": len(y)}
    start = time.perf_counter()
    fast = build_model("fast_ets", {}, season_length=SEASON).fit(y)
    out["fast_ets_fit_s"] = time.perf_counter() - start
    out["fast_ets_smape"] = scores(comp, _long(fast.predict(HORIZON), comp))["smape"]
    out["fast_ets_model_mb"] = len(pickle.dumps(fast)) / 1e6
    start = time.perf_counter()
    model = build_model("ensemble", ensemble_params(n_series, SEASON), season_length=SEASON,
                        horizon=HORIZON).fit(y)
    out["ensemble_fit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    fc = model.predict(HORIZON)
    out["ensemble_predict_s"] = time.perf_counter() - start
    out["ensemble_smape"] = scores(comp, _long(fc, comp))["smape"]
    out["ensemble_model_mb"] = len(pickle.dumps(model)) / 1e6
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    if args.one is not None:
        print(json.dumps(measure_one(args.one)))
        return 0
    from panels import run_peers

    env = {**os.environ, "FORECASTFLOW_JOBS": str(args.jobs)}
    print("| series | what | fit s | s per 1k series | model MB | peak RSS MB | sMAPE |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], env=env,
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        comp = panel(n)
        fc, peer_s = run_peers(comp, args.jobs, ("AutoETS",))["AutoETS"]
        peer_smape = scores(comp, fc)["smape"]
        rows = [("fast_ets", r["fast_ets_fit_s"], r["fast_ets_model_mb"], "",
                 r["fast_ets_smape"]),
                ("default ensemble (fit + forecast)", r["ensemble_fit_s"] +
                 r["ensemble_predict_s"], r["ensemble_model_mb"], f"{r['peak_rss_mb']:.0f}",
                 r["ensemble_smape"]),
                (f"statsforecast AutoETS ({args.jobs} jobs)", peer_s, float("nan"), "",
                 peer_smape)]
        for what, seconds, mb, rss, smape in rows:
            print(f"| {n} | {what} | {seconds:.1f} | {1000 * seconds / n:.2f} | {mb:.2f} | "
                  f"{rss} | {smape:.2f} |", flush=True)
        ours = r["ensemble_fit_s"] + r["ensemble_predict_s"]
        print(f"| {n} | ratio ensemble / AutoETS | {ours / peer_s:.2f} | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
