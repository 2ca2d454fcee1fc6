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
import tempfile
import time
from pathlib import Path

import pandas as pd
from competitions import Competition

HERE = Path(__file__).resolve().parent
PEERS_VENV = Path(os.environ.get("FORECASTFLOW_PEERS_VENV", HERE / ".peers-venv"))
PEERS = ("AutoETS", "AutoTheta", "AutoARIMA", "SeasonalNaive")
# The ForecastFlow variants measured, all from one ensemble fit: (combination, top_k); None
# is every member.
VARIANTS = {"best": ("best", 1), "mean top-2": ("mean", 2), "mean all": ("mean", None),
            "median all": ("median", None)}

def peers_python() -> Path:
    """The peers' interpreter, creating their virtualenv the first time."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating the peers' virtualenv in {PEERS_VENV} ...", flush=True)
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


def run_forecastflow(comp: Competition) -> tuple[dict[str, pd.DataFrame], float, dict]:
    """One ensemble fitted on the training part (every member on every series), and each
    variant's forecasts (series_id, date, mean, lower, upper); wall seconds; family wins of
    the per-series best."""
    from forecastflow.evaluation.defaults import ensemble_params
    from forecastflow.models import build_model
    from forecastflow.models.ensemble import default_members

    # The members a problem without ``models:`` gets (automatic ARIMA only on few series).
    members = ensemble_params(comp.n_series, comp.season).get(
        "members", default_members(comp.season))
    y = comp.train.set_index(["series_id", "date"])[["value"]]
    if comp.n_series == 1:
        y = y.droplevel("series_id")
        y.index = pd.DatetimeIndex(y.index, freq=comp.freq, name="date")
    start = time.perf_counter()
    model = build_model("ensemble", {"members": members, "combination": "mean",
                                     "top_k": len(members)},
                        season_length=comp.season, horizon=comp.horizon).fit(y)
    seconds = time.perf_counter() - start
    out = {}
    for name, (how, k) in VARIANTS.items():
        variant = model.variant(how, k or len(members))
        long = variant.predict(comp.horizon).to_long().rename(columns={"forecast": "mean"})
        if "series_id" not in long:
            long.insert(0, "series_id", comp.train["series_id"].iloc[0])
        long["date"] = pd.to_datetime(long["date"]).astype("datetime64[ns]")
        out[name] = long[["series_id", "date", "mean", "lower", "upper"]]
    return out, seconds, model.variant("best", 1).wins()
