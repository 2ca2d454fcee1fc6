"""What a DAG file needs to know about each problem, read without heavy imports.

DAG parsing must stay fast and touch no database: this reads the YAML files with PyYAML only.
The full pydantic validation runs inside the tasks (a broken file fails its ``validate`` task
with a message naming the field, and is logged here).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from forecastflow.connections import masked
from forecastflow.data.problem import problem_files, read_declaration

log = logging.getLogger(__name__)

# Copies of forecastflow.models.FAMILIES, metrics.METRICS and the YAML defaults (importing
# those would import pandas at DAG parse time); tests/orchestration/test_spec.py checks them.
FAMILY_NAMES = ("naive", "seasonal_naive", "drift", "sarimax", "varmax", "gradient_boosting",
                "ets", "fast_ets", "theta", "auto_arima", "ensemble")
# forecastflow.evaluation.defaults.POSSIBLE: the form's choices when the YAML lists no models.
DEFAULT_CANDIDATES = ("ensemble", "sarimax", "varmax", "gradient_boosting", "seasonal_naive",
                      "naive")
METRIC_NAMES = ("mase", "rmse", "mae", "mape", "smape", "coverage")
CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
                "@monthly": "0 0 1 * *", "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}


def cron_of(schedule: str | None) -> str | None:
    """A 5-field cron expression for a schedule preset or cron string (None: unscheduled)."""
    if schedule in (None, "@once"):
        return None
    return CRON_PRESETS.get(schedule, schedule)


def timetable_of(schedule: str | None):  # noqa: ANN201 - an Airflow timetable, str or None
    """The DAG schedule for a YAML ``schedule``: a cron trigger that waits for its next tick
    when the DAG is first unpaused (no run for the tick just past, so "unpause on trigger"
    starts only the run the user asked for), or ``@once`` / None as given."""
    cron = cron_of(schedule)
    if cron is None:
        return schedule
    from datetime import timedelta

    from airflow.sdk import CronTriggerTimetable

    return CronTriggerTimetable(cron, timezone="UTC", run_immediately=timedelta(0))


def project_relative(path: Path) -> str:
    """``path`` as a user would name it: relative to the project or to
    ``FORECASTFLOW_PROBLEMS_DIR``, never the parsing machine's absolute path."""
    path = Path(path)
    roots = [(Path(__file__).resolve().parents[3], "")]
    user_dir = os.environ.get("FORECASTFLOW_PROBLEMS_DIR")
    if user_dir:
        roots.insert(0, (Path(user_dir).expanduser().resolve(), "$FORECASTFLOW_PROBLEMS_DIR/"))
    for root, prefix in roots:
        try:
            return prefix + path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue
    return path.name


@dataclass(frozen=True)
class DagSpec:
    name: str
    path: str
    description: str
    schedule: str | None
    horizon: int
    max_horizon: int
    families: list[str]
    windows: int
    metric: str
    max_trials: int
    source: str
    tags: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        """The YAML's path relative to the project (or the user's problems folder)."""
        return project_relative(Path(self.path))


def read_spec(path: Path) -> DagSpec:
    data = read_declaration(path)
    name = str(data["name"])
    horizon = int(data["horizon"])
    families = [str(m["family"]) for m in data.get("models") or []]
    backtest = data.get("backtest") or {}
    tags = [f"{k}:{v}" for k, v in (data.get("tags") or {}).items()]
    return DagSpec(
        name=name, path=str(path), description=str(data.get("description", "")),
        schedule=data.get("schedule", "@daily"), horizon=horizon,
        max_horizon=int(data.get("max_horizon") or horizon), families=families,
        windows=int(backtest.get("windows", 3)), metric=str(data.get("metric", "mase")),
        max_trials=int(data.get("max_trials", 20)), source=masked(str(data.get("source", ""))),
        tags=tags)


def discover() -> list[DagSpec]:
    """Specs of every problem file (shipped demos and ``FORECASTFLOW_PROBLEMS_DIR``); a file
    that cannot be read is logged and skipped so the other problems keep their DAGs."""
    specs = []
    for path in problem_files():
        try:
            specs.append(read_spec(path))
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as err:
            log.error("forecastflow: skipping problem file %s: %s", path, err)
    return specs
