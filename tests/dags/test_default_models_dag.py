"""A problem whose YAML lists no models, on a ragged panel, through real Airflow runs: the
default candidates are searched, the per-series ensemble wins, its choice table and family
chart land in MLflow, the champion forecasts every series from its own last date, and the
batch forecast DAG stores those origins."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.dags.conftest import base_env, dags_test

NAME = "ragged_auto"
pytestmark = pytest.mark.slow


def ragged_panel() -> pd.DataFrame:
    """Six monthly series: trending ones and seasonal ones; two stop reporting early."""
    rng = np.random.default_rng(7)
    rows = []
    for k in range(6):
        n = 60 - (3 if k == 4 else 5 if k == 5 else 0)
        t = np.arange(n)
        if k % 2:
            values = 200 + 4.0 * t + rng.normal(0, 1.0, n)
        else:
            values = 100 + 25 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1.0, n)
        dates = pd.date_range("2020-01-01", periods=n, freq="MS")
        rows.append(pd.DataFrame({"shop": f"s{k}", "month": dates, "sales": values}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def setup(migrated, tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    csv = root / "ragged.csv"
    ragged_panel().to_csv(csv, index=False)
    problems = root / "problems"
    problems.mkdir()
    problem = {"name": NAME, "source": str(csv), "time_column": "month", "id_column": "shop",
               "target": "sales", "frequency": "MS", "horizon": 6,
               "backtest": {"windows": 2}, "schedule": "@monthly"}
    (problems / f"{NAME}.yaml").write_text(yaml.safe_dump(problem))
    return {"env": base_env(migrated, problems=problems, state=root / "state"), "root": root}


def test_default_candidates_choose_per_series_and_forecast_from_own_ends(setup):
    env = setup["env"]
    run = dags_test(env, f"train_{NAME}", "2025-01-01")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "declares no models; default candidates: ['ensemble', 'seasonal_naive']" in (
        run.stdout + run.stderr)
    code = f"""
import json, mlflow, pandas as pd
from forecastflow.lifecycle import tracking
c = tracking.client()
version = c.get_model_version_by_alias("{NAME}", "champion")
run = c.get_run(version.run_id)
parent = run.data.tags.get("mlflow.parentRunId") or version.run_id
files = [f.path for f in c.list_artifacts(parent, "selection")]
table = pd.read_csv(mlflow.artifacts.download_artifacts(
    run_id=parent, artifact_path="selection/per_series_choice.csv"))
model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
out = model.predict(pd.DataFrame({{"horizon": [2]}}))
first = out.groupby("series_id")["date"].min().astype(str).to_dict()
print(json.dumps({{"family": version.tags["family"], "files": files,
                  "series": table["series_id"].tolist(), "families": table["family"].tolist(),
                  "wins": c.get_run(parent).data.tags.get("per_series_wins"),
                  "first": first}}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["family"] == "ensemble"
    assert sorted(result["files"]) == ["selection/family_wins.png",
                                       "selection/per_series_choice.csv"]
    assert result["series"] == [f"s{k}" for k in range(6)]
    assert json.loads(result["wins"])
    # Each series' forecast starts after its own last observation.
    assert result["first"]["s0"] == "2025-01-01"
    assert result["first"]["s4"] == "2024-10-01"
    assert result["first"]["s5"] == "2024-08-01"

    forecast = dags_test(env, f"forecast_{NAME}", "2025-01-02")
    assert forecast.returncode == 0, forecast.stdout[-4000:] + forecast.stderr[-4000:]
    stored = list((setup["root"] / "state").rglob("forecasts/**/*.parquet"))
    assert stored, "no forecast partition written"
    rows = pd.read_parquet(stored[0])
    origins = rows.groupby("series_id")["origin"].first().astype(str).str[:10].to_dict()
    assert origins["s0"] == "2024-12-01" and origins["s5"] == "2024-07-01"
