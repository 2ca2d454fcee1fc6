"""
### ForecastFlow training DAGs

One `train_<problem>` DAG per problem YAML (shipped demos in `include/problems/` plus
`FORECASTFLOW_PROBLEMS_DIR`). Each run trains on the data before its data-interval end:

ingest → validate → profile (data profile and the YAML, logged) → plan trials →
**search** (mapped over batches of trials) → select → **fit** the winner (mapped over
slices of a large panel's series, then assembled) and backtest/evaluate it against seasonal
naive → register in MLflow as `challenger` → **promote** to `champion`
only if it beats seasonal naive and the current champion on the same windows → publish the
problem's champion Asset when the champion changed.

Tasks pass references (run-folder paths, MLflow run ids, model versions), never DataFrames.
This file only wires: every task body is a call into `forecastflow.orchestration.training`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from forecastflow.orchestration.constants import DEFAULT_ARGS, MAX_SEARCH_TASKS, champion_asset
from forecastflow.orchestration.spec import (
    DEFAULT_CANDIDATES,
    METRIC_NAMES,
    DagSpec,
    discover,
    timetable_of,
)


def _ctx() -> dict:
    from forecastflow.orchestration import context

    return context.from_airflow()


def _link(refs: dict) -> None:
    from forecastflow.orchestration import context

    context.push_link(refs)


def params(spec: DagSpec) -> dict[str, Param]:
    """The trigger form: every field titled, bounded and validated. The common choices open
    in "Run Parameters"; search budget and backtest settings in a collapsed section."""
    advanced = "Search and backtest settings"
    # Without models in the YAML, the candidates come from the data: every possible default.
    families = list(spec.families) or list(DEFAULT_CANDIDATES)
    limit = max(spec.max_horizon, spec.horizon)
    return {
        # Fixed per DAG: passed to every run, not shown in the form.
        "problem": Param(spec.name, type="string", const=spec.name),
        "families": Param(families, type="array", title="Model families",
                          examples=families, minItems=1, uniqueItems=True,
                          items={"type": "string", "enum": families},
                          description="Model families to search, among those the problem's "
                          "YAML declares (or, without a list there, the default candidates "
                          "the data call for)."),
        "horizon": Param(spec.horizon, type="integer", title="Horizon", minimum=1,
                         maximum=limit, description=f"Periods to forecast and to backtest per "
                         f"window (1 to {limit})."),
        "force_promotion": Param(False, type="boolean", title="Force promotion",
                                 description="Promote the challenger even if the gate says "
                                 "no (it must still register)."),
        "max_trials": Param(None, type=["null", "integer"], title="Trials per family",
                            minimum=1, maximum=500, section=advanced,
                            description="Search budget per family (empty: the YAML's "
                            f"budgets, {spec.max_trials} by default)."),
        "parallelism": Param(MAX_SEARCH_TASKS, type="integer", title="Search batches",
                             minimum=1, maximum=64, section=advanced,
                             description="Batches of trials, one mapped search task each, "
                             "and the most parts a large panel's final fit is split into "
                             f"(at most {MAX_SEARCH_TASKS} run at once)."),
        "backtest_windows": Param(spec.windows, type="integer", title="Backtest windows",
                                  minimum=1, maximum=52, section=advanced,
                                  description="Rolling-origin backtest windows."),
        "metric": Param(spec.metric, type="string", title="Selection metric",
                        enum=list(METRIC_NAMES), section=advanced,
                        description="Metric that selects the winner and gates promotion."),
    }


def build(spec: DagSpec):  # noqa: ANN201 - a DAG
    asset = champion_asset(spec.name)

    @dag(
        dag_id=f"train_{spec.name}",
        description=spec.description or f"Train and promote a forecaster for {spec.name}",
        doc_md=__doc__ + f"\n\n**Problem:** `{spec.name}` (`{spec.location}`)\n\n"
        f"**Source:** `{spec.source}`\n\n{spec.description}",
        schedule=timetable_of(spec.schedule),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["forecastflow", "training", spec.name, *spec.tags],
        params=params(spec),
        render_template_as_native_obj=True,
    )
    def training_dag() -> None:
        @task
        def ingest() -> dict:
            from forecastflow.orchestration import training

            ingested = training.ingest(_ctx())
            _link(ingested)
            return ingested

        @task
        def validate(ingested: dict) -> dict:
            from forecastflow.orchestration import context, training

            _link(ingested)
            with context.no_retry_on(*training.bad_input()):
                return training.validate(_ctx(), ingested)

        @task
        def profile(validated: dict) -> dict:
            from forecastflow.orchestration import training

            _link(validated)
            return training.profile(_ctx(), validated)

        @task
        def plan_trials(profiled: dict) -> list[dict]:
            from forecastflow.orchestration import training

            _link(profiled)
            return training.plan(_ctx(), profiled)

        @task(max_active_tis_per_dagrun=MAX_SEARCH_TASKS)
        def search(batch: dict) -> dict:
            from forecastflow.orchestration import training

            _link(batch)
            return training.search(_ctx(), batch)

        @task
        def select(searched: list) -> dict:
            from forecastflow.orchestration import training

            searched = list(searched)
            if searched:
                _link(searched[0])
            return training.select(_ctx(), searched)

        @task
        def plan_fit(selected: dict) -> list[dict]:
            from forecastflow.orchestration import training

            _link(selected)
            return training.plan_fit(_ctx(), selected)

        @task(max_active_tis_per_dagrun=MAX_SEARCH_TASKS)
        def fit_part(part: dict) -> dict:
            from forecastflow.orchestration import training

            _link(part)
            return training.fit_part(_ctx(), part)

        @task
        def fit(selected: dict, parts: list) -> dict:
            from forecastflow.orchestration import training

            _link(selected)
            return training.fit(_ctx(), selected, list(parts))

        @task
        def evaluate(selected: dict) -> dict:
            from forecastflow.orchestration import training

            _link(selected)
            return training.evaluate(_ctx(), selected)

        @task
        def register(fitted: dict, evaluated: dict) -> dict:
            from forecastflow.orchestration import training

            _link(fitted)
            return training.register(_ctx(), fitted, evaluated)

        # One promotion per problem at a time, whatever runs overlap (a backfill's runs, a
        # manual trigger beside a scheduled run): each gate sees the champion the last one left.
        @task(max_active_tis_per_dag=1)
        def promote(registered: dict) -> dict:
            from forecastflow.orchestration import training

            _link(registered)
            return training.promote(_ctx(), registered)

        @task.short_circuit
        def champion_changed(decision: dict) -> bool:
            return bool(decision["changed"])

        @task(outlets=[asset])
        def publish_champion(decision: dict) -> dict:
            context = get_current_context()
            context["outlet_events"][asset].extra = {
                "problem": spec.name, "version": decision["champion"],
                "previous": decision.get("previous")}
            return decision

        # A chain: each task takes what the previous one returns (references only).
        batches = plan_trials(profile(validate(ingest())))
        selected = select(search.expand(batch=batches))
        fitted = fit(selected, fit_part.expand(part=plan_fit(selected)))
        decision = promote(register(fitted, evaluate(selected)))
        champion_changed(decision) >> publish_champion(decision)

    return training_dag()


for _spec in discover():
    globals()[f"train_{_spec.name}"] = build(_spec)
