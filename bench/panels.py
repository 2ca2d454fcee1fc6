"""Competition panels side by side with the statsforecast peers (called by bench/accuracy.py).

Protocol: the published split; ForecastFlow and every peer see only the training part (the
ensemble's per-series choice validates on the training part's last windows); sMAPE, MASE and
90% interval coverage on the held-out part, and wall time. The peers run in their own
virtualenv (``bench/.peers-venv``, created on first use from bench/peers-requirements.txt),
because statsforecast 2.1.1 needs pandas < 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from competitions import Competition

HERE = Path(__file__).resolve().parent
PEERS_VENV = Path(os.environ.get("FORECASTFLOW_PEERS_VENV", HERE / ".peers-venv"))
PEERS = ("AutoETS", "AutoTheta", "AutoARIMA", "SeasonalNaive")
# The ForecastFlow variants measured: name -> ensemble parameters.
VARIANTS = {
    "ensemble best": {"combination": "best"},
    "ensemble mean top-2": {"combination": "mean", "top_k": 2},
}


def peers_python() -> Path:
    """The peers' interpreter, creating their virtualenv the first time."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating the peers' virtualenv in {PEERS_VENV} ...", flush=True)
        subprocess.run([sys.executable.replace("/.venv/", "/"), "-m", "venv", str(PEERS_VENV)],
                       check=False)
        if not python.exists():
            subprocess.run(["python3.11", "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                        str(HERE / "peers-requirements.txt")], check=True)
    return python


def run_peers(comp: Competition, jobs: int, models: tuple[str, ...] = PEERS,
              ) -> dict[str, tuple[pd.DataFrame, float]]:
    """Each peer's forecasts (series_id, date, mean, lower, upper) and wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        train = comp.train.rename(columns={"series_id": "unique_id", "date": "ds",
                                           "value": "y"})
        train.to_parquet(Path(tmp) / "train.parquet")
        out = Path(tmp) / "out.parquet"
        proc = subprocess.run(
            [str(peers_python()), str(HERE / "peers.py"), str(Path(tmp) / "train.parquet"),
             str(out), "--freq", comp.freq, "--season", str(comp.season), "--horizon",
             str(comp.horizon), "--jobs", str(jobs), "--models", *models],
            capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"peers failed on {comp.name}: {proc.stderr[-2000:]}")
        seconds = {r["model"]: r["seconds"] for r in map(json.loads,
                                                         proc.stdout.strip().splitlines())}
        frame = pd.read_parquet(out).rename(columns={"unique_id": "series_id", "ds": "date"})
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    return {m: (frame[frame["model"] == m].drop(columns="model"), seconds[m]) for m in models}


def run_forecastflow(comp: Competition, params: dict) -> tuple[pd.DataFrame, float, dict]:
    """The ensemble fitted on the training part: forecasts, wall seconds, family wins."""
    from forecastflow.models import build_model
    from forecastflow.models.transforms import ForecastPipeline

    y = comp.train.set_index(["series_id", "date"])[["value"]]
    start = time.perf_counter()
    model = ForecastPipeline(build_model("ensemble", params, season_length=comp.season,
                                         horizon=comp.horizon))
    if comp.n_series == 1:
        y = y.droplevel("series_id")
        y.index = pd.DatetimeIndex(y.index, freq=comp.freq, name="date")
    fc = model.fit(y).predict(comp.horizon)
    seconds = time.perf_counter() - start
    long = fc.to_long().rename(columns={"forecast": "mean"})
    if "series_id" not in long:
        long.insert(0, "series_id", comp.train["series_id"].iloc[0])
    long["date"] = pd.to_datetime(long["date"]).astype("datetime64[ns]")
    return long[["series_id", "date", "mean", "lower", "upper"]], seconds, model.model_.wins()
