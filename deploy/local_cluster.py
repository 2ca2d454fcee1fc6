"""The topology of docker-compose.yaml, natively on one machine, without Docker.

    deploy/local-cluster up [--dir .cluster] [--workers 2]   # start (idempotent), print where
    deploy/local-cluster status                               # each process and health check
    deploy/local-cluster env                                  # the environment, for a shell
    deploy/local-cluster demo [problems]                      # train through the REST API
    deploy/local-cluster down [--purge]                       # stop (and drop the databases)
    deploy/local-cluster stop|start|kill mlflow worker-w1     # one process (kill: SIGKILL)

Processes: an S3 server on loopback (moto, standing in for MinIO), ``mlflow server`` with its
basic-auth app (PostgreSQL backend store, artifacts proxied to S3), ``airflow api-server``,
``scheduler``, ``dag-processor``, ``triggerer``, ``--workers`` Celery workers with their own
names (task instances record which one ran them) and ``forecastflow serve`` reading champions
from the MLflow server. It uses the machine's PostgreSQL (127.0.0.1:5432, trust auth: one
database for Airflow, one for MLflow) and Redis (127.0.0.1:6379, one database index). The
environment variables are the compose file's, with local addresses; secrets are generated
once per cluster folder and kept in ``<dir>/cluster.json`` (mode 600).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG = "postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings(folder: Path, workers: int, redis_db: int, concurrency: int = 2,
             problems: str | None = None, overrides: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """Ports, names and secrets of the cluster in ``folder``, created on first use;
    ``overrides`` (``--set KEY=VALUE``) are extra environment for every process."""
    path = folder / "cluster.json"
    if path.exists():
        return json.loads(path.read_text())
    from cryptography.fernet import Fernet

    tag = f"ff_{secrets.token_hex(3)}"
    found = {
        "name": tag, "workers": workers, "redis_db": redis_db, "concurrency": concurrency,
        "problems": problems or str(folder / "problems"), "overrides": overrides or {},
        "ports": {k: free_port() for k in ("api", "mlflow", "s3", "serve", "scheduler_health",
                                            "triggerer_logs", *[f"w{i}" for i in
                                                                range(1, workers + 1)])},
        "secrets": {"fernet": Fernet.generate_key().decode(),
                    **{k: secrets.token_urlsafe(24) for k in (
                        "api_secret", "jwt_secret", "airflow_admin", "mlflow_admin",
                        "mlflow_flask", "s3_access", "s3_secret", "api_token")}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found, indent=2))
    path.chmod(0o600)
    return found


def environment(folder: Path, cfg: dict[str, Any]) -> dict[str, str]:
    """The compose file's environment for every Airflow component, with local addresses."""
    ports, sec, name = cfg["ports"], cfg["secrets"], cfg["name"]
    airflow_db = f"postgresql+psycopg2://{PG}/{name}_airflow"
    return {
        "AWS_ACCESS_KEY_ID": sec["s3_access"], "AWS_SECRET_ACCESS_KEY": sec["s3_secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3']}",
        "AIRFLOW_HOME": str(folder / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple."
                                       "simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(folder / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + airflow_db.replace("+psycopg2", ""),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{cfg['redis_db']}",
        "AIRFLOW__CORE__FERNET_KEY": sec["fernet"],
        "AIRFLOW__API__SECRET_KEY": sec["api_secret"],
        "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{ports['api']}/execution/",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "forecastflow.orchestration.hostname.name",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports["scheduler_health"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports["triggerer_logs"]),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": sec["mlflow_admin"],
        "FORECASTFLOW_FORECAST_STORE": "s3://forecastflow/forecasts",
        "FORECASTFLOW_HOME": str(folder / "state"),
        "FORECASTFLOW_PROBLEMS_DIR": cfg["problems"],
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **cfg.get("overrides", {}),
    }


def processes(folder: Path, cfg: dict[str, Any], env: dict[str, str]) -> dict[str, dict]:
    """Each process: its command and extra environment."""
    ports, sec, name = cfg["ports"], cfg["secrets"], cfg["name"]
    airflow = str(BIN / "airflow")
    found: dict[str, dict] = {
        "s3": {"cmd": [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["s3"])]},
        "mlflow": {"cmd": [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
                           "--host", "127.0.0.1", "--port", str(ports["mlflow"]),
                           "--workers", "2", "--backend-store-uri",
                           f"postgresql+psycopg2://{PG}/{name}_mlflow",
                           "--artifacts-destination", "s3://mlflow/"],
                   "env": {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "mlflow-auth.ini"),
                           "MLFLOW_AUTH_ADMIN_PASSWORD": sec["mlflow_admin"],
                           "MLFLOW_FLASK_SERVER_SECRET_KEY": sec["mlflow_flask"]}},
        "api-server": {"cmd": [airflow, "api-server", "--port", str(ports["api"])]},
        "scheduler": {"cmd": [airflow, "scheduler"]},
        "dag-processor": {"cmd": [airflow, "dag-processor"]},
        "triggerer": {"cmd": [airflow, "triggerer"]},
    }
    for i in range(1, cfg["workers"] + 1):
        found[f"worker-w{i}"] = {
            "cmd": [airflow, "celery", "worker", "--celery-hostname", f"w{i}@%h",
                    "--queues", "default", "--concurrency", str(cfg["concurrency"])],
            "env": {"FORECASTFLOW_WORKER_NAME": f"w{i}",
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports[f"w{i}"])}}
    found["serve"] = {"cmd": [str(BIN / "forecastflow"), "serve", "--port", str(ports["serve"]),
                              "--poll-seconds", "5"],
                      "env": {"FORECASTFLOW_API_TOKEN": sec["api_token"],
                              "FORECASTFLOW_HOME": str(folder / "serving")}}
    return found


def clean_environ() -> dict[str, str]:
    """This shell's environment without Airflow, MLflow, AWS and ForecastFlow settings: the
    cluster's processes get exactly the cluster's."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "MLFLOW", "_MLFLOW", "AWS_", "FORECASTFLOW"))}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(folder: Path, name: str, spec: dict, env: dict[str, str]) -> int:
    """Start ``name`` unless it runs; its own session (stopped as a group) and log file."""
    pid_file = folder / "pids" / f"{name}.pid"
    if pid_file.exists() and alive(int(pid_file.read_text())):
        return int(pid_file.read_text())
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    with (folder / "logs" / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(spec["cmd"], env={**clean_environ(), **env, **spec.get("env", {})},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=folder)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def wait_http(url: str, seconds: float, auth: tuple[str, str] | None = None) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url)
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as err:
            if err.code < 500:
                return
            last = str(err)
        except OSError as err:
            last = str(err)
        time.sleep(1)
    raise TimeoutError(f"{url} not up after {seconds:.0f} s: {last}")


def prepare(folder: Path, cfg: dict[str, Any]) -> None:
    """Databases, the Airflow password file, the MLflow auth settings."""
    from sqlalchemy import create_engine, text

    admin = create_engine(f"postgresql+psycopg2://{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for db in (f"{cfg['name']}_airflow", f"{cfg['name']}_mlflow"):
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                {"n": db}).first():
                conn.execute(text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({"admin": cfg["secrets"]["airflow_admin"]}))
    passwords.chmod(0o600)
    (folder / "mlflow-auth.ini").write_text(
        (ROOT / "deploy" / "mlflow-auth.ini").read_text().replace(
            "sqlite:////opt/forecastflow/mlflow-auth/basic_auth.db",
            f"sqlite:///{folder / 'mlflow-auth.db'}"))


def make_buckets(env: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                      region_name="us-east-1")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in ("mlflow", "forecastflow"):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)


def up(folder: Path, workers: int, redis_db: int, concurrency: int = 2,
       problems: str | None = None, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.monotonic()
    cfg = settings(folder, workers, redis_db, concurrency, problems, overrides)
    Path(cfg["problems"]).mkdir(parents=True, exist_ok=True)
    env = environment(folder, cfg)
    specs = processes(folder, cfg, env)
    prepare(folder, cfg)
    start(folder, "s3", specs["s3"], env)
    wait_http(env["AWS_ENDPOINT_URL"], 30)
    make_buckets(env)
    start(folder, "mlflow", specs["mlflow"], env)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env={**clean_environ(), **env},
                   check=True, capture_output=True, timeout=600)
    for name in [n for n in specs if n not in ("s3", "mlflow", "serve")]:
        start(folder, name, specs[name], env)
    wait_http(f"{env['MLFLOW_TRACKING_URI']}/health", 180)
    start(folder, "serve", specs["serve"], env)
    wait_http(f"http://127.0.0.1:{cfg['ports']['api']}/api/v2/version", 180)
    wait_http(f"http://127.0.0.1:{cfg['ports']['serve']}/health", 120)
    wait_workers(env, workers, 180)
    return {**describe(folder, cfg), "startup_seconds": round(time.monotonic() - started, 1)}


def wait_workers(env: dict[str, str], workers: int, seconds: float) -> None:
    """Until every Celery worker answers a ping through the broker."""
    code = ("from airflow.providers.celery.executors.celery_executor import app\n"
            "print(len(app.control.ping(timeout=2.0) or []))")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", code], env={**clean_environ(), **env},
                             capture_output=True, text=True, timeout=60, check=False)
        lines = out.stdout.strip().splitlines()
        if lines and lines[-1].isdigit() and int(lines[-1]) >= workers:
            return
        time.sleep(2)
    raise TimeoutError(f"fewer than {workers} Celery workers answer after {seconds:.0f} s")


def describe(folder: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    ports, sec = cfg["ports"], cfg["secrets"]
    return {
        "folder": str(folder),
        "airflow": f"http://127.0.0.1:{ports['api']}", "airflow_user": "admin",
        "airflow_password": sec["airflow_admin"],
        "mlflow": f"http://127.0.0.1:{ports['mlflow']}", "mlflow_user": "admin",
        "mlflow_password": sec["mlflow_admin"],
        "serve": f"http://127.0.0.1:{ports['serve']}", "serve_token": sec["api_token"],
        "s3": f"http://127.0.0.1:{ports['s3']}", "workers": cfg["workers"],
        "env": str(folder / "cluster.env"),
    }


def process(folder: Path, action: str, name: str) -> int | None:
    """``start`` (idempotent), ``stop`` (SIGTERM, then SIGKILL after 30 s) or ``kill``
    (SIGKILL at once, as a machine dying) one process of a running cluster, by its group."""
    cfg = json.loads((folder / "cluster.json").read_text())
    env = environment(folder, cfg)
    specs = processes(folder, cfg, env)
    if name not in specs:
        raise SystemExit(f"unknown process {name!r}; known: {sorted(specs)}")
    if action == "start":
        return start(folder, name, specs[name], env)
    pid_file = folder / "pids" / f"{name}.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    if pid is None or not alive(pid):
        return None
    os.killpg(pid, signal.SIGKILL if action == "kill" else signal.SIGTERM)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return pid


def status(folder: Path) -> dict[str, bool]:
    return {pid.stem: alive(int(pid.read_text()))
            for pid in sorted((folder / "pids").glob("*.pid"))}


def down(folder: Path, purge: bool) -> None:
    """SIGTERM every process group, SIGKILL what is left after 30 s; ``purge`` also drops the
    databases and the folder."""
    pids = {p: int(p.read_text()) for p in (folder / "pids").glob("*.pid")}
    for pid in pids.values():
        if alive(pid):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in pids.values()):
        time.sleep(0.5)
    for path, pid in pids.items():
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        path.unlink()
    if purge and (folder / "cluster.json").exists():
        from sqlalchemy import create_engine, text

        cfg = json.loads((folder / "cluster.json").read_text())
        admin = create_engine(f"postgresql+psycopg2://{PG}/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for db in (f"{cfg['name']}_airflow", f"{cfg['name']}_mlflow"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def write_env(folder: Path) -> Path:
    cfg = json.loads((folder / "cluster.json").read_text())
    env = environment(folder, cfg)
    path = folder / "cluster.env"
    path.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items() if k != "PATH"))
    path.chmod(0o600)
    return path


def rest(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    """One JSON call to Airflow's REST API; raises with the answer on an error status."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read().decode() or "null")
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{method} {url}: {err.code} {err.read().decode()[:500]}") from None


def demo(folder: Path, problems: list[str], seconds: float = 1800) -> int:
    """Train ``problems`` on the running cluster through the REST API (as a user would from
    the UI) and print where each task ran."""
    cfg = json.loads((folder / "cluster.json").read_text())
    api = f"http://127.0.0.1:{cfg['ports']['api']}"
    token = rest("POST", f"{api}/auth/token", {"username": "admin",
                                                "password": cfg["secrets"]["airflow_admin"]}
                 )["access_token"]
    runs = {}
    for name in problems:
        dag_id = f"train_{name}"
        deadline = time.monotonic() + 180
        while True:  # the dag-processor may not have parsed it yet
            try:
                rest("PATCH", f"{api}/api/v2/dags/{dag_id}", {"is_paused": False}, token)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)
        runs[dag_id] = rest("POST", f"{api}/api/v2/dags/{dag_id}/dagRuns",
                            {"logical_date": None}, token)["dag_run_id"]
        print(f"triggered {dag_id}: {runs[dag_id]}", flush=True)
    failed = 0
    for dag_id, run_id in runs.items():
        url = f"{api}/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        deadline = time.monotonic() + seconds
        while (state := rest("GET", url, token=token)["state"]) not in ("success", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {state}")
            time.sleep(5)
        tasks = rest("GET", f"{url}/taskInstances?limit=200", token=token)["task_instances"]
        print(f"\n{dag_id}: {state}")
        for task in sorted(tasks, key=lambda t: (t["start_date"] or "", t["map_index"])):
            index = "" if task["map_index"] < 0 else f"[{task['map_index']}]"
            print(f"  {task['task_id'] + index:24s} {task['state'] or '-':10s} "
                  f"{task['hostname'] or '-'}")
        failed += state != "success"
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "status", "env", "demo", "down", "start",
                                            "stop", "kill"])
    parser.add_argument("names", nargs="*", metavar="name",
                        help="demo: problems to train (default us_macro); start, stop, kill: "
                        "processes (status lists them)")
    parser.add_argument("--dir", default=str(ROOT / ".cluster"), help="cluster folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker")
    parser.add_argument("--problems", default=None,
                        help="your problems folder (default <dir>/problems)")
    parser.add_argument("--purge", action="store_true", help="down: drop databases and folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="up: extra environment for every process (first up only), e.g. "
                        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=60")
    args = parser.parse_intermixed_args(argv)
    folder = Path(args.dir).resolve()
    if args.command == "up":
        bad = [item for item in args.set if "=" not in item]
        if bad:
            parser.error(f"--set takes KEY=VALUE, got {bad}")
        overrides = dict(item.split("=", 1) for item in args.set)
        info = up(folder, args.workers, args.redis_db, args.concurrency, args.problems,
                  overrides)
        write_env(folder)
        print(json.dumps(info, indent=2))
    elif args.command == "status":
        print(json.dumps(status(folder), indent=2))
    elif args.command == "env":
        print(write_env(folder).read_text(), end="")
    elif args.command in ("start", "stop", "kill"):
        for name in args.names:
            print(f"{args.command} {name}: pid {process(folder, args.command, name)}")
    elif args.command == "demo":
        return demo(folder, args.names or ["us_macro"])
    else:
        down(folder, args.purge)
    return 0


if __name__ == "__main__":
    sys.exit(main())
