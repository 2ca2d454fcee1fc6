"""Search batches: a problem's trials (and, for per-series models on panels, slices of its
series) dealt into balanced batches, one mapped search task each."""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from forecastflow.lifecycle import tracking
from forecastflow.orchestration.context import Context, effective_problem

log = logging.getLogger(__name__)


# Rough relative cost of one trial on one series, to balance the search batches.
FAMILY_COST = {"naive": 0.01, "seasonal_naive": 0.01, "drift": 0.01, "sarimax": 1.0,
               "varmax": 3.0, "gradient_boosting": 0.8, "ets": 1.0, "fast_ets": 0.1,
               "theta": 0.02,
               "auto_arima": 5.0, "ensemble": 3.0}


def is_global(trial: dict[str, Any]) -> bool:
    """Whether a trial (``Trial.to_dict()``) fits one model over all series of a panel (global
    gradient boosting): it is never cut into series slices."""
    return trial["family"] == "gradient_boosting" and trial["params"].get("global_model", True)


def plan(ctx: Context, validated: dict[str, Any]) -> list[dict[str, Any]]:
    """Work items (a trial, and for local models on panels a slice of the series) dealt into
    at most ``parallelism`` balanced batches: one mapped search task per batch, never one
    task per series x trial."""
    from forecastflow.evaluation.search import plan_trials

    problem = effective_problem(ctx)
    params = ctx.get("params") or {}
    from forecastflow.data.series import SeriesData

    data = SeriesData.load(validated["data"])
    trials = plan_trials(problem, params.get("families") or None,
                         params.get("max_trials") or None, data)
    n_batches = max(1, int(params.get("parallelism") or 4))
    series = data.y.index
    ids = (list(series.get_level_values(0).unique()) if isinstance(series, pd.MultiIndex)
           else [])
    items = []
    for trial in trials:
        if ids and not is_global(trial.to_dict()):
            size = math.ceil(len(ids) / n_batches)
            # A slice of the data's series order, not the ids: the XCom stays a few hundred
            # bytes however many series the panel has.
            chunks: list[list[int] | None] = [[start, min(start + size, len(ids))]
                                              for start in range(0, len(ids), size)]
        else:
            chunks = [None]
        for chunk in chunks:
            cost = FAMILY_COST.get(trial.family, 1.0) * (chunk[1] - chunk[0] if chunk else max(
                len(ids), 1))
            items.append({"trial": trial.to_dict(), "series_slice": chunk, "cost": cost})
    # Longest processing time first: each item goes to the least loaded batch.
    loads = [0.0] * min(n_batches, len(items))
    run = {k: v for k, v in validated.items() if k != "dropped"}
    planned = [{"batch": i, "items": [], "run": run} for i in range(len(loads))]
    for item in sorted(items, key=lambda it: -it["cost"]):
        target = loads.index(min(loads))
        planned[target]["items"].append(item)
        loads[target] += item["cost"]
    log.info("planned %d trial(s) as %d work item(s) in %d batch(es): %s", len(trials),
             len(items), len(planned), sorted({t.family for t in trials}))
    tracking.log_run(validated["parent_run_id"], params={
        "n_trials": len(trials), "families": sorted({t.family for t in trials})})
    return planned


