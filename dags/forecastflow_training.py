"""
### ForecastFlow training DAGs

One `train_<problem>` DAG per problem YAML (shipped demos in `include/problems/` plus
`FORECASTFLOW_PROBLEMS_DIR`). Each run trains on the data before its data-interval end:

ingest → validate → preprocess → plan trials → **search** (mapped over batches of trials) →
select → fit the winner → backtest/evaluate against seasonal naive → register in MLflow as
`challenger` → **promote** to `champion` only if it beats seasonal naive and the current
champion on the same windows → publish the problem's champion Asset when the champion changed.

Tasks pass references (run-folder paths, MLflow run ids, model versions), never DataFrames.
This file only wires: every task body is a call into `forecastflow.training`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from forecastflow.dagspec import FAMILY_NAMES, METRIC_NAMES, DagSpec, champion_asset, discover

LINK_KEY = "_link_MLflowRunLink"  # plugins/forecastflow_links.py reads it
DEFAULT_ARGS = {"owner": "forecastflow", "retries": 2, "retry_delay": timedelta(seconds=30)}


def _ctx() -> dict:
    from forecastflow import training

    return training.from_airflow()


def _link(result: dict) -> dict:
    """Push the MLflow parent-run URL for the plugin's "MLflow run" button."""
    from forecastflow import tracking

    run_id = result.get("parent_run_id")
    if run_id:
        get_current_context()["ti"].xcom_push(key=LINK_KEY, value=tracking.run_url(run_id))
    return result


def build(spec: DagSpec):  # noqa: ANN201 - a DAG
    asset = champion_asset(spec.name)

    @dag(
        dag_id=f"train_{spec.name}",
        description=spec.description or f"Train and promote a forecaster for {spec.name}",
        doc_md=__doc__ + f"\n\n**Problem:** `{spec.name}` ({spec.path})\n\n"
        f"**Source:** `{spec.source}`\n\n{spec.description}",
        schedule=spec.schedule,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["forecastflow", "training", spec.name, *spec.tags],
        params={
            "problem": Param(spec.name, type="string", enum=[spec.name],
                             description="The problem this DAG trains (fixed)."),
            "horizon": Param(spec.horizon, type="integer", minimum=1,
                             maximum=max(spec.max_horizon, spec.horizon),
                             description="Periods to forecast and to backtest per window."),
            "families": Param(spec.families, type="array",
                              items={"type": "string", "enum": list(FAMILY_NAMES)},
                              description="Model families to search (declared in the YAML)."),
            "max_trials": Param(None, type=["null", "integer"], minimum=1, maximum=500,
                                description="Search budget: trials per family (empty: the "
                                "YAML's budgets)."),
            "backtest_windows": Param(spec.windows, type="integer", minimum=1, maximum=52,
                                      description="Rolling-origin backtest windows."),
            "metric": Param(spec.metric, type="string", enum=list(METRIC_NAMES),
                            description="Selection and promotion metric."),
            "force_promotion": Param(False, type="boolean",
                                     description="Promote even if the gate says no."),
            "parallelism": Param(4, type="integer", minimum=1, maximum=64,
                                 description="Search batches (mapped tasks)."),
        },
        render_template_as_native_obj=True,
    )
    def training_dag() -> None:
        @task
        def ingest() -> dict:
            from forecastflow import training

            return _link(training.ingest(_ctx()))

        @task
        def validate(ingested: dict) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from forecastflow import training
            from forecastflow.config import ProblemConfigError
            from forecastflow.validate import DataValidationError

            try:
                return _link(training.validate(_ctx(), ingested))
            except (DataValidationError, ProblemConfigError) as err:
                raise AirflowFailException(str(err)) from err  # bad data: retrying won't help

        @task
        def preprocess(validated: dict) -> dict:
            from forecastflow import training

            _link(validated)
            return training.preprocess(_ctx(), validated)

        @task
        def plan_trials(validated: dict, profile: dict) -> list[dict]:
            from forecastflow import training

            _link(validated)
            return training.plan(_ctx(), validated)

        @task(max_active_tis_per_dagrun=4)
        def search(validated: dict, batch: dict) -> dict:
            from forecastflow import training

            _link(validated)
            return training.search(_ctx(), validated, batch)

        @task
        def select(validated: dict, searched: list) -> dict:
            from forecastflow import training

            _link(validated)
            return training.select(_ctx(), validated, list(searched))

        @task
        def fit(validated: dict, selected: dict) -> dict:
            from forecastflow import training

            _link(validated)
            return training.fit(_ctx(), validated, selected)

        @task
        def evaluate(validated: dict, selected: dict) -> dict:
            from forecastflow import training

            _link(validated)
            return training.evaluate(_ctx(), validated, selected)

        @task
        def register(validated: dict, selected: dict, fitted: dict, evaluated: dict) -> dict:
            from forecastflow import training

            _link(validated)
            return training.register(_ctx(), validated, selected, fitted, evaluated)

        @task
        def promote(validated: dict, evaluated: dict, registered: dict) -> dict:
            from forecastflow import training

            _link(validated)
            return training.promote(_ctx(), validated, evaluated, registered)

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

        validated = validate(ingest())
        batches = plan_trials(validated, preprocess(validated))
        searched = search.partial(validated=validated).expand(batch=batches)
        selected = select(validated, searched)
        fitted = fit(validated, selected)
        evaluated = evaluate(validated, selected)
        registered = register(validated, selected, fitted, evaluated)
        decision = promote(validated, evaluated, registered)
        champion_changed(decision) >> publish_champion(decision)

    return training_dag()


for _spec in discover():
    globals()[f"train_{_spec.name}"] = build(_spec)
