"""The run context every stage receives, read from the running Airflow task: problem, DAG
and run ids, the cutoff (the data-interval end), the UI params; and what derives from it (the
problem with the run's params applied, the run folder, the MLflow parent run)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from forecastflow import connections, storage
from forecastflow.data.problem import ProblemConfig, find_problem
from forecastflow.lifecycle import tracking
from forecastflow.orchestration.constants import LINK_KEY

Context = dict[str, Any]


def run_context(problem: str, dag_id: str, run_id: str, cutoff: Any, logical_date: Any,
                params: dict[str, Any] | None = None) -> Context:
    """The small dict every stage receives. ``cutoff`` is the data-interval end: only rows
    strictly before it are used."""
    end = pd.Timestamp(cutoff)
    end = end.tz_convert("UTC").tz_localize(None) if end.tzinfo else end
    return {"problem": problem, "dag_id": dag_id, "run_id": run_id,
            "cutoff": end.isoformat(), "logical_date": str(logical_date),
            "params": dict(params or {})}


def from_airflow() -> Context:
    """The run context of the running Airflow task (cutoff = its data-interval end; runs
    without one, such as asset-triggered runs, use their logical date or run-after time)."""
    from airflow.sdk import get_current_context

    connections.register_resolver(airflow_connection)
    context = get_current_context()
    run = context["dag_run"]
    cutoff = (context.get("data_interval_end") or context.get("logical_date")
              or run.run_after)
    ctx = run_context(problem=context["params"]["problem"], dag_id=run.dag_id,
                      run_id=run.run_id, cutoff=cutoff,
                      logical_date=context.get("logical_date") or run.run_after,
                      params=dict(context["params"]))
    ctx["created_at"] = str(getattr(run, "start_date", None) or run.run_after)
    return ctx


def airflow_connection(conn_id: str) -> connections.Connection | None:
    """An Airflow connection (metadata database, secrets backends) for sources and stores;
    None when Airflow has no such id."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        found = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    return connections.Connection(conn_id, found.conn_type or "", found.host, found.port,
                                  found.login, found.password, found.schema,
                                  dict(found.extra_dejson))


def effective_problem(ctx: Context) -> ProblemConfig:
    """The problem YAML with the run's UI params applied (horizon, windows, metric)."""
    problem = find_problem(ctx["problem"])
    params = ctx.get("params") or {}
    update: dict[str, Any] = {}
    if params.get("horizon"):
        update["horizon"] = int(params["horizon"])
        update["max_horizon"] = max(int(params["horizon"]), problem.horizon_limit)
    if params.get("metric"):
        update["metric"] = params["metric"]
    if params.get("backtest_windows"):
        update["backtest"] = problem.backtest.model_copy(
            update={"windows": int(params["backtest_windows"])})
    if not update:
        return problem
    from forecastflow.data.problem import parse_problem

    return parse_problem({**problem.model_dump(mode="json"), **{
        k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else v)
        for k, v in update.items()}}, origin=f"{problem.name} with run params")


def run_dir(ctx: Context) -> Path:
    """``<state>/runs/<problem>/<data interval end>/``: one folder per problem and interval."""
    key = ctx["cutoff"].replace(":", "-")
    folder = storage.state_dir() / "runs" / ctx["problem"] / key
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def inclusive_cutoff(ctx: Context) -> pd.Timestamp:
    return pd.Timestamp(ctx["cutoff"]) - pd.Timedelta(1, "ns")


def parent_run(ctx: Context) -> str:
    """The MLflow parent run of this DAG run (created once, found again on retries)."""
    return tracking.find_or_create_run(
        ctx["problem"], {"airflow_run_id": ctx["run_id"], "forecastflow.role": "training"},
        run_name=tracking.parent_run_name(ctx["problem"], ctx["run_id"]),  # + window: validate
        tags={"dag_id": ctx["dag_id"], "logical_date": ctx["logical_date"],
              "data_cutoff": ctx["cutoff"], "code_version": tracking.code_version()})


def push_link(refs: dict[str, Any]) -> None:
    """Push the URL of the DAG run's MLflow parent run (found in ``refs``) for the plugin's
    "MLflow run" button."""
    from airflow.sdk import get_current_context

    run_id = refs.get("parent_run_id") or (refs.get("run") or {}).get("parent_run_id")
    if run_id:
        get_current_context()["ti"].xcom_push(key=LINK_KEY, value=tracking.run_url(run_id))


@contextmanager
def no_retry_on(*errors: type[Exception]) -> Iterator[None]:
    """Fail the running task at once, without retries, on ``errors`` (bad input: retrying
    would not help); other errors keep the task's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as err:
        raise AirflowFailException(str(err)) from err
