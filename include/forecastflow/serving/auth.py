"""Credentials for ``forecastflow serve``: off by default (the embedded, loopback-only use),
on when ``FORECASTFLOW_API_TOKEN`` is set (the compose deployment and the native cluster).

Every path but ``/health`` then needs either ``Authorization: Bearer <token>`` (API clients)
or HTTP basic auth with the token as password, any user name (so a browser can open
``/docs``: it asks once and sends the credentials with Swagger UI's requests). Anything else
is 401, with both schemes offered in ``WWW-Authenticate``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

OPEN_PATHS = frozenset({"/health"})
ENV = "FORECASTFLOW_API_TOKEN"


def configured_token() -> str | None:
    return os.environ.get(ENV) or None


def authorized(header: str, token: str) -> bool:
    """``header`` (the Authorization value) carries ``token``, as bearer or basic password."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.strip().encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(password.encode(), token.encode())
    return False


def require_token(app: FastAPI, token: str) -> None:
    """Answer 401 to requests without the token (``/health`` stays open)."""

    @app.middleware("http")
    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]],
                    ) -> Response:
        if request.url.path in OPEN_PATHS or authorized(
                request.headers.get("authorization", ""), token):
            return await call_next(request)
        return JSONResponse(
            {"detail": "credentials required: Authorization: Bearer <token> (or basic auth "
                       f"with the token as password); the token is the server's {ENV}"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="forecastflow", '
                                         'Basic realm="forecastflow"'})


def document(schema: dict[str, Any]) -> None:
    """Declare the two schemes in an OpenAPI schema (Swagger UI's Authorize button)."""
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "basic": {"type": "http", "scheme": "basic"}}
    schema["security"] = [{"bearer": []}, {"basic": []}]
    for path, item in schema["paths"].items():
        for operation in item.values():
            if path in OPEN_PATHS:
                operation["security"] = []  # no credentials needed
            else:
                operation.setdefault("responses", {})["401"] = {
                    "description": "Credentials missing or wrong",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["detail"],
                        "properties": {"detail": {"type": "string"}}}}}}
