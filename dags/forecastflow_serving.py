"""
### ForecastFlow batch forecasts and realized-accuracy monitoring

Two DAGs per problem YAML:

- `forecast_<problem>`: runs when the problem's champion changes (the Asset
  `x-forecastflow://champion/<problem>` published by `train_<problem>`) and on the problem's
  schedule. It forecasts with `models:/<problem>@champion` and writes long-format rows with
  intervals, model version, origin, cutoff and created-at to the forecast store (Parquet
  partitioned by problem and run; a re-run replaces its own partition), and logs a forecast
  plot to MLflow.
- `monitor_<problem>`: on the problem's schedule, joins stored forecasts with the actuals
  that have arrived, computes realized RMSE / MASE / coverage per model version and horizon
  step, stores them next to the forecasts and logs them to MLflow
  (`forecastflow/<problem>/monitoring`). When the champion's realized MASE exceeds
  `monitoring.max_mase` from the YAML it triggers `train_<problem>` and says why.

Both start **unpaused**: they act only once their training DAG has promoted a champion
(before that, a forecast run skips and a monitor run finds nothing to score), so unpausing
`train_<problem>` is all a user does for promotions to reach batch forecasts and monitoring.

Wiring only: task bodies live in `forecastflow.batch` and `forecastflow.monitor`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import AssetOrTimeSchedule, Param, dag, task

from forecastflow.dagspec import LINK_KEY, DagSpec, champion_asset, discover, timetable_of

DEFAULT_ARGS = {"owner": "forecastflow", "retries": 2, "retry_delay": timedelta(seconds=30)}


def _problem_param(name: str) -> Param:
    return Param(name, type="string", const=name)  # fixed per DAG: not shown in the form


def build_forecast(spec: DagSpec):  # noqa: ANN201 - a DAG
    asset = champion_asset(spec.name)
    timetable = timetable_of(spec.schedule)
    schedule = asset if timetable is None or isinstance(timetable, str) else (
        AssetOrTimeSchedule(timetable=timetable, assets=asset))

    @dag(
        dag_id=f"forecast_{spec.name}",
        description=f"Batch forecasts of {spec.name} from its champion model",
        doc_md=__doc__ + f"\n\n**Problem:** `{spec.name}` (`{spec.location}`)",
        schedule=schedule, catchup=False, max_active_runs=1, is_paused_upon_creation=False,
        default_args=DEFAULT_ARGS,
        tags=["forecastflow", "forecast", spec.name, *spec.tags],
        params={"problem": _problem_param(spec.name),
                "horizon": Param(spec.horizon, type="integer", title="Horizon", minimum=1,
                                 maximum=max(spec.max_horizon, spec.horizon),
                                 description="Periods to forecast.")},
    )
    def forecast_dag() -> None:
        @task
        def forecast() -> dict:
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowSkipException

            from forecastflow import batch, tracking, training

            try:
                result = batch.forecast(training.from_airflow())
            except batch.NoChampionError as err:
                raise AirflowSkipException(str(err)) from err
            get_current_context()["ti"].xcom_push(
                key=LINK_KEY, value=tracking.run_url(result["parent_run_id"]))
            return result

        forecast()

    return forecast_dag()


def build_monitor(spec: DagSpec):  # noqa: ANN201 - a DAG
    @dag(
        dag_id=f"monitor_{spec.name}",
        description=f"Realized accuracy of {spec.name}'s stored forecasts; retrain trigger",
        doc_md=__doc__ + f"\n\n**Problem:** `{spec.name}` (`{spec.location}`)",
        schedule=timetable_of(spec.schedule), catchup=False, max_active_runs=1,
        is_paused_upon_creation=False,
        default_args=DEFAULT_ARGS,
        tags=["forecastflow", "monitoring", spec.name, *spec.tags],
        params={"problem": _problem_param(spec.name)},
    )
    def monitor_dag() -> None:
        @task
        def monitor() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from forecastflow import monitor as monitoring
            from forecastflow import training
            from forecastflow.validate import DataValidationError

            try:
                return monitoring.monitor(training.from_airflow())
            except DataValidationError as err:
                raise AirflowFailException(str(err)) from err  # bad data: retrying won't help

        @task.short_circuit
        def needs_retrain(result: dict) -> bool:
            import logging

            logging.getLogger(__name__).info(
                "%s: %s", "RETRAIN" if result["retrain"] else "no retrain", result["reason"])
            return bool(result["retrain"])

        result = monitor()
        needs_retrain(result) >> TriggerDagRunOperator(
            task_id="trigger_retrain", trigger_dag_id=f"train_{spec.name}",
            conf={"triggered_by": "monitor_" + spec.name,
                  "reason": "{{ ti.xcom_pull(task_ids='monitor')['reason'] }}"},
            wait_for_completion=False)

    return monitor_dag()


for _spec in discover():
    globals()[f"forecast_{_spec.name}"] = build_forecast(_spec)
    globals()[f"monitor_{_spec.name}"] = build_monitor(_spec)
