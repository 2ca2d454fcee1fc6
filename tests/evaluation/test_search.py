"""Search: planning trials, running one trial as a pure call, combining and selecting."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import pytest

from forecastflow.data.problem import Distribution, ModelSpec
from forecastflow.evaluation.metrics import METRICS
from forecastflow.evaluation.search import (
    Trial,
    TrialResult,
    baseline_trial,
    batches,
    combine,
    expand,
    plan_trials,
    run_trial,
    select,
    trial_labels,
)

SARIMAX_GRID = {"order": [[1, 0, 0], [2, 0, 0], [0, 1, 1], [1, 1, 0]], "trend": ["n", "c", "t"]}


def full_grid(search: dict[str, list]) -> list[dict]:
    return [dict(zip(search, values, strict=True))
            for values in itertools.product(*search.values())]


# expand ------------------------------------------------------------------------------------


def test_expand_full_grid_within_budget():
    spec = ModelSpec(family="sarimax", params={"maxiter": 10}, search=SARIMAX_GRID)
    out = expand(spec, budget=12)
    assert len(out) == 12
    expected = [{"maxiter": 10, **p} for p in full_grid(SARIMAX_GRID)]
    assert out == expected
    assert expand(ModelSpec(family="naive"), budget=5) == [{}]


def test_expand_samples_a_seeded_subset_over_budget():
    spec = ModelSpec(family="sarimax", search=SARIMAX_GRID)
    grid = full_grid(SARIMAX_GRID)
    first = expand(spec, budget=5, seed=0)
    assert len(first) == 5
    assert all(p in grid for p in first)
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 5
    assert expand(spec, budget=5, seed=0) == first  # deterministic across calls
    others = [expand(spec, budget=5, seed=s) for s in range(1, 6)]
    assert any(o != first for o in others)  # the seed matters


def test_expand_samples_ranges_within_bounds():
    spec = ModelSpec(family="gradient_boosting", params={"max_iter": 20}, search={
        "learning_rate": Distribution(low=0.001, high=1.0, log=True),
        "max_leaf_nodes": Distribution(low=4, high=64, integer=True),
        "l2_regularization": Distribution(low=0.0, high=2.0),
        "differencing": [0, 1],
    })
    out = expand(spec, budget=60, seed=3)
    assert 50 <= len(out) <= 60  # duplicates (if any) are dropped
    assert out == expand(spec, budget=60, seed=3)
    for p in out:
        assert p["max_iter"] == 20
        assert 0.001 <= p["learning_rate"] <= 1.0
        assert isinstance(p["max_leaf_nodes"], int)
        assert 4 <= p["max_leaf_nodes"] <= 64
        assert 0.0 <= p["l2_regularization"] <= 2.0
        assert p["differencing"] in (0, 1)
    # log-uniform: the median is near the geometric mean (0.03), far below the midpoint
    assert statistics.median(p["learning_rate"] for p in out) < 0.2
    assert statistics.median(p["l2_regularization"] for p in out) > 0.5
    assert {p["differencing"] for p in out} == {0, 1}


def test_ranges_parse_from_problem_yaml(make_problem):
    problem = make_problem(models=[{"family": "gradient_boosting", "max_trials": 4, "search": {
        "learning_rate": {"low": 0.01, "high": 0.3, "log": True}}}])
    trials = plan_trials(problem)
    assert len(trials) == 4
    assert all(0.01 <= t.params["learning_rate"] <= 0.3 for t in trials)


# plan_trials -------------------------------------------------------------------------------


@pytest.fixture
def problem(make_problem):
    return make_problem(transform="log", max_trials=3, models=[
        {"family": "naive", "transform": "none"},
        {"family": "sarimax", "search": {"order": [[1, 0, 0], [2, 0, 0]], "trend": ["c"]}},
        {"family": "gradient_boosting", "params": {"max_iter": 10},
         "search": {"lags": [3, 6, 12, 24]}},
    ])


def test_plan_trials_covers_every_family_with_budgets(problem):
    trials = plan_trials(problem)
    by_family = {f: [t for t in trials if t.family == f] for f in
                 ("naive", "sarimax", "gradient_boosting")}
    assert len(by_family["naive"]) == 1
    assert len(by_family["sarimax"]) == 2
    assert len(by_family["gradient_boosting"]) == 3  # problem-level max_trials
    assert by_family["naive"][0].transform == "none"
    assert all(t.transform == "log" for t in by_family["sarimax"])
    assert all(t.params["max_iter"] == 10 for t in by_family["gradient_boosting"])
    assert len({t.trial_id for t in trials}) == len(trials)
    assert plan_trials(problem) == trials


def test_plan_trials_families_filter_and_override(problem):
    only = plan_trials(problem, families=["sarimax"])
    assert {t.family for t in only} == {"sarimax"}
    assert len(plan_trials(problem, families=["gradient_boosting"], max_trials=4)) == 4
    assert len(plan_trials(problem, max_trials=1)) == 3


@pytest.mark.parametrize("families", [["varmax"], ["sarimax", "no_such_model"]])
def test_plan_trials_rejects_undeclared_family(problem, families):
    with pytest.raises(ValueError, match="not candidates"):
        plan_trials(problem, families=families)


def test_baseline_trial(problem):
    trial = baseline_trial(problem)
    assert (trial.family, trial.params, trial.transform) == ("seasonal_naive", {}, "none")


# Trial ------------------------------------------------------------------------------------


def test_trial_dict_round_trip_and_stable_id():
    trial = Trial("sarimax", {"order": [1, 0, 0], "trend": "c"}, "log")
    data = trial.to_dict()
    assert data["trial_id"] == trial.trial_id
    assert data["family"] == "sarimax"
    again = Trial.from_dict(json.loads(json.dumps(data)))
    assert again == trial
    assert again.trial_id == trial.trial_id
    assert Trial("sarimax", {"trend": "c", "order": [1, 0, 0]}, "log").trial_id == trial.trial_id
    assert Trial("sarimax", {"order": [1, 0, 0], "trend": "c"}).trial_id != trial.trial_id
    assert Trial("sarimax", {"order": [2, 0, 0], "trend": "c"}, "log").trial_id != (
        trial.trial_id)
    assert trial.trial_id.startswith("sarimax-")
    assert Trial.from_dict({"family": "naive", "params": {}}).transform == "none"


def test_trial_build_uses_problem_settings(make_problem):
    problem = make_problem(coverage=0.8)
    model = Trial("seasonal_naive", {}, "diff").build(problem, season=12)
    assert model.transform == "diff"
    assert model.model.season_length == 12
    assert model.coverage == 0.8


# run_trial --------------------------------------------------------------------------------


@pytest.fixture
def saved(monthly_data, tmp_path) -> Path:
    return monthly_data.save(tmp_path / "data" / "toy.parquet")


@pytest.mark.parametrize("as_str", [True, False])
def test_run_trial_from_saved_path(saved, make_problem, as_str):
    problem = make_problem(backtest={"windows": 3})
    trial = Trial("sarimax", {"order": [1, 0, 0], "trend": "c", "maxiter": 20}, "log")
    result = run_trial(trial, str(saved) if as_str else saved, problem)
    assert result.status == "ok"
    assert result.n_series == 1
    assert len(result.windows) == 3
    assert set(result.metrics) == set(METRICS)
    assert all(math.isfinite(result.metrics[m]) for m in METRICS)
    assert result.seconds > 0
    text = json.dumps(result.to_dict())
    back = TrialResult.from_dict(json.loads(text))
    assert back.trial == trial
    assert back.metrics == pytest.approx(result.metrics)
    assert back.windows == result.windows
    assert back.n_failed_windows == 0


def test_run_trial_records_its_wall_clock_span(saved, make_problem):
    """The trial's MLflow run is logged after the search; it carries the real start and end."""
    import time

    before = int(time.time() * 1000)
    result = run_trial(Trial("sarimax", {"order": [1, 0, 0], "maxiter": 20}, "none"), saved,
                       make_problem())
    after = int(time.time() * 1000)
    start, end = result.extra["started_at"], result.extra["ended_at"]
    assert before <= start < end <= after
    assert (end - start) / 1000 == pytest.approx(result.seconds, abs=0.002)
    back = TrialResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert (back.extra["started_at"], back.extra["ended_at"]) == (start, end)
    # Batches of one trial on slices of a panel: the earliest start, the latest end.
    later = TrialResult.from_dict({**result.to_dict(), "extra": {
        "started_at": end + 5, "ended_at": end + 900}})
    (merged,) = combine([result, later])
    assert (merged.extra["started_at"], merged.extra["ended_at"]) == (start, end + 900)


def test_trial_labels_are_short_and_tell_trials_apart():
    """Run names: family, ARMA orders, only the parameters that differ, transform."""
    trials = [
        Trial("sarimax", {"order": [1, 1, 1], "seasonal_order": [0, 1, 1], "maxiter": 50},
              "log"),
        Trial("sarimax", {"order": [2, 1, 1], "seasonal_order": [0, 1, 1], "maxiter": 50},
              "log"),
        Trial("gradient_boosting", {"lags": 12, "max_depth": 3, "max_iter": 200}),
        Trial("gradient_boosting", {"lags": 24, "max_depth": 3, "max_iter": 200}),
        Trial("gradient_boosting", {"lags": 24, "max_depth": 5, "max_iter": 200}),
        Trial("varmax", {"order": [1, 0], "trend": "c"}, "log-diff"),
        Trial("naive", {}),
        Trial("naive", {}, "log"),
    ]
    labels = trial_labels(trials)
    assert [labels[t.trial_id] for t in trials] == [
        "sarimax (1,1,1)(0,1,1) log", "sarimax (2,1,1)(0,1,1) log",
        "gradient_boosting lags=12 depth=3", "gradient_boosting lags=24 depth=3",
        "gradient_boosting lags=24 depth=5", "varmax (1,0) log-diff", "naive", "naive log"]
    # Values that print alike still get distinct names.
    close = [Trial("gradient_boosting", {"learning_rate": 0.1}),
             Trial("gradient_boosting", {"learning_rate": 0.1000000001})]
    assert len(set(trial_labels(close).values())) == 2
    assert trials[0].label() == "sarimax (1,1,1)(0,1,1) maxiter=50 log"


def test_run_trial_accepts_dicts_and_matches_in_memory(saved, monthly_data, make_problem):
    problem = make_problem()
    trial = Trial("seasonal_naive", {}, "none")
    from_path = run_trial(trial.to_dict(), str(saved), problem)
    in_memory = run_trial(trial, monthly_data, problem)
    assert from_path.metrics == pytest.approx(in_memory.metrics)
    assert from_path.trial.trial_id == trial.trial_id


def test_run_trial_overrides_windows_and_horizon(monthly_data, make_problem):
    result = run_trial(Trial("naive", {}), monthly_data, make_problem(), windows=4, horizon=2)
    assert len(result.windows) == 4
    cutoffs = [w["cutoff"] for w in result.windows]
    assert cutoffs[-1].startswith("2020-10-01")


def test_run_trial_on_a_batch_of_series(panel_data, make_problem):
    problem = make_problem(backtest={"windows": 2, "min_train": 12})
    result = run_trial(Trial("naive", {}), panel_data, problem, series_ids=["a", "c"])
    assert result.status == "ok"
    assert result.n_series == 2


def test_failed_trial_is_reported_and_serializable(monthly_data, make_problem):
    result = run_trial(Trial("gradient_boosting", {"lags": 80, "max_iter": 5}), monthly_data,
                       make_problem())
    assert result.status == "failed"
    assert result.n_failed_windows == 2
    assert "FitError" in result.error
    json.dumps(result.to_dict())


# combine / select / batches -----------------------------------------------------------------


def result(family: str, mase: float, failed: int = 0, windows: int = 3, n_series: int = 1,
           params: dict | None = None, status: str = "ok") -> TrialResult:
    rows = [{"window": k, "status": "failed" if k < failed else "ok"} for k in range(windows)]
    metrics = {m: float("nan") for m in METRICS}
    metrics.update(mase=mase, rmse=mase * 10, coverage=0.9)
    return TrialResult(Trial(family, params if params is not None else {"k": mase}), metrics,
                       rows, status, 1.0, n_series=n_series)


def test_select_picks_lowest_metric_per_family_and_overall():
    results = [result("sarimax", 0.9), result("sarimax", 0.7), result("naive", 1.0),
               result("gradient_boosting", 0.8)]
    sel = select(results, "mase")
    assert sel.best.metrics["mase"] == 0.7
    assert sel.best.trial.family == "sarimax"
    assert {f: r.metrics["mase"] for f, r in sel.per_family.items()} == {
        "sarimax": 0.7, "naive": 1.0, "gradient_boosting": 0.8}
    assert [r.metrics["mase"] for r in sel.ranking] == [0.7, 0.8, 0.9, 1.0]


def test_select_prefers_fewer_failed_windows():
    flaky = result("sarimax", 0.5, failed=1)
    steady = result("naive", 0.9)
    sel = select([flaky, steady], "mase")
    assert sel.best is steady
    assert sel.ranking == [steady, flaky]


def test_select_by_coverage_uses_distance_to_nominal():
    a, b = result("naive", 1.0), result("drift", 2.0)
    a.metrics["coverage"], b.metrics["coverage"] = 0.6, 0.88
    assert select([a, b], "coverage", coverage=0.9).best is b


def test_select_ignores_failed_and_nan_results():
    bad = result("sarimax", 0.1, status="failed")
    nan = result("varmax", float("nan"))
    good = result("naive", 1.0)
    assert select([bad, nan, good], "mase").best is good


def test_select_raises_when_all_failed():
    results = [result("sarimax", 0.5, status="failed"), result("naive", float("nan"))]
    results[0].error = "FitError: singular"
    with pytest.raises(RuntimeError, match="no trial succeeded") as info:
        select(results, "mase")
    assert "singular" in str(info.value)
    with pytest.raises(RuntimeError):
        select([], "mase")


def test_combine_weights_batches_by_series_count():
    part1 = result("sarimax", 1.0, n_series=2, params={"order": [1, 0, 0]})
    part2 = result("sarimax", 4.0, n_series=1, failed=1, params={"order": [1, 0, 0]})
    other = result("naive", 3.0, n_series=3)
    merged = combine([part1, other, part2])
    assert len(merged) == 2
    m = next(r for r in merged if r.trial.family == "sarimax")
    assert m.metrics["mase"] == pytest.approx((2 * 1.0 + 1 * 4.0) / 3)
    assert m.metrics["rmse"] == pytest.approx((2 * 10.0 + 1 * 40.0) / 3)
    assert math.isnan(m.metrics["mae"])
    assert m.n_series == 3
    assert len(m.windows) == 6
    assert [w["batch"] for w in m.windows] == [0, 0, 0, 1, 1, 1]
    assert m.n_failed_windows == 1
    assert m.status == "ok"
    assert m.seconds == pytest.approx(2.0)
    assert next(r for r in merged if r.trial.family == "naive") is other


def test_combine_status_failed_only_if_every_batch_failed():
    a = result("naive", float("nan"), status="failed", params={})
    b = result("naive", 2.0, params={})
    assert combine([a, b])[0].status == "ok"
    assert combine([a, result("naive", float("nan"), status="failed", params={})])[0].status == (
        "failed")


def test_select_combines_batches_before_ranking():
    batch_a = result("sarimax", 0.2, n_series=1, params={"p": 1})
    batch_b = result("sarimax", 2.0, n_series=3, params={"p": 1})  # combined: 1.55
    naive = result("naive", 1.0)
    assert select([batch_a, batch_b, naive], "mase").best is naive


def test_batches():
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches([1, 2], 5) == [[1, 2]]
    assert batches([], 2) == []
    assert list(itertools.chain(*batches(list(range(10)), 4))) == list(range(10))
    with pytest.raises(ValueError, match="batch size"):
        batches([1], 0)


def test_run_trial_takes_the_problem_as_a_plain_dict(monthly_data, make_problem):
    problem = make_problem()
    as_dict = json.loads(json.dumps(problem.model_dump(mode="json")))
    result = run_trial(Trial("naive", {}).to_dict(), monthly_data, as_dict)
    assert result.metrics == pytest.approx(run_trial(Trial("naive", {}), monthly_data,
                                                     problem).metrics)
