"""In the compose deployment nothing answers without credentials but health endpoints, checked
statically on docker-compose.yaml (no Docker engine here): every published port belongs to a
service that asks for credentials (Airflow's auth manager, MLflow's basic-auth app, the
forecast API's token, MinIO's root keys); PostgreSQL, Redis and the S3 API are not published
and need passwords anyway; no bucket is anonymous; no secret has a default value, so compose
refuses to start until .env sets it. docs/security.md describes the same."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$")
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")  # ${VAR:?message}: an error when unset or empty
# Every published port: (service, container port) -> what guards it.
PUBLISHED = {
    ("airflow-apiserver", 8080): "Airflow auth manager (users and passwords)",
    ("mlflow", 5000): "MLflow basic-auth app",
    ("forecastflow-serve", 8000): "FORECASTFLOW_API_TOKEN",
    ("minio", 9001): "MinIO console: root user and password, this host only",
}
# What the healthchecks call, without credentials (the only open endpoints).
HEALTH = {"airflow-apiserver": "http://localhost:8080/api/v2/version",
          "mlflow": "http://localhost:5000/health",
          "forecastflow-serve": "http://localhost:8000/health"}


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def services(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)["services"]


def published(svc: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) of each published port ('' = every interface)."""
    found = []
    for spec in svc.get("ports", []):
        parts = str(spec).split(":")
        address = parts[0] if len(parts) == 3 else ""
        found.append((address, int(parts[-1].split("/")[0])))
    return found


def required(value: Any) -> set[str]:
    """Variables in ``value`` that compose refuses to leave unset or empty."""
    return set(REQUIRED.findall(str(value).replace("$$", "")))


def test_every_published_port_is_guarded_by_credentials(services):
    ports = {(name, port) for name, svc in services.items() for _, port in published(svc)}
    assert ports == set(PUBLISHED), f"unreviewed or missing: {ports ^ set(PUBLISHED)}"
    assert published(services["minio"]) == [("127.0.0.1", 9001)]  # console only, local only


def test_airflow_asks_for_a_password_and_nobody_is_admin_by_default(services, text):
    env = services["airflow-apiserver"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].rsplit(".", 1)[-1] in {"SimpleAuthManager",
                                                                     "FabAuthManager"}
    assert not any(k.endswith("SIMPLE_AUTH_MANAGER_ALL_ADMINS") and str(v).lower() != "false"
                   for k, v in env.items())
    assert "ALL_ADMINS" not in text.upper()
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    # The passwords file is written by airflow-init from a required variable.
    assert "AIRFLOW_ADMIN_PASSWORD" in required(env["_AIRFLOW_ADMIN_PASSWORD"])
    init = " ".join(services["airflow-init"]["command"])
    assert "_AIRFLOW_ADMIN_PASSWORD" in init and \
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in init
    # Sessions and task tokens are signed with required secrets.
    for key, var in (("AIRFLOW__API__SECRET_KEY", "AIRFLOW_API_SECRET_KEY"),
                     ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
                     ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_FERNET_KEY")):
        assert required(env[key]) == {var}, key


def test_mlflow_runs_its_basic_auth_app_with_the_admin_password_from_env(services):
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--app-name basic-auth" in command
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/opt/forecastflow/deploy/mlflow-auth.ini"
    assert "./deploy/mlflow-auth.ini:/opt/forecastflow/deploy/mlflow-auth.ini:ro" in mlflow[
        "volumes"]
    assert "MLFLOW_ADMIN_PASSWORD" in str(env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert required(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == {"MLFLOW_FLASK_SECRET_KEY"}
    ini = configparser.ConfigParser()
    ini.read(ROOT / "deploy" / "mlflow-auth.ini")
    auth = ini["mlflow"]
    # Signed-in users may read; nothing is granted to anyone without a login.
    assert auth["default_permission"] in {"READ", "NO_PERMISSIONS"}
    assert auth["authorization_function"].endswith(":authenticate_request_basic_auth")
    assert "admin_password" not in auth  # from MLFLOW_AUTH_ADMIN_PASSWORD only


def test_the_forecast_api_requires_its_token(services):
    env = services["forecastflow-serve"]["environment"]
    assert required(env["FORECASTFLOW_API_TOKEN"]) == {"FORECASTFLOW_API_TOKEN"}


def test_the_s3_store_has_root_keys_from_env_and_no_anonymous_bucket(services):
    minio = services["minio"]
    env = minio["environment"]
    assert "S3_ACCESS_KEY" in str(env["MINIO_ROOT_USER"])
    assert "S3_SECRET_KEY" in str(env["MINIO_ROOT_PASSWORD"])
    assert not any(k.startswith("MINIO_") and "ANONYMOUS" in k.upper() for k in env)
    init = " ".join(services["minio-init"]["command"])
    assert "mc mb" in init
    assert not re.search(r"\bmc\s+(anonymous|policy)\b|public|download", init)
    assert 9000 not in [port for _, port in published(minio)]  # the S3 API: compose network only


def test_postgres_and_redis_are_not_published_and_need_passwords(services):
    for name in ("postgres", "redis"):
        assert "ports" not in services[name], f"{name} must not be published"
    env = services["postgres"]["environment"]
    assert required(env["POSTGRES_PASSWORD"]) == {"POSTGRES_PASSWORD"}
    assert "POSTGRES_HOST_AUTH_METHOD" not in env  # never 'trust'
    assert services["redis"]["command"][1:] == ["--requirepass", "${REDIS_PASSWORD}"]
    airflow = services["airflow-scheduler"]["environment"]
    assert required(airflow["AIRFLOW__CELERY__BROKER_URL"]) == {"REDIS_PASSWORD"}
    assert "AIRFLOW_DB_PASSWORD" in required(airflow["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])


def test_only_health_endpoints_answer_without_credentials(services):
    """The healthchecks call their endpoint with no credentials: these answer anonymously by
    design (Airflow's version and monitor routes, MLflow's /health, the API's /health)."""
    for name, url in HEALTH.items():
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "curl", "--fail", url], name
    assert set(HEALTH) | {"minio"} == {name for name, _ in PUBLISHED}


def test_no_secret_has_a_default_and_each_is_required(text, services):
    plain = text.replace("$$", "")
    defaults = re.findall(r"\$\{(\w+)(?::?-)([^}]*)\}", plain)
    assert [(var, value) for var, value in defaults if SECRET.search(var)] == []
    assert {var for var, _ in defaults} <= {"FORECASTFLOW_IMAGE", "AIRFLOW_UID"}
    secrets = {var for var in re.findall(r"\$\{(\w+)", plain) if SECRET.search(var)}
    assert len(secrets) == 13
    assert secrets <= required(plain), secrets - required(plain)
    # .env.example leaves every secret empty: a copied example does not start.
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text()
                   .splitlines() if line.strip() and not line.startswith("#"))
    assert {var: example[var] for var in secrets} == dict.fromkeys(secrets, "")
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET.search(key) and not key.endswith("_FILE"):
                assert "${" in str(value), f"{name}: {key} has a literal value"
