"""Credentials on `forecastflow serve`: off without FORECASTFLOW_API_TOKEN; with it, every
path but /health answers 401 without the token, and takes it as a bearer token or as the
basic-auth password (a browser opening /docs)."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from forecastflow.serving.app import create_app
from forecastflow.serving.hub import Hub

TOKEN = "s3cret-token"


def client(tmp_path, token: str | None) -> TestClient:
    return TestClient(create_app(Hub([], tmp_path, 3600.0, 0), api_token=token))


@pytest.mark.parametrize("path", ["/problems", "/docs", "/redoc", "/openapi.json"])
def test_everything_but_health_needs_the_token(tmp_path, path: str):
    with client(tmp_path, TOKEN) as http:
        assert http.get("/health").status_code == 200
        denied = http.get(path)
        assert denied.status_code == 401
        assert "Bearer" in denied.headers["www-authenticate"]
        assert "Basic" in denied.headers["www-authenticate"]
        assert "FORECASTFLOW_API_TOKEN" in denied.json()["detail"]
        assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        assert http.get(path, headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert http.get(path, headers={"Authorization": "Basic !!notb64"}).status_code == 401
    assert http.post("/problems/x/forecast", json={}).status_code == 401


def test_the_token_is_declared_for_swagger_ui(tmp_path):
    with client(tmp_path, TOKEN) as http:
        spec = http.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "basic"}


def test_off_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("FORECASTFLOW_API_TOKEN", raising=False)
    with client(tmp_path, None) as http:
        assert http.get("/problems").status_code == 200
        assert "securitySchemes" not in http.get("/openapi.json").json().get("components", {})
