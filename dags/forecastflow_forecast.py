"""
### ForecastFlow batch forecasts: `forecast_<problem>`

One DAG per problem YAML. It runs when the problem's champion changes (the Asset
`x-forecastflow://champion/<problem>` published by `train_<problem>`) and on the problem's
schedule. It forecasts with `models:/<problem>@champion` and writes long-format rows with
intervals, model version, origin, cutoff and created-at to the forecast store (Parquet
partitioned by problem and run; a re-run replaces its own partition), and logs a forecast
plot to MLflow.

It starts **unpaused**: it acts only once `train_<problem>` has promoted a champion (before
that, a run skips), so unpausing the training DAG is all a user does for promotions to reach
batch forecasts.

Wiring only: the task body is `forecastflow.orchestration.forecast.forecast`.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, Param, dag, task

from forecastflow.orchestration.constants import DEFAULT_ARGS, champion_asset
from forecastflow.orchestration.spec import DagSpec, discover, timetable_of


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
            from airflow.sdk.exceptions import AirflowSkipException

            from forecastflow.orchestration import context
            from forecastflow.orchestration import forecast as batch

            try:
                result = batch.forecast(context.from_airflow())
            except batch.NoChampionError as err:
                raise AirflowSkipException(str(err)) from err
            context.push_link(result)
            return result

        forecast()

    return forecast_dag()


for _spec in discover():
    globals()[f"forecast_{_spec.name}"] = build_forecast(_spec)
