"""Task bodies of the training DAG, as plain functions of small JSON-able dicts.

Every stage takes the run context (problem, DAG and run ids, cutoff, UI params) and the
references returned by earlier stages (paths under the run folder, MLflow run ids, versions),
and returns references. No DataFrame crosses a task boundary. The run folder is keyed by the
problem and the data interval, so re-running a stage overwrites its own outputs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from forecastflow import storage
from forecastflow.connections import masked
from forecastflow.lifecycle import tracking
from forecastflow.orchestration.constants import MAX_SEARCH_TASKS, champion_asset_uri
from forecastflow.orchestration.context import (  # noqa: F401 - the DAG files use them
    Context,
    effective_problem,
    from_airflow,
    inclusive_cutoff,
    no_retry_on,
    parent_run,
    push_link,
    run_context,
    run_dir,
)
from forecastflow.orchestration.planning import is_global, plan  # noqa: F401 - plan: a stage
from forecastflow.orchestration.threads import limited

log = logging.getLogger(__name__)


def bad_input() -> tuple[type[Exception], ...]:
    """Errors that fail a training task without retries: the YAML or the data is wrong."""
    from forecastflow.data.problem import ProblemConfigError
    from forecastflow.data.sources import SourceError
    from forecastflow.data.validation import DataValidationError

    return DataValidationError, ProblemConfigError, SourceError

# Stages -----------------------------------------------------------------------------------

def ingest(ctx: Context) -> dict[str, Any]:
    """Read the source (rows up to the run's cutoff) into the run folder, with its lineage:
    what exactly was read (keys and ETags, SQL URL and query hash, row count)."""
    from forecastflow.data.sources import describe, read_problem

    problem = effective_problem(ctx)
    read = read_problem(problem, inclusive_cutoff(ctx))
    folder = run_dir(ctx)
    path = storage.write_frame(read.frame, folder / "raw.parquet")
    lineage = storage.write_json(read.lineage, folder / "source.json")
    parent = parent_run(ctx)
    tracking.log_run(parent, params={"source": masked(problem.source)},
                     tags=tracking.lineage_tags(read.lineage))
    tracking.log_artifacts(parent, [lineage], "inputs")
    log.info("ingested %s into %s (lineage: %s)", describe(read.lineage), path, lineage)
    return {"raw": str(path), "rows": len(read.frame), "source": str(lineage),
            "parent_run_id": parent}


def validate(ctx: Context, ingested: dict[str, Any]) -> dict[str, Any]:
    """Check the data contract on rows before the cutoff; on failure the parent run is marked
    failed with the issues and nothing further runs."""
    from forecastflow.data import validation
    from forecastflow.data.series import DATE
    from forecastflow.data.validation import DataValidationError

    problem = effective_problem(ctx)
    parent = ingested["parent_run_id"]
    raw = storage.read_frame(ingested["raw"])
    try:
        data = validation.validate(raw, problem, cutoff=inclusive_cutoff(ctx))
    except DataValidationError as err:
        tracking.log_run(parent, tags={"validation": "failed", "validation_issues": str(err)},
                         status="FAILED")
        log.error("validation failed: %s", err)
        raise
    path = data.save(run_dir(ctx) / "data.parquet")
    dates = data.y.index.get_level_values(DATE) if data.is_panel else data.y.index
    info = {"data": str(path), "fingerprint": data.fingerprint(),
            "n_series": max(len(data.series_ids), 1), "rows": len(data.y),
            "start": str(dates.min().date()), "end": str(dates.max().date()),
            "freq": data.freq, "season": data.season, "dropped": data.dropped,
            "source": ingested.get("source"), "parent_run_id": parent}
    tracking.log_run(parent, params={"data_fingerprint": info["fingerprint"],
                                     "data_start": info["start"], "data_end": info["end"],
                                     "n_series": info["n_series"], "frequency": data.freq},
                     tags={"validation": "passed", "data_fingerprint": info["fingerprint"],
                           "data_window": f"{info['start']}..{info['end']}",
                           # Runs listed by problem and data window, told apart by DAG run.
                           "mlflow.runName": tracking.parent_run_name(
                               problem.name, ctx["run_id"], f"{info['start']}..{info['end']}"),
                           "dropped_series": json.dumps(sorted(data.dropped))[:4000]})
    log.info("validated %s: %d series, %d rows, %s..%s, fingerprint %s%s", problem.name,
             info["n_series"], info["rows"], info["start"], info["end"], info["fingerprint"],
             f", dropped {len(data.dropped)}" if data.dropped else "")
    return info


def profile(ctx: Context, validated: dict[str, Any]) -> dict[str, Any]:
    """Data profile and the problem declaration, stored and logged for reviewers; returns
    the validated references with the profile's path."""
    from forecastflow.data.profile import data_profile
    from forecastflow.data.series import SeriesData

    problem = effective_problem(ctx)
    data = SeriesData.load(validated["data"])
    profile = data_profile(data)
    folder = run_dir(ctx)
    profile_path = folder / "data_profile.csv"
    profile.to_csv(profile_path)
    yaml_path = folder / f"{problem.name}.yaml"
    yaml_path.write_text(problem.to_yaml())
    tracking.log_artifacts(validated["parent_run_id"], [profile_path, yaml_path], "inputs")
    return {**validated, "profile": str(profile_path)}


def search(ctx: Context, batch: dict[str, Any]) -> dict[str, Any]:
    """Backtest one batch of work items (trial, series slice), with native threads limited
    to this task's share of the cores (``parallelism`` search tasks run at once)."""
    from forecastflow.data.series import SeriesData
    from forecastflow.evaluation.search import run_trial

    problem = effective_problem(ctx)
    run = batch["run"]
    folder = run_dir(ctx) / "search"
    whole: list[SeriesData] = []  # read once, for the items that need every series

    def data_of(item: dict[str, Any]) -> SeriesData:
        if item.get("series_slice") is not None:  # only the slice's rows are read
            return SeriesData.load(run["data"], item["series_slice"])
        if not whole:
            whole.append(SeriesData.load(run["data"]))
        return whole[0]

    with limited(search_concurrency(ctx), f"search batch {batch['batch']}"):
        results = [run_trial(item["trial"], data_of(item), problem,
                             predictions_path=folder / f"predictions_{batch['batch']}_{i}.parquet",
                             panel_size=run.get("n_series")).to_dict()
                   for i, item in enumerate(batch["items"])]
    path = storage.write_json(results, run_dir(ctx) / "search" / f"batch_{batch['batch']}.json")
    return {"results": str(path), "n": len(results), "run": batch["run"]}


def search_concurrency(ctx: Context) -> int:
    """How many search tasks of one run may run at once."""
    return min(MAX_SEARCH_TASKS, max(1, int((ctx.get("params") or {}).get("parallelism")
                                            or MAX_SEARCH_TASKS)))


def select(ctx: Context, searched: list[dict[str, Any]]) -> dict[str, Any]:
    """Best trial per family, then the best family."""
    from forecastflow.evaluation import search as trials
    from forecastflow.evaluation.search import TrialResult, combine, window_table

    if not searched:
        raise ValueError("select: no search results (the plan had no trials)")
    validated = searched[0]["run"]
    problem = effective_problem(ctx)
    results = combine([TrialResult.from_dict(r) for s in searched
                       for r in storage.read_json(s["results"])])
    tracking.log_trials(ctx["problem"], ctx["run_id"], validated["parent_run_id"], results)
    selection = trials.select(results, problem.metric, problem.coverage)
    best = selection.best
    per_family = {f: r.metrics[problem.metric] for f, r in selection.per_family.items()}
    log.info("selected %s %s (%s=%.4f); best per family: %s", best.trial.family,
             best.trial.params, problem.metric, best.metrics[problem.metric], per_family)
    tracking.log_run(validated["parent_run_id"], tags={
        "selected_family": best.trial.family, "selected_trial": best.trial.trial_id,
        "selected_params": json.dumps(best.trial.params),
        "per_family_best": json.dumps(per_family)})
    return {"trial": best.trial.to_dict(), "metrics": best.metrics,
            "per_family": per_family, "windows": window_table(best).to_dict("records"),
            "predictions": best.extra.get("predictions", []), "run": validated}


# A panel is fitted in parts (mapped tasks over slices of its series) from this many series
# per part on: below it, a task's start-up and the reads cost more than a part saves.
FIT_PART_MIN_SERIES = 1_000


def plan_fit(ctx: Context, selected: dict[str, Any]) -> list[dict[str, Any]]:
    """The winner's fit as parts, one mapped ``fit_part`` task each: a panel's series in up
    to ``parallelism`` contiguous slices of at least ``FIT_PART_MIN_SERIES`` (an ensemble is
    fitted per slice, as the search backtested it); one part for a single series, a small
    panel, or global gradient boosting."""
    from forecastflow.models.parts import slices

    validated, trial = selected["run"], selected["trial"]
    n_series = int(validated["n_series"])
    n_parts = 1 if is_global(trial) else min(search_concurrency(ctx),
                                          n_series // FIT_PART_MIN_SERIES)
    where = slices(n_series, n_parts) if n_parts > 1 else [None]
    log.info("fit %s in %d part(s)%s", trial["family"], len(where),
             f" over {n_series} series: {where}" if n_parts > 1 else "")
    return [{"part": i, "series_slice": s, "trial": trial, "run": validated}
            for i, s in enumerate(where)]


def fit_part(ctx: Context, part: dict[str, Any]) -> dict[str, Any]:
    """Fit the winner on the part's series (all data up to the cutoff), without interval
    calibration (``fit`` adds it to the assembled model)."""
    from forecastflow.data.series import SeriesData
    from forecastflow.evaluation.search import Trial

    validated = part["run"]
    data = SeriesData.load(validated["data"], part["series_slice"])
    trial = Trial.from_dict(part["trial"])
    what = f"fit part {part['part']}"
    # Parts run beside each other and beside ``evaluate``: a share of the cores each.
    with limited(max(2, search_concurrency(ctx)) if part["series_slice"] else 2, what):
        model = trial.build(effective_problem(ctx), data.season).fit(data.y, data.X)
    path = storage.write_model(model, run_dir(ctx) / "model" / f"part_{part['part']}.pkl")
    log.info("%s: %s on %d series, %d rows: %s", what, trial.family,
             max(len(data.series_ids), 1), len(data.y), path)
    return {"part": part["part"], "model": str(path), "series_slice": part["series_slice"]}


def fit(ctx: Context, selected: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The fitted parts as one model, with the interval calibration from the winner's
    backtest forecasts; stored as the run's ``model/model.pkl``."""
    from forecastflow.evaluation.calibration import calibrated_fitted
    from forecastflow.evaluation.search import Trial
    from forecastflow.models.parts import SeriesParts

    validated = selected["run"]
    problem = effective_problem(ctx)
    trial = Trial.from_dict(selected["trial"])
    parts = sorted(parts, key=lambda p: p["part"])
    model = SeriesParts.assemble(trial.build(problem, int(validated["season"])),
                                 [storage.read_model(p["model"]) for p in parts])
    predictions = (pd.concat([storage.read_frame(p) for p in selected["predictions"]],
                             ignore_index=True) if selected.get("predictions") else None)
    model = calibrated_fitted(model, problem, predictions)
    if getattr(model, "factors", None):
        tracking.log_run(validated["parent_run_id"], tags={
            "interval_factors": json.dumps([round(f, 4) for f in model.factors])})
    path = storage.write_model(model, run_dir(ctx) / "model" / "model.pkl")
    log.info("fitted %s on %d series (%d part(s)) up to %s: %s", trial.family,
             validated["n_series"], len(parts), validated["end"], path)
    log_choices(ctx, model, validated["parent_run_id"])
    return {"model": str(path), "selected": selected, "run": validated}


def _ensembles(model: Any) -> list[Any]:
    """The per-series ensembles inside ``model``: through the calibration and transform
    wrappers, one per target column, one per fitted part."""
    from forecastflow.models import Ensemble

    if isinstance(model, Ensemble):
        return [model]
    inner = vars(model)
    children = ([inner["model_"]] if "model_" in inner else []) + list(
        inner.get("models_", {}).values() if isinstance(inner.get("models_"), dict) else []
    ) + list(inner.get("parts_", []))
    return [e for child in children for e in _ensembles(child)]


def log_choices(ctx: Context, model: Any, parent: str) -> None:
    """For a per-series choice (ensemble), the table of which members each series uses and
    a chart of how often each family wins, as artifacts of the run (``selection/``)."""
    from forecastflow.evaluation.plots import plot_wins

    ensembles = _ensembles(model)
    if not ensembles:
        return
    folder = run_dir(ctx) / "selection"
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.concat([e.choice_table() for e in ensembles], ignore_index=True)
    table_path = folder / "per_series_choice.csv"
    table.to_csv(table_path, index=False)
    wins = table["family"].value_counts().to_dict()
    chart = plot_wins(wins, folder / "family_wins.png",
                      f"{ctx['problem']}: model family per series ({len(table)} series)")
    tracking.log_artifacts(parent, [table_path, chart], "selection")
    tracking.log_run(parent, tags={"per_series_wins": json.dumps(wins)})
    log.info("per-series choice: %s (selection/per_series_choice.csv)", wins)


def evaluate(ctx: Context, selected: dict[str, Any]) -> dict[str, Any]:
    """Backtest the winner and seasonal naive on the same windows; log tables and plots."""
    with limited(2, "evaluate"):
        return _evaluate(ctx, selected["run"], selected)


def _evaluate(ctx: Context, validated: dict[str, Any],
              selected: dict[str, Any]) -> dict[str, Any]:
    from forecastflow.data.series import SeriesData
    from forecastflow.evaluation import calibration
    from forecastflow.evaluation.backtest import BacktestResult, BacktestSpec, backtest
    from forecastflow.evaluation.plots import plot_backtest
    from forecastflow.evaluation.search import Trial, baseline_trial

    problem = effective_problem(ctx)
    data = SeriesData.load(validated["data"])
    spec = BacktestSpec.from_problem(problem, data.season,
                                     n_series=len(data.series_ids))
    trial = Trial.from_dict(selected["trial"])
    if selected.get("predictions"):
        # The search already backtested the winner on these windows: reuse its forecasts.
        result = BacktestResult(pd.DataFrame(selected["windows"]), pd.concat(
            [storage.read_frame(p) for p in selected["predictions"]], ignore_index=True))
    else:
        result = backtest(trial.build(problem, data.season), data, spec)
    baseline = backtest(baseline_trial(problem).build(problem, data.season), data, spec)
    folder = run_dir(ctx) / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    table = result.windows.assign(**{f"baseline_{m}": baseline.windows[m]
                                     for m in ("mase", "rmse", "coverage")})
    table_path = folder / "backtest_windows.csv"
    table.to_csv(table_path, index=False)
    plots = [plot_backtest(result.predictions, data.y, folder / "backtest_all_windows.png",
                           title=f"{problem.name}: {trial.family}, all backtest windows")]
    for window, part in result.predictions.groupby("window"):
        plots.append(plot_backtest(part, data.y, folder / f"backtest_window_{window}.png",
                                   title=f"{problem.name}: {trial.family}, window {window} "
                                         f"(cutoff {pd.Timestamp(part['cutoff'].iloc[0]).date()})"))
    metrics, base = result.metrics(), baseline.metrics()
    checked = (calibration.checked_coverage(result.predictions, problem.coverage,
                                            problem.horizon)
               if problem.calibrate_intervals and not result.predictions.empty else None)
    tracking.log_run(validated["parent_run_id"],
                     metrics={**tracking.metric_names(metrics),
                              **tracking.metric_names(base, tracking.BASELINE_PREFIX),
                              "failed_windows": result.n_failed,
                              **({"coverage_calibrated": checked} if checked is not None
                                 else {})})
    tracking.log_artifacts(validated["parent_run_id"], [table_path, *plots], "evaluation")
    log.info("backtest %s: %s; seasonal naive: %s; calibrated coverage (each window scaled "
             "by factors from the others): %s", trial.family, _fmt(metrics), _fmt(base),
             "n/a" if checked is None else f"{checked:.3f}")
    return {"metrics": metrics, "baseline": base, "coverage_calibrated": checked,
            "windows": str(table_path),
            "cutoffs": [str(c) for c in result.windows["cutoff"]], "run": validated}


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if math.isfinite(v))


def register(ctx: Context, fitted: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
    """Log the winner as a pyfunc and register it (once per DAG run) as ``challenger``.

    Nothing is registered when the champion was trained on the same data (fingerprint) with
    the same model (family, params, transform), horizon and code: the retrain is a no-op."""
    from forecastflow.data.series import SeriesData
    from forecastflow.lifecycle import registry
    from forecastflow.lifecycle.contract import model_meta

    validated, selected = fitted["run"], fitted["selected"]
    problem = effective_problem(ctx)
    trial = selected["trial"]
    tags = {"dag_id": ctx["dag_id"], "airflow_run_id": ctx["run_id"],
            "logical_date": ctx["logical_date"], "data_cutoff": ctx["cutoff"],
            "data_window": f"{validated['start']}..{validated['end']}",
            "data_fingerprint": validated["fingerprint"], "code_version":
            tracking.code_version(), "family": trial["family"],
            "params": json.dumps(trial["params"], sort_keys=True),
            "transform": trial["transform"], "metric": problem.metric,
            "horizon": str(problem.horizon), "max_horizon": str(problem.horizon_limit),
            "asset": champion_asset_uri(problem.name),
            **{f"backtest_{k}": f"{v:.6g}" for k, v in evaluated["metrics"].items()},
            **{f"baseline_{k}": f"{v:.6g}" for k, v in evaluated["baseline"].items()},
            **(tracking.lineage_tags(storage.read_json(validated["source"]))
               if validated.get("source") else {})}
    out = {"model": problem.name, "evaluated": {k: v for k, v in evaluated.items()
                                                if k != "run"}, "run": validated}
    parent = validated["parent_run_id"]
    existing = registry.registered_version(problem.name, parent)
    if existing:  # a retried task: this DAG run's version is registered already
        log.info("model %s: run %s already registered as version %s", problem.name, parent,
                 existing)
        registry.ensure_challenger(problem.name, existing)  # an earlier try may have died first
        tracking.log_run(parent, tags={"model_version": existing})
        return {**out, "version": existing}
    same = registry.unchanged_champion(problem.name, tags)
    if same is not None:
        log.info("model %s: not registered, %s", problem.name, same["reason"])
        tracking.log_run(parent, tags={"model_version": same["version"],
                                       "registration": "unchanged: " + same["reason"]})
        return {**out, "version": same["version"], "unchanged": same["reason"]}
    data = SeriesData.load(validated["data"])
    model = storage.read_model(fitted["model"])
    meta = model_meta(problem, data, model, selected)
    version = registry.register(problem.name, parent, Path(fitted["model"]), meta, tags)
    tracking.log_run(parent, tags={"model_version": version})
    return {**out, "version": version}


def promote(ctx: Context, registered: dict[str, Any]) -> dict[str, Any]:
    """Gate: the challenger becomes champion only if it beats seasonal naive and the current
    champion re-scored on today's data and windows, each by more than numerical noise (and
    the champion by the YAML's margin). A refusal is a decision, not a failure."""
    from forecastflow.lifecycle import registry

    name, version = registered["model"], registered["version"]
    validated = registered["run"]
    current = registry.alias_version(name, registry.CHAMPION)
    if registered.get("unchanged") or (current is not None
                                       and str(current.version) == str(version)):
        if not registered.get("unchanged") and "promotion" not in current.tags:
            return _finish_promotion(ctx, registered)  # an earlier try moved the alias
        reason = (f"unchanged: {registered['unchanged']}" if registered.get("unchanged")
                  else f"version {version} is already champion (re-run)")
        decision = {"promoted": False, "changed": False, "champion": str(version),
                    "challenger": None, "reasons": [reason]}
        tracking.log_run(validated["parent_run_id"], tags={
            "promotion": "unchanged", "promotion_reasons": reason}, status="FINISHED")
        log.info("promotion of %s: nothing moves, %s", name, reason)
        return decision
    return _gate(ctx, registered, current)


def _finish_promotion(ctx: Context, registered: dict[str, Any]) -> dict[str, Any]:
    """A retry after an earlier try made the version champion but died before recording the
    decision: record it now and announce the change (the champion Asset has not fired)."""
    from forecastflow.lifecycle import registry

    name, version = registered["model"], registered["version"]
    reasons = [f"version {version} was made champion by an earlier try of this task"]
    previous = registry.alias_version(name, registry.PREVIOUS)
    registry.promote(name, version, reasons)
    tracking.log_run(registered["run"]["parent_run_id"], tags={
        "promotion": "promoted", "promotion_reasons": reasons[0]}, status="FINISHED")
    log.info("promotion of %s v%s: finished (%s)", name, version, reasons[0])
    return {"promoted": True, "changed": True, "champion": str(version),
            "previous": None if previous is None else str(previous.version),
            "challenger": version, "reasons": reasons}


def _refuse_unloadable(name: str, version: str, parent_run_id: str) -> None:
    """Promotion's first check: the version downloads, matches its checksum and unpickles.
    One that does not is tagged and the task fails (the champion stays)."""
    from forecastflow.lifecycle import registry

    try:
        registry.check_loads(name, version)
    except registry.ModelCorruptError as err:
        reason = f"version {version} does not load: {err}"
        registry.reject(name, version, [reason])
        tracking.log_run(parent_run_id, tags={"promotion": "refused",
                                              "promotion_reasons": reason}, status="FAILED")
        raise


def _gate(ctx: Context, registered: dict[str, Any], current: Any) -> dict[str, Any]:
    from forecastflow.evaluation.metrics import score
    from forecastflow.evaluation.search import Trial, run_trial
    from forecastflow.lifecycle import registry

    problem = effective_problem(ctx)
    name, version = registered["model"], registered["version"]
    validated, evaluated = registered["run"], registered["evaluated"]
    with no_retry_on(registry.ModelCorruptError):
        _refuse_unloadable(name, version, validated["parent_run_id"])
    metric = problem.metric
    challenger = score(evaluated["metrics"], metric, problem.coverage)
    baseline = score(evaluated["baseline"], metric, problem.coverage)
    champion_score = None
    if current is not None:
        tags = current.tags
        incumbent = Trial(tags["family"], json.loads(tags["params"]), tags["transform"])
        with limited(1, "re-score the champion"):
            rescored = run_trial(incumbent, validated["data"], problem)
        champion_score = score(rescored.metrics, metric, problem.coverage)
        if not math.isfinite(champion_score):
            champion_score = math.inf  # the incumbent no longer fits today's data
    force = bool((ctx.get("params") or {}).get("force_promotion"))
    promoted, reasons = registry.decide(challenger, baseline, champion_score,
                                        problem.promotion.margin,
                                        problem.promotion.first_must_beat_baseline, force)
    previous = (registry.promote(name, version, reasons) if promoted
                else registry.reject(name, version, reasons))
    champion = registry.alias_version(name, registry.CHAMPION)
    decision = {"promoted": promoted, "changed": promoted,
                "champion": None if champion is None else str(champion.version),
                "previous": previous, "challenger": version, "reasons": reasons,
                "metric": metric, "challenger_score": challenger, "baseline_score": baseline,
                "champion_score": champion_score}
    tracking.log_run(validated["parent_run_id"], tags={
        "promotion": "promoted" if promoted else "not promoted",
        "promotion_reasons": "; ".join(reasons)}, status="FINISHED")  # the DAG run's last stage
    log.info("promotion of %s v%s: %s (%s)", name, version,
             "PROMOTED to champion" if promoted else "not promoted", "; ".join(reasons))
    return decision
