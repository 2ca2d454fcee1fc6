"""A client for a native cluster (deploy/local_cluster.py) in tests: Airflow's REST API, the
MLflow server's REST API (basic auth), the S3 store and the cluster's processes."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local_cluster.py"
DONE = ("success", "failed")


def http(method: str, url: str, body: Any = None, token: str | None = None,
         basic: tuple[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
    """One JSON call; (status, decoded body or text). Connection errors raise."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{basic[0]}:{basic[1]}".encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text.startswith(("{", "[")) else text
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait(what: str, check: Any, seconds: float = 600.0, every: float = 3.0) -> Any:
    """``check()`` until it returns something truthy (connection errors count as not yet)."""
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError as err:
            found, last = None, err
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {seconds:.0f} s" + (f" ({last})" if last else ""))


class Cluster:
    """The running cluster described by ``info`` (``local-cluster up``'s JSON)."""

    def __init__(self, info: dict[str, Any], env: dict[str, str]) -> None:
        self.info, self.env = info, env
        self.api, self.folder = info["airflow"], Path(info["folder"])
        self.mlflow_auth = ("admin", info["mlflow_password"])
        self._token: str | None = None

    # Airflow -------------------------------------------------------------------------

    @property
    def token(self) -> str:
        if self._token is None:
            status, body = http("POST", f"{self.api}/auth/token", {
                "username": "admin", "password": self.info["airflow_password"]})
            assert status in (200, 201), body
            self._token = body["access_token"]
        return self._token

    def airflow(self, method: str, path: str, body: Any = None) -> Any:
        status, found = http(method, f"{self.api}/api/v2/{path}", body, token=self.token)
        if status == 401:  # the token expired: once more with a new one
            self._token = None
            status, found = http(method, f"{self.api}/api/v2/{path}", body, token=self.token)
        assert status in (200, 201, 204), f"{method} {path}: {status} {found}"
        return found

    def unpause(self, *dag_ids: str) -> None:
        for dag_id in dag_ids:
            wait(f"{dag_id} parsed", lambda d=dag_id: http(
                "GET", f"{self.api}/api/v2/dags/{d}", token=self.token)[0] == 200, 180)
            self.airflow("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str, paused: bool = True) -> None:
        self.airflow("PATCH", f"dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None,
                logical_date: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": logical_date}
        if conf:
            body["conf"] = conf
        return self.airflow("POST", f"dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.airflow("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.airflow("GET", f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str, seconds: float = 900) -> str:
        def done() -> str | None:
            state = self.run(dag_id, run_id)["state"]
            return state if state in DONE else None

        return wait(f"{dag_id} {run_id}", done, seconds)

    def tasks(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.airflow("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/"
                                   "taskInstances?limit=200")["task_instances"]

    def task(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks(dag_id, run_id) if t["task_id"] == task_id]

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...],
                  seconds: float = 600, every: float = 0.3) -> dict[str, Any]:
        """The first instance of ``task_id`` in one of ``states``."""
        def found() -> dict[str, Any] | None:
            for ti in self.task(dag_id, run_id, task_id):
                if ti["state"] in states:
                    return ti
            return None

        return wait(f"{dag_id} {run_id} {task_id} in {states}", found, seconds, every)

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
              ) -> list[dict[str, Any]]:
        index = f"/{map_index}" if map_index >= 0 else ""
        return self.airflow("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/"
                                   f"taskInstances/{task_id}{index}/tries")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        found = self.airflow("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/"
                                    f"taskInstances/{task_id}/xcomEntries/return_value")
        value = found["value"]
        return json.loads(value) if isinstance(value, str) else value

    # MLflow --------------------------------------------------------------------------

    def mlflow(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, f"{self.info['mlflow']}/api/2.0/mlflow/{path}", body,
                    basic=self.mlflow_auth)

    def versions(self, name: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"filter": f"name = '{name}'", "max_results": 200})
        status, found = self.mlflow("GET", f"model-versions/search?{query}")
        assert status == 200, found
        return found.get("model_versions", [])

    def aliases(self, name: str) -> dict[str, str]:
        status, found = self.mlflow("GET", f"registered-models/get?name={name}")
        assert status == 200, found
        return {a["alias"]: a["version"] for a in found["registered_model"].get("aliases", [])}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        status, found = self.mlflow("POST", "registered-models/alias",
                                    {"name": name, "alias": alias, "version": str(version)})
        assert status == 200, found

    # S3 and processes ----------------------------------------------------------------

    def s3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"],
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                            region_name="us-east-1")

    def process(self, action: str, *names: str) -> str:
        """``local-cluster start|stop|kill <names>``."""
        out = subprocess.run([sys.executable, str(SCRIPT), action, *names, "--dir",
                              str(self.folder)], capture_output=True, text=True, timeout=120,
                             check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    def log_tail(self, process: str, lines: int = 40) -> str:
        path = self.folder / "logs" / f"{process}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else f"(no {path})"

    def serve(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, f"{self.info['serve']}{path}", body,
                    token=self.info["serve_token"], timeout=10)
