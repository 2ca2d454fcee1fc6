"""Accuracy against the statsforecast peers on competition panels and single series.

    .venv/bin/python bench/accuracy_panels.py [--only tourism_quarterly airpassengers ...]
        [--jobs 2] [--json out.json]

For each dataset: sMAPE, MASE and 90% interval coverage on the held-out part, and wall time,
for ForecastFlow's ensemble variants and the peers (AutoETS, AutoTheta, AutoARIMA,
SeasonalNaive), then whether the targets are met: on a panel, the chosen variant at least as
accurate as the best peer in sMAPE and MASE; on a single series, MASE within 5% of the best
peer's; coverage within 3 points of 90%. See bench/panels.py for the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

import competitions
import panels

# The variant the targets are checked on: what a problem without models gets by default
# (forecastflow.evaluation.defaults): the median of all members on panels of 20 series or
# more, else the mean of the best two.
PANEL_CHOSEN, SINGLE_CHOSEN = "median all", "mean top-2"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+",
                        default=[*competitions.SINGLES, *competitions.PANELS])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    os.environ.setdefault("FORECASTFLOW_JOBS", str(args.jobs))
    rows = []
    for name in args.only:
        comp = competitions.load(name)
        found = {}
        for model, (fc, seconds) in panels.run_peers(comp, args.jobs).items():
            found[model] = {**competitions.scores(comp, fc), "seconds": seconds}
        variants, seconds, wins = panels.run_forecastflow(comp)
        for variant, fc in variants.items():
            found[f"ForecastFlow {variant}"] = {**competitions.scores(comp, fc),
                                                "seconds": seconds}
        for model, s in found.items():
            rows.append({"dataset": name, "series": comp.n_series, "horizon": comp.horizon,
                         "model": model, **s})
            print(f"{name:18s} {model:26s} sMAPE {s['smape']:6.2f}  MASE {s['mase']:.3f}  "
                  f"coverage {s['coverage']:.3f}  {s['seconds']:7.1f}s", flush=True)
        print(f"{name:18s} per-series best: {wins}", flush=True)
    print("\n| dataset | series | h | model | sMAPE | MASE | coverage 90% | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['series']} | {r['horizon']} | {r['model']} | "
              f"{r['smape']:.2f} | {r['mase']:.3f} | {r['coverage']:.3f} | "
              f"{r['seconds']:.1f} |")
    print()
    for name in dict.fromkeys(r["dataset"] for r in rows):
        part = {r["model"]: r for r in rows if r["dataset"] == name}
        peers = [r for m, r in part.items() if not m.startswith("ForecastFlow")]
        chosen = PANEL_CHOSEN if part[next(iter(part))]["series"] >= 20 else SINGLE_CHOSEN
        ours = part[f"ForecastFlow {chosen}"]
        best_smape = min(p["smape"] for p in peers)
        best_mase = min(p["mase"] for p in peers)
        if ours["series"] > 1:
            ok = ours["smape"] <= best_smape and ours["mase"] <= best_mase
            what = (f"sMAPE {ours['smape']:.2f} vs best peer {best_smape:.2f}, MASE "
                    f"{ours['mase']:.3f} vs {best_mase:.3f}")
        else:
            ok = ours["mase"] <= 1.05 * best_mase
            what = f"MASE {ours['mase']:.3f} vs best peer {best_mase:.3f} (+5% allowed)"
        cover = abs(ours["coverage"] - 0.9) <= 0.03
        print(f"{name:18s} {chosen}: accuracy {'met' if ok else 'MISSED'} ({what}); coverage "
              f"{'met' if cover else 'MISSED'} ({ours['coverage']:.3f})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
