"""
### ForecastFlow realized-accuracy monitoring: `monitor_<problem>`

One DAG per problem YAML, on the problem's schedule: joins stored forecasts with the actuals
that have arrived, computes realized RMSE / MASE / coverage per model version and horizon
step, stores them next to the forecasts and logs them to MLflow
(`forecastflow/<problem>/monitoring`). When the champion's realized MASE exceeds
`monitoring.max_mase` from the YAML it triggers `train_<problem>` and says why.

It starts **unpaused**: before a champion's forecasts exist a run finds nothing to score.

Wiring only: the task body is `forecastflow.orchestration.monitor.monitor`.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from forecastflow.orchestration.constants import DEFAULT_ARGS
from forecastflow.orchestration.spec import DagSpec, discover, timetable_of


def _problem_param(name: str) -> Param:
    return Param(name, type="string", const=name)  # fixed per DAG: not shown in the form


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
            from forecastflow.orchestration import context
            from forecastflow.orchestration import monitor as monitoring

            with context.no_retry_on(*monitoring.bad_input()):
                return monitoring.monitor(context.from_airflow())

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
    globals()[f"monitor_{_spec.name}"] = build_monitor(_spec)
