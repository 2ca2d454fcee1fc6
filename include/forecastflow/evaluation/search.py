"""Hyperparameter search: plan trials from search spaces, run one trial as one pure call,
select the best trial per family and the best family.

A trial is small and JSON-serializable (family, params, transform), so an orchestrator can map
over trials, or over batches of trials by batches of series for large panels, and pass results
back as plain dicts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import random
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.data.problem import (
    Distribution,
    ModelSpec,
    ProblemConfig,
    ProblemConfigError,
    parse_problem,
)
from forecastflow.data.series import SeriesData
from forecastflow.evaluation.backtest import BacktestSpec, backtest
from forecastflow.evaluation.metrics import METRICS, score
from forecastflow.models import BASELINE, build_model
from forecastflow.models.transforms import ForecastPipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    family: str
    params: dict[str, Any]
    transform: str = "none"

    def label(self, keys: Collection[str] | None = None) -> str:
        """A short readable name: family, ARMA orders, the parameters ``keys`` (default all)
        and the transform: ``sarimax (1,1,1)(0,1,1) log``, ``gradient_boosting lags=12
        depth=3``. See :func:`trial_labels` for names that show only what differs."""
        keys = self.params if keys is None else keys
        orders = "".join(_short(self.params[k]) for k in ORDER_PARAMS
                         if self.params.get(k) is not None)
        others = [f"{SHORT_NAMES.get(k, k)}={_short(self.params[k])}" for k in sorted(keys)
                  if k in self.params and k not in ORDER_PARAMS]
        parts = [self.family, orders, *others, "" if self.transform == "none" else
                 self.transform]
        return " ".join(p for p in parts if p)[:240]

    @property
    def trial_id(self) -> str:
        payload = json.dumps([self.family, self.params, self.transform], sort_keys=True,
                             default=str)
        return f"{self.family}-{hashlib.sha1(payload.encode()).hexdigest()[:8]}"

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(data["family"], dict(data["params"]), data.get("transform", "none"))

    def build(self, problem: ProblemConfig, season: int) -> ForecastPipeline:
        model = build_model(self.family, self.params, coverage=problem.coverage,
                            season_length=season, horizon=problem.horizon)
        return ForecastPipeline(model, self.transform)


# Run names: ARMA orders are shown bare, (p,d,q)(P,D,Q), always; long parameter names short.
ORDER_PARAMS = ("order", "seasonal_order")
SHORT_NAMES = {"learning_rate": "lr", "max_leaf_nodes": "leaves", "max_depth": "depth",
               "max_iter": "iter", "min_samples_leaf": "min_leaf", "l2_regularization": "l2",
               "differencing": "diff", "global_model": "global"}


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"({','.join(_short(v) for v in value)})"
    return f"{value:g}" if isinstance(value, float) else str(value)


def trial_labels(trials: list[Trial]) -> dict[str, str]:
    """Short, distinct names by ``trial_id``: family, ARMA orders, the parameters that differ
    between the family's trials, transform (``sarimax (2,0,0) log-diff``)."""
    by_family: dict[str, list[Trial]] = {}
    for trial in trials:
        by_family.setdefault(trial.family, []).append(trial)
    labels = {}
    for group in by_family.values():
        keys = {k for t in group for k in t.params
                if len({json.dumps(u.params.get(k), sort_keys=True, default=str)
                        for u in group}) > 1}
        labels.update({t.trial_id: t.label(keys) for t in group})
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    # Values that print alike (rounding) or an identical trial twice: the id tells them apart.
    return {tid: f"{label} [{tid.rsplit('-', 1)[-1]}]" if seen[label] > 1 else label
            for tid, label in labels.items()}


@dataclass
class TrialResult:
    trial: Trial
    metrics: dict[str, float]
    windows: list[dict[str, Any]]
    status: str
    seconds: float
    n_series: int = 1
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Every window's forecasts against actuals, kept in memory (not serialized).
    predictions: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def n_failed_windows(self) -> int:
        return sum(1 for w in self.windows if w["status"] != "ok")

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial.to_dict(), "metrics": self.metrics, "windows": self.windows,
                "status": self.status, "seconds": self.seconds, "n_series": self.n_series,
                "error": self.error, "extra": self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(Trial.from_dict(data["trial"]), data["metrics"], data["windows"],
                   data["status"], data["seconds"], data.get("n_series", 1),
                   data.get("error", ""), data.get("extra", {}))


def _sample(space: Distribution, rng: random.Random) -> float | int:
    if space.log:
        value = math.exp(rng.uniform(math.log(space.low), math.log(space.high)))
    else:
        value = rng.uniform(space.low, space.high)
    return round(value) if space.integer else round(value, 6)


def expand(spec: ModelSpec, budget: int, seed: int = 0) -> list[dict[str, Any]]:
    """Parameter sets for one family: the full grid when it fits in ``budget``, otherwise a
    seeded random sample of it (ranges are sampled)."""
    rng = random.Random(f"{seed}-{spec.family}")
    grids = {k: v for k, v in spec.search.items() if isinstance(v, list)}
    ranges = {k: v for k, v in spec.search.items() if isinstance(v, Distribution)}
    names = list(grids)
    combos = [dict(zip(names, values, strict=True))
              for values in itertools.product(*grids.values())] or [{}]
    if not ranges and len(combos) <= budget:
        chosen = combos
    elif not ranges:
        chosen = rng.sample(combos, budget)
    else:
        chosen = [{**rng.choice(combos), **{k: _sample(v, rng) for k, v in ranges.items()}}
                  for _ in range(budget)]
    seen, out = set(), []
    for params in chosen:
        merged = {**spec.params, **params}
        key = json.dumps(merged, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(merged)
    return out


def plan_trials(problem: ProblemConfig, families: list[str] | None = None,
                max_trials: int | None = None, data: SeriesData | None = None) -> list[Trial]:
    """All trials for the problem, optionally restricted to ``families``; ``max_trials`` is a
    per-family budget overriding the YAML. A problem without ``models`` gets the default
    candidates for its ``data`` (:mod:`forecastflow.evaluation.defaults`)."""
    specs = problem.models
    if not specs:
        if data is None:
            raise ProblemConfigError(f"problem {problem.name!r} declares no models: its "
                                     "default candidates depend on the data, pass them")
        from forecastflow.evaluation.defaults import default_models

        specs = default_models(problem, data)
        log.info("problem %s declares no models; default candidates: %s", problem.name,
                 [s.family for s in specs])
    if families:
        from forecastflow.evaluation.defaults import POSSIBLE

        known = {s.family for s in specs} if problem.models else set(POSSIBLE)
        unknown = sorted(set(families) - known)
        if unknown:
            raise ProblemConfigError(f"families {unknown} are not candidates of problem "
                                     f"{problem.name!r}; candidates: {sorted(known)}")
        if not {s.family for s in specs} & set(families):
            raise ProblemConfigError(f"none of the families {sorted(families)} is a default "
                                     f"candidate for these data: {[s.family for s in specs]}")
    trials = []
    for spec in specs:
        if families and spec.family not in families:
            continue
        budget = max_trials or spec.max_trials or problem.max_trials
        transform = spec.transform or problem.transform
        trials += [Trial(spec.family, params, transform)
                   for params in expand(spec, budget, problem.seed)]
    return trials


def baseline_trial(problem: ProblemConfig) -> Trial:
    """The seasonal-naive benchmark on the original scale."""
    return Trial(BASELINE, {}, "none")


def run_trial(trial: Trial | dict[str, Any], data: SeriesData | str | os.PathLike[str],
              problem: ProblemConfig | dict[str, Any],
              series_ids: list[str] | None = None, windows: int | None = None,
              horizon: int | None = None,
              predictions_path: str | os.PathLike[str] | None = None,
              panel_size: int | None = None) -> TrialResult:
    """Backtest one trial on ``data`` (a :class:`SeriesData` or the path it was saved to),
    optionally on a batch of ``series_ids`` of a panel; ``panel_size``: the problem's number
    of series when ``data`` is a slice of it. ``trial`` and ``problem`` may be the plain
    dicts of ``Trial.to_dict()`` and ``ProblemConfig.model_dump()``."""
    trial = Trial.from_dict(trial) if isinstance(trial, dict) else trial
    if isinstance(problem, dict):
        problem = parse_problem(problem)
    if isinstance(data, (str, os.PathLike)):
        data = SeriesData.load(data)
    # Of the whole problem: decides an omitted refit.
    n_series = panel_size if panel_size is not None else len(data.series_ids)
    if series_ids is not None:
        data = data.subset(series_ids)
    spec = BacktestSpec.from_problem(problem, data.season, windows=windows, horizon=horizon,
                                     n_series=n_series)
    started_at = time.time()  # wall clock, for the trial's MLflow run
    start = time.perf_counter()
    model = trial.build(problem, data.season)
    result = backtest(model, data, spec)
    seconds = time.perf_counter() - start
    status = "ok" if result.ok else "failed"
    errors = sorted({str(e) for e in result.windows["error"] if e})
    table = result.windows.assign(cutoff=result.windows["cutoff"].astype(str))
    windows_records = json.loads(table.to_json(orient="records"))
    log.info("trial %s %s: %s in %.1fs, %s=%.4f%s", trial.trial_id, trial.params, status,
             seconds, problem.metric, result.metrics()[problem.metric],
             f" ({result.n_failed} window(s) failed)" if result.n_failed else "")
    extra: dict[str, Any] = {"started_at": int(started_at * 1000),
                             "ended_at": int((started_at + seconds) * 1000)}
    if predictions_path is not None and not result.predictions.empty:
        # Every window's forecasts against actuals, so the winner need not be backtested again.
        from forecastflow import storage

        extra["predictions"] = [str(storage.write_frame(result.predictions, predictions_path))]
    return TrialResult(trial, result.metrics(), windows_records, status, seconds,
                       n_series=max(len(data.series_ids), 1), error="; ".join(errors)[:1000],
                       extra=extra, predictions=result.predictions)


def combine(results: list[TrialResult]) -> list[TrialResult]:
    """Merge results of the same trial run on different series batches (weighted by
    the number of series)."""
    by_id: dict[str, list[TrialResult]] = {}
    for res in results:
        by_id.setdefault(res.trial.trial_id, []).append(res)
    merged = []
    for parts in by_id.values():
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        weights = np.array([p.n_series for p in parts], dtype=float)
        metrics = {}
        for m in METRICS:
            vals = np.array([p.metrics.get(m, np.nan) for p in parts], dtype=float)
            ok = np.isfinite(vals)
            metrics[m] = float(np.average(vals[ok], weights=weights[ok])) if ok.any() else (
                float("nan"))
        windows = [dict(w, batch=i, n_series=p.n_series) for i, p in enumerate(parts)
                   for w in p.windows]
        predictions = [path for p in parts for path in p.extra.get("predictions", [])]
        status = "ok" if any(p.status == "ok" for p in parts) else "failed"
        merged.append(TrialResult(parts[0].trial, metrics, windows, status,
                                  sum(p.seconds for p in parts), int(weights.sum()),
                                  "; ".join(p.error for p in parts if p.error)[:1000],
                                  {**_span(parts),
                                   **({"predictions": predictions} if predictions else {})},
                                  _concat([p.predictions for p in parts])))
    return merged


def _span(parts: list[TrialResult]) -> dict[str, int]:
    """Earliest start and latest end (epoch ms) of a trial run in several batches."""
    starts = [p.extra["started_at"] for p in parts if "started_at" in p.extra]
    ends = [p.extra["ended_at"] for p in parts if "ended_at" in p.extra]
    return {"started_at": min(starts), "ended_at": max(ends)} if starts and ends else {}


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    if any(f is None for f in frames):
        return None
    return pd.concat(frames, ignore_index=True)


@dataclass
class Selection:
    best: TrialResult
    per_family: dict[str, TrialResult]
    ranking: list[TrialResult]


def rank(results: list[TrialResult], metric: str, coverage: float) -> list[TrialResult]:
    """Successful trials, best first: fewest failed windows, then the metric."""
    ok = [r for r in results if r.status == "ok" and np.isfinite(r.metrics.get(metric, np.nan))]
    return sorted(ok, key=lambda r: (r.n_failed_windows, score(r.metrics, metric, coverage),
                                     r.trial.trial_id))


def select(results: list[TrialResult], metric: str, coverage: float = 0.9) -> Selection:
    """Best trial per family, then the best family. Raises if no trial succeeded."""
    ranking = rank(combine(results), metric, coverage)
    if not ranking:
        reasons = "; ".join(f"{r.trial.trial_id}: {r.error}" for r in results[:5])
        raise RuntimeError(f"no trial succeeded on any backtest window ({len(results)} "
                           f"trials); first errors: {reasons}")
    per_family: dict[str, TrialResult] = {}
    for res in ranking:
        per_family.setdefault(res.trial.family, res)
    return Selection(ranking[0], per_family, ranking)


def window_table(result: TrialResult) -> pd.DataFrame:
    """One row per backtest window; series batches of a trial are merged (metrics weighted by
    their number of series, seconds summed, failed if any batch failed)."""
    table = pd.DataFrame(result.windows)
    if "batch" not in table:
        return table
    weights = table["n_series"].astype(float)
    rows = []
    for window, part in table.groupby("window", sort=True):
        w = weights.loc[part.index]
        row = {"window": window, "cutoff": part["cutoff"].iloc[0],
               "train_length": part["train_length"].iloc[0],
               "fit_seconds": part["fit_seconds"].sum(),
               "predict_seconds": part["predict_seconds"].sum()}
        for m in METRICS:
            ok = part[m].notna()
            row[m] = float(np.average(part[m][ok], weights=w[ok])) if ok.any() else np.nan
        row["status"] = "ok" if (part["status"] == "ok").all() else "failed"
        row["error"] = "; ".join(e for e in part["error"] if e)
        row["converged"] = bool(part["converged"].all())
        row["warnings"] = "; ".join(x for x in part["warnings"] if x)
        rows.append(row)
    return pd.DataFrame(rows)


def batches(items: list[Any], size: int) -> list[list[Any]]:
    """Split ``items`` into consecutive batches of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]
