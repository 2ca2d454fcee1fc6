"""The statsforecast peers of bench/accuracy.py, run by the peers' own virtualenv.

    <peers venv>/bin/python bench/peers.py train.parquet out.parquet --freq MS --season 12 \
        --horizon 18 --jobs 2 --level 90

``train.parquet`` has columns unique_id, ds, y. Writes one row per (model, series, step):
model, unique_id, ds, mean, lower, upper, and prints one JSON line per model with its wall
time. Nothing of the project is imported here (the project needs pandas 3, statsforecast
2.1.1 needs pandas < 3).
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("train")
    parser.add_argument("out")
    parser.add_argument("--freq", required=True)
    parser.add_argument("--season", type=int, required=True)
    parser.add_argument("--horizon", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--level", type=int, default=90)
    parser.add_argument("--models", nargs="+",
                        default=["AutoETS", "AutoTheta", "AutoARIMA", "SeasonalNaive"])
    args = parser.parse_args()

    from statsforecast import StatsForecast
    from statsforecast import models as sf_models

    train = pd.read_parquet(args.train)
    parts = []
    for name in args.models:
        model = getattr(sf_models, name)(season_length=args.season)
        start = time.perf_counter()
        fc = StatsForecast(models=[model], freq=args.freq, n_jobs=args.jobs).forecast(
            df=train, h=args.horizon, level=[args.level])
        seconds = time.perf_counter() - start
        fc = fc.reset_index() if "unique_id" not in fc.columns else fc
        column = next(c for c in fc.columns if c not in ("unique_id", "ds")
                      and "-lo-" not in c and "-hi-" not in c)
        parts.append(pd.DataFrame({
            "model": name, "unique_id": fc["unique_id"].astype(str), "ds": fc["ds"],
            "mean": fc[column], "lower": fc[f"{column}-lo-{args.level}"],
            "upper": fc[f"{column}-hi-{args.level}"]}))
        print(json.dumps({"model": name, "seconds": seconds}), flush=True)
    pd.concat(parts, ignore_index=True).to_parquet(args.out)


if __name__ == "__main__":
    main()
