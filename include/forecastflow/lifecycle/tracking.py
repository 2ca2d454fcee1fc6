"""MLflow tracking: where runs go, and idempotent parent/child runs for a DAG run.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; the embedded default is a SQLite store
(``<state>/mlflow.db``) with artifacts under ``<state>/mlartifacts``. One experiment per
problem; one parent run per DAG run (found again by its ``airflow_run_id`` tag, so a retried
task logs into the same run); one child run per trial.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from forecastflow.storage import state_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

METRIC_PREFIX = "backtest_"
BASELINE_PREFIX = "baseline_"
# MLflow 3's UI opens an experiment in its GenAI view (traces, no Models entry) unless the
# experiment says it is classic model development or the URL asks for the ML view.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
WORKFLOW_QUERY = "workflowType=machine_learning"


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    path = state_dir() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def artifact_root() -> str:
    root = state_dir() / "mlartifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.as_uri()


_READY: set[str] = set()


class _LineLogger(io.TextIOBase):
    """A text stream whose lines become log records of ``logger`` at ``level`` (a line per
    thread is buffered until its newline; ``enabled`` as on MLflow's own stream)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__()
        self.logger, self.level, self.enabled = logger, level, True
        self._local = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._local.pending = (getattr(self._local, "pending", "") + text).split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        pending, self._local.pending = getattr(self._local, "pending", ""), ""
        self._emit(pending)

    def _emit(self, line: str) -> None:
        if self.enabled and line.strip():
            self.logger.log(self.level, line.rstrip())


# The loggers MLflow gives its own stderr handler (mlflow.utils.logging_utils).
MLFLOW_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey")


def route_mlflow_logs() -> None:
    """Send MLflow's messages through Python logging: its progress prints (``Registered model
    ... already exists. Creating a new version``) as INFO records of the ``mlflow`` logger,
    and its loggers, at the levels MLflow set, to the root handlers. Both otherwise write to
    stderr, which an Airflow 3 task log shows as ERROR."""
    from mlflow.utils import logging_utils

    if not isinstance(logging_utils.MLFLOW_LOGGING_STREAM, _LineLogger):
        # eprint() looks the stream up at each call.
        logging_utils.MLFLOW_LOGGING_STREAM = _LineLogger(logging.getLogger("mlflow"),
                                                          logging.INFO)
    for name in MLFLOW_LOGGERS:
        logger = logging.getLogger(name)
        own = [h for h in logger.handlers
               if isinstance(getattr(h, "stream", None), logging_utils.MlflowLoggingStream)]
        if own:  # only what MLflow configured; a host application's setup is left alone
            logger.handlers = [h for h in logger.handlers if h not in own]
            logger.propagate = True


def client() -> Any:
    """An ``MlflowClient`` on the configured tracking and registry URI."""
    import mlflow
    from mlflow import MlflowClient

    route_mlflow_logs()
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not uri.startswith("sqlite:///") or uri in _READY:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # Create or upgrade a SQLite store's schema under a file lock: two tasks touching a new
    # store at once would otherwise race in its migrations ("duplicate column", "Online
    # migration expected to match one row").
    import fcntl

    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            mlflow_client.search_experiments(max_results=1)  # tracking tables
            mlflow_client.search_registered_models(max_results=1)  # registry tables
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(uri)
    return mlflow_client


def retry(call: Callable[[], T], what: str, attempts: int = 8) -> T:
    """Retry SQLite lock contention ("database is locked") with backoff."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import OperationalError

    for attempt in range(attempts):
        try:
            return call()
        except (MlflowException, OperationalError) as err:
            if "locked" not in str(err).lower() or attempt == attempts - 1:
                raise
            delay = 0.2 * 2**attempt
            log.warning("%s: store busy (%s), retrying in %.1fs", what, err, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def experiment_id(problem: str) -> str:
    """The problem's experiment, created on first use."""
    mlflow_client = client()
    name = f"forecastflow/{problem}"
    found = retry(lambda: mlflow_client.get_experiment_by_name(name), "get experiment")
    if found is not None:
        if found.tags.get("mlflow.experimentKind") is None:  # created before the tag
            for key, value in EXPERIMENT_KIND.items():
                retry(lambda k=key, v=value: mlflow_client.set_experiment_tag(
                    found.experiment_id, k, v), "tag experiment")
        return found.experiment_id
    from mlflow.exceptions import MlflowException

    # Without a tracking server to hold artifacts, keep them in the state folder (MLflow's
    # default would be ./mlruns under whatever directory the worker runs in).
    local_store = not is_server(tracking_uri())
    location = f"{artifact_root()}/{problem}" if local_store else None
    try:
        return retry(lambda: mlflow_client.create_experiment(
            name, artifact_location=location,
            tags={"forecastflow.problem": problem, **EXPERIMENT_KIND}),
            "create experiment")
    except MlflowException:  # created concurrently by a sibling task
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_or_create_run(problem: str, key_tags: dict[str, str], run_name: str,
                       parent_run_id: str | None = None,
                       tags: dict[str, str] | None = None,
                       start_time: int | None = None) -> str:
    """The run carrying ``key_tags`` (created if absent): a retried task reuses its run.
    ``start_time`` (epoch ms) records when the work began, for runs logged after it."""
    mlflow_client = client()
    exp = experiment_id(problem)
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in key_tags.items())
    if parent_run_id:
        query += f" and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    runs = retry(lambda: mlflow_client.search_runs([exp], filter_string=query, max_results=1),
                 "search runs")
    if runs:
        return runs[0].info.run_id
    all_tags = {**key_tags, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = retry(lambda: mlflow_client.create_run(exp, start_time=start_time, tags=all_tags,
                                                 run_name=run_name), "create run")
    return run.info.run_id


def log_run(run_id: str, params: dict[str, Any] | None = None,
            metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
            status: str | None = None, end_time: int | None = None) -> None:
    """Log params (stringified), finite metrics and tags to ``run_id`` in one batch; with
    ``status``, end the run (at ``end_time``, epoch ms, when the work ended earlier)."""
    import math

    from mlflow.entities import Metric, Param, RunTag

    mlflow_client = client()
    now = int(time.time() * 1000)
    existing = retry(lambda: mlflow_client.get_run(run_id), "get run").data.params
    batch_params = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()
                    if k not in existing]  # params are immutable: a re-run keeps its own
    batch_metrics = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()
                     if v is not None and math.isfinite(float(v))]
    batch_tags = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
    retry(lambda: mlflow_client.log_batch(run_id, metrics=batch_metrics, params=batch_params,
                                          tags=batch_tags), "log batch")
    if status:
        retry(lambda: mlflow_client.set_terminated(run_id, status=status, end_time=end_time),
              "end run")


def log_artifacts(run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    mlflow_client = client()
    for path in paths:
        retry(lambda p=path: mlflow_client.log_artifact(run_id, str(p), artifact_path),
              f"log artifact {path.name}")


def lineage_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """A source's lineage record as ``source.*`` run tags: scalars as they are, S3 objects as
    ``key@etag`` (with ``#version`` when the bucket keeps versions)."""
    tags = {f"source.{key}": str(value) for key, value in lineage.items()
            if value is not None and not isinstance(value, (list, dict))}
    objects = lineage.get("objects") or []
    if objects:
        tags["source.n_objects"] = str(len(objects))
        tags["source.objects"] = ", ".join(
            f"{o['key']}@{o['etag']}" + (f"#{o['version_id']}" if o.get("version_id") else "")
            for o in objects)[:5000]
    if lineage.get("query_params"):
        tags["source.query_params"] = json.dumps(lineage["query_params"], sort_keys=True)
    return tags


def metric_names(metrics: dict[str, float], prefix: str = METRIC_PREFIX) -> dict[str, float]:
    """``{"mase": x}`` -> ``{"backtest_mase": x}``: one naming across all families."""
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def code_version() -> str:
    """Git commit of the project, or ``unknown`` outside a checkout."""
    env = os.environ.get("FORECASTFLOW_CODE_VERSION")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parent_run_name(problem: str, airflow_run_id: str, data_window: str | None = None) -> str:
    """A DAG run's MLflow run name: listed by problem and data window, told apart by the
    Airflow run id (``us_macro 1959-03-31..2009-09-30 (manual__2026-...)``). Before
    validation knows the window: ``us_macro (manual__2026-...)``."""
    return " ".join(part for part in (problem, data_window, f"({airflow_run_id})") if part)


def is_server(uri: str) -> bool:
    """A tracking URI served by a tracking server (which has its own UI and artifact store)."""
    return uri.startswith(("http://", "https://", "databricks"))


def ui_url() -> str:
    """The MLflow UI: ``FORECASTFLOW_MLFLOW_UI``, else the tracking server when
    ``MLFLOW_TRACKING_URI`` is one, else http://localhost:5000 (``forecastflow mlflow-ui``)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    default = uri if uri.startswith(("http://", "https://")) else "http://localhost:5000"
    return (os.environ.get("FORECASTFLOW_MLFLOW_UI") or default).rstrip("/")


def run_url(run_id: str, experiment: str | None = None) -> str:
    """Link to a run's page in the MLflow UI's classic ML view (see :func:`ui_url`)."""
    base = ui_url()
    if experiment is None:
        experiment = client().get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment}/runs/{run_id}?{WORKFLOW_QUERY}"


def mlflow_ui_command(host: str = "127.0.0.1", port: int = 5000) -> list[str] | None:
    """The ``mlflow ui`` command line on this configuration's store (None when the tracking
    URI is a server: its own UI is the one to open)."""
    import sys

    uri = tracking_uri()
    if is_server(uri):
        return None
    return [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri,
            "--default-artifact-root", artifact_root(), "--host", host, "--port", str(port)]


def log_trials(problem: str, airflow_run_id: str, parent: str, results: list[Any]) -> None:
    """One MLflow child run per trial (named by family, the parameters that differ and the
    transform, with the start and end of its backtest), with the metric names shared by all
    families."""
    from forecastflow.evaluation.search import trial_labels

    names = trial_labels([result.trial for result in results])
    for result in results:
        child = find_or_create_run(
            problem, {"airflow_run_id": airflow_run_id, "trial_id": result.trial.trial_id},
            run_name=names[result.trial.trial_id], parent_run_id=parent,
            tags={"family": result.trial.family, "forecastflow.role": "trial"},
            start_time=result.extra.get("started_at"))
        log_run(child, params={"family": result.trial.family,
                               "transform": result.trial.transform, **result.trial.params},
                metrics={**metric_names(result.metrics),
                         "failed_windows": result.n_failed_windows,
                         "search_seconds": result.seconds},
                tags={"status": result.status, "error": result.error,
                      "n_series": str(result.n_series)},
                status="FINISHED" if result.status == "ok" else "FAILED",
                end_time=result.extra.get("ended_at"))
