"""Scale benchmark, DAG level: the real ``train_<p>`` and ``forecast_<p>`` DAGs on panels of
N monthly series, and ``forecastflow serve`` on the champion they publish.

    cd bench && ../.venv/bin/python scale_dag.py [--sizes 1000 10000] [--jobs 2]

For each size, in a fresh temporary state folder: the panel of ``scale.py`` (M1 and Tourism
monthly series, rescaled, noisy, cut to random lengths; the last 12 months held out) is
written as a Parquet file, and a problem YAML without ``models:`` (the default candidates)
points at it (three backtest origins 4 months apart, so that the shortest series, 4 years,
are kept). ``airflow standalone`` (LocalExecutor, SQLite, 2 slots) runs ``train_<p>``
from a manual trigger; its champion Asset starts ``forecast_<p>``. Reported per size:

- wall seconds of each task (and the run), and each task's peak memory (the plugin's
  listener logs it in the task log);
- XComs: how many and their total JSON bytes, per DAG;
- MLflow: runs, logged metric values and params of the problem's experiment;
- the registered model's pickle size, its serving card's size, the forecast store's size;
- ``forecastflow serve``: seconds from start to the first answered forecast, then the p50 and
  p99 latency of 300 one-series forecasts (random series, horizon 12);
- sMAPE of the stored batch forecasts on the held-out year; and statsforecast's AutoETS
  (bench peers virtualenv, same number of processes) fitting and forecasting the same panel
  in the same run: its seconds and sMAPE, and the ratio of the training run to it.

With ``--celery`` the same ``train_<p>`` runs on the native Celery cluster
(``deploy/local_cluster.py``) with one worker and then two (one slot each), for the speed-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from competitions import scores
from scale import HORIZON, panel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.standalone import standalone, standalone_env  # noqa: E402

BIN = Path(sys.executable).parent
PEAK = re.compile(r"peak memory of this task: (\d+) MB")


def environment(home: Path, port: int, jobs: int) -> dict[str, str]:
    """``airflow standalone``'s environment with ``jobs`` slots and fitting processes."""
    return {**standalone_env(home, port, jobs), "FORECASTFLOW_JOBS": str(jobs)}


def write_problem(n_series: int, home: Path) -> tuple[str, pd.DataFrame]:
    """The panel's training part as Parquet and a problem YAML without models; returns the
    problem name and the held-out rows."""
    comp = panel(n_series)
    data = home / "data" / f"scale_{n_series}.parquet"
    data.parent.mkdir(parents=True)
    comp.train.to_parquet(data, index=False)
    name = f"scale_{n_series}"
    problem = {"name": name, "description": f"{n_series} monthly series (bench/scale_dag.py)",
               "source": str(data), "time_column": "date", "id_column": "series_id",
               "target": "value", "frequency": "MS", "horizon": HORIZON, "metric": "mase",
               # Three origins 4 months apart: the panel's shortest series (4 years) keep
               # the minimum training length (two seasons and 2) at the first.
               "backtest": {"windows": 3, "step": 4}, "schedule": None}
    folder = home / "problems"
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(problem, sort_keys=False))
    return name, comp


def wait_run(db: Path, dag_id: str, timeout: float) -> tuple:
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(5)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("select run_id, state, start_date, end_date from dag_run where "
                               "dag_id = ? order by id desc limit 1", (dag_id,)).fetchone()
        if row and row[1] in ("success", "failed"):
            return row
    raise RuntimeError(f"{dag_id} did not finish in {timeout}s")


def run_facts(db: Path, logs: Path, dag_id: str, run: tuple) -> dict:
    """Per task: seconds and peak memory; the run's XComs."""
    run_id, state, start, end = run
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tasks = conn.execute(
            "select task_id, map_index, start_date, end_date, state from task_instance "
            "where dag_id = ? and run_id = ? and start_date is not null order by start_date",
            (dag_id, run_id)).fetchall()
        xcoms = conn.execute("select count(*), coalesce(sum(length(value)), 0) from xcom "
                             "where dag_id = ? and run_id = ?", (dag_id, run_id)).fetchone()
    rows = []
    for task_id, index, began, ended, task_state in tasks:
        seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(began)
                   ).total_seconds() if ended else float("nan")
        rows.append({"task": task_id if index < 0 else f"{task_id}[{index}]",
                     "seconds": seconds, "state": task_state,
                     "peak_mb": peak_memory(logs, dag_id, run_id, task_id, index)})
    return {"state": state, "seconds": (datetime.fromisoformat(end)
                                        - datetime.fromisoformat(start)).total_seconds(),
            "tasks": rows, "xcoms": xcoms[0], "xcom_bytes": xcoms[1]}


def peak_memory(logs: Path, dag_id: str, run_id: str, task_id: str, index: int) -> float:
    folder = logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if index >= 0:
        folder = folder / f"map_index={index}"
    found = [float(m.group(1)) for path in folder.glob("attempt=*.log")
             for m in PEAK.finditer(path.read_text(errors="replace"))]
    return max(found) if found else float("nan")


def mlflow_facts(state: Path, name: str) -> dict:
    with sqlite3.connect(f"file:{state / 'mlflow.db'}?mode=ro", uri=True) as conn:
        runs = conn.execute("select count(*) from runs").fetchone()[0]
        metrics = conn.execute("select count(*) from metrics").fetchone()[0]
        params = conn.execute("select count(*) from params").fetchone()[0]
        versions = conn.execute("select count(*) from model_versions where name = ?",
                                (name,)).fetchone()[0]
    pickles = sorted((state / "mlartifacts").rglob("model.pkl"), key=lambda p: p.stat().st_size)
    cards = sorted((state / "mlartifacts").rglob("serving_card.json"),
                   key=lambda p: p.stat().st_size)
    return {"runs": runs, "metrics": metrics, "params": params, "versions": versions,
            "model_mb": pickles[-1].stat().st_size / 1e6 if pickles else float("nan"),
            "card_mb": cards[-1].stat().st_size / 1e6 if cards else float("nan")}


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def serve_facts(env: dict, name: str, series: list[str], port: int) -> dict:
    """Seconds to the first answered forecast, then one-series latencies."""
    log = Path(env["FORECASTFLOW_HOME"]) / "serve.log"
    url = f"http://127.0.0.1:{port}/problems/{name}/forecast"
    start = time.perf_counter()
    with log.open("w") as out:
        server = subprocess.Popen([str(BIN / "forecastflow"), "serve", name, "--port",
                                   str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        first = None
        while time.perf_counter() - start < 600:
            try:
                post(url, {"horizon": HORIZON, "series_ids": [series[0]]})
                first = time.perf_counter() - start
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"forecastflow serve exited; see {log}") from None
                time.sleep(0.2)
        rng = np.random.default_rng(1)
        latencies = []
        for sid in rng.choice(series, 300):
            began = time.perf_counter()
            post(url, {"horizon": HORIZON, "series_ids": [str(sid)]})
            latencies.append(1000 * (time.perf_counter() - began))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"first_answer_s": first, "p50_ms": statistics.median(latencies),
            "p99_ms": float(np.percentile(latencies, 99))}


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def measure(n_series: int, jobs: int, port: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"ff-scale-{n_series}-"))
    env = environment(home, port, jobs)
    name, comp = write_problem(n_series, home)
    state = Path(env["FORECASTFLOW_HOME"])
    # A deployment's MLflow store exists before its runs (a one-off migration, not timed).
    subprocess.run([sys.executable, "-c", "from forecastflow.lifecycle import tracking; "
                    "tracking.client().search_experiments()"], env=env, check=True,
                   capture_output=True)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True,
                   capture_output=True)
    db, logs = Path(env["AIRFLOW_HOME"]) / "airflow.db", Path(env["AIRFLOW_HOME"]) / "logs"
    train, forecast = f"train_{name}", f"forecast_{name}"
    with standalone(env, port, [train, forecast], Path(env["AIRFLOW_HOME"]) / "sa.log"):
        for args in (["dags", "unpause", train], ["dags", "unpause", forecast],
                     ["dags", "trigger", train]):
            subprocess.run([str(BIN / "airflow"), *args], env=env, check=True,
                           capture_output=True)
        trained = run_facts(db, logs, train, wait_run(db, train, 7200))
        if trained["state"] != "success":
            raise RuntimeError(f"{train} failed; see {home}")
        forecasted = run_facts(db, logs, forecast, wait_run(db, forecast, 3600))
    stored = sorted((state / "forecasts").rglob("forecasts.parquet"))
    rows = pd.read_parquet(stored[-1])
    fc = rows.rename(columns={"forecast": "mean"})[["series_id", "date", "mean", "lower",
                                                    "upper"]]
    fc["date"] = pd.to_datetime(fc["date"]).astype("datetime64[ns]")
    return {"series": n_series, "home": str(home), "train": trained, "forecast": forecasted,
            "mlflow": mlflow_facts(state, name), "store_mb": folder_mb(state / "forecasts"),
            "serve": serve_facts(env, name, sorted(comp.train["series_id"].unique()),
                                 port + 1),
            "smape": scores(comp, fc)["smape"]}


def celery_speedup(n_series: int, counts: tuple[int, ...] = (1, 2)) -> None:
    """``train_<p>`` on the native Celery cluster (deploy/local_cluster.py: PostgreSQL,
    Redis, MLflow server on S3) with one worker, then two, one slot each (``counts``)."""
    from pipeline import celery_dag_seconds

    home = Path(tempfile.mkdtemp(prefix=f"ff-scale-celery-{n_series}-"))
    name, _ = write_problem(n_series, home)
    seconds = {}
    for workers in counts:
        run = celery_dag_seconds(name, home / "problems", home / f"cluster{workers}",
                                 timeout=7200, workers=workers)
        if run["state"] != "success":
            raise RuntimeError(f"train_{name} on {workers} worker(s): {run['state']}")
        seconds[workers] = run["seconds"]
        hosts = sorted({task[4] for task in run["timeline"]})
        print(f"{n_series} series, CeleryExecutor, {workers} worker(s): train_{name} "
              f"{run['seconds']:.1f} s (cluster up in {run['startup']:.1f} s; tasks ran on "
              f"{hosts})", flush=True)
        for task_id, _, began, ended, host in run["timeline"]:
            print(f"  {task_id:<22} {ended - began:8.1f} s  {host}")
    if {1, 2} <= set(seconds):
        print(f"{n_series} series: speed-up of two workers over one "
              f"{seconds[1] / seconds[2]:.2f}x", flush=True)


def report(r: dict, peer_s: float, peer_smape: float) -> None:
    n = r["series"]
    print(f"\n## {n} series (state in {r['home']})")
    for dag in ("train", "forecast"):
        facts = r[dag]
        print(f"{dag}: {facts['state']} in {facts['seconds']:.1f} s; {facts['xcoms']} XComs, "
              f"{facts['xcom_bytes'] / 1e3:.1f} kB")
        for task in facts["tasks"]:
            print(f"  {task['task']:<22} {task['seconds']:8.1f} s  {task['peak_mb']:6.0f} MB")
    m, s = r["mlflow"], r["serve"]
    print(f"MLflow: {m['runs']} runs, {m['metrics']} metric values, {m['params']} params, "
          f"{m['versions']} registered version(s); model {m['model_mb']:.2f} MB, serving card "
          f"{m['card_mb']:.2f} MB; forecast store {r['store_mb']:.2f} MB")
    print(f"serve: first answer after {s['first_answer_s']:.1f} s; one series p50 "
          f"{s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms (target <= 20 ms)")
    print(f"sMAPE held-out year: ForecastFlow champion {r['smape']:.2f}; AutoETS "
          f"{peer_smape:.2f}")
    print(f"train_ run {r['train']['seconds']:.1f} s vs AutoETS fit+forecast {peer_s:.1f} s: "
          f"ratio {r['train']['seconds'] / peer_s:.2f} (target <= 1.0 at 10,000 series); "
          f"per 1,000 series {1000 * r['train']['seconds'] / n:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--port", type=int, default=18280)
    parser.add_argument("--celery", action="store_true",
                        help="instead: train_<p> on the native Celery cluster with one "
                             "worker, then two (one slot each), and the speed-up")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2],
                        help="with --celery: the worker counts to run (default 1 then 2)")
    parser.add_argument("--peer-max", type=int, default=10000,
                        help="run the AutoETS peer up to this many series (it takes about "
                             "35 s per 1,000 on 2 cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    from panels import run_peers

    if args.celery:
        for n in args.sizes:
            celery_speedup(n, tuple(args.workers))
        return 0
    for n in args.sizes:
        result = measure(n, args.jobs, args.port)
        if n > args.peer_max:
            report(result, float("nan"), float("nan"))
            continue
        comp = panel(n)
        fc, peer_s = run_peers(comp, args.jobs, ("AutoETS",))["AutoETS"]
        report(result, peer_s, scores(comp, fc)["smape"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
