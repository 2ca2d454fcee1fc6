"""Online forecasts: a FastAPI app serving every problem's champion.

``forecastflow serve`` starts it with uvicorn. Start-up loads each champion
(``models:/<problem>@champion``) from the registry; a background thread polls the registry
every ``poll_seconds`` and swaps in a model whose alias moved. The swap replaces one entry of
an immutable snapshot, so a request sees either the old or the new model, never a mix. A new
version that fails to load leaves the old one serving and is reported by ``GET /health``.

Start-up needs neither MLflow nor the model itself. Versions are copied to
``<state>/serving/<problem>/<version>/`` with a pointer to the last champion served
(``champion.json``): a restart serves from there; a first start looks the champion up with
:mod:`forecastflow.serving.lookup` (no MLflow client) and copies it. Each version carries a
serving card (logged with the model; written here as ``v<version>.json`` for models registered
without one): metadata, origin and, for problems without exogenous inputs, the forecast table
for the maximum horizon. A forecast for ``h`` steps is the first ``h`` steps of that table
(tested for every family), so exog-free requests are answered while the model is unpickled in
the background; the poller verifies the version through the MLflow client seconds later.
Exog-free requests are always answered from that table; requests with exog are forecast in
model worker processes (:mod:`forecastflow.serving.workers`).

Endpoints: ``GET /health``, ``GET /problems``, ``GET /problems/{name}/series``,
``POST /problems/{name}/forecast``; OpenAPI at ``/openapi.json`` (request examples built from
the loaded champions' metadata, one per problem), Swagger UI at ``/docs`` and ReDoc at
``/redoc``, both served from the installation (files of the ``fastapi-offline`` package, no CDN).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response

from forecastflow import storage
from forecastflow.serving import auth, limits
from forecastflow.serving.hub import Hub
from forecastflow.serving.schemas import (
    MAX_BODY_BYTES,
    ErrorMessage,
    ForecastRequest,
    ForecastResponse,
    RequestError,
    forecast_example,
    shown,
)
from forecastflow.serving.workers import ModelWorkers, default_count

log = logging.getLogger("forecastflow.serve")

STARTUP_GRACE = 3.0  # seconds
# Request threads: parsing, cache, table cuts; a thread waiting on a model worker releases
# the GIL, so more threads than workers keep exog-free requests from queueing behind them.
COMPUTE_THREADS = 32


def _examples(hub: Hub) -> dict[str, dict[str, Any]]:
    """One named request example per problem with a champion loaded."""
    out = {}
    for name in hub.problems:
        slot = hub.slots.get(name)
        if slot is None:
            continue
        meta = slot.meta
        what = "panel" if meta.get("panel") else "series"
        exog = f", exog {meta['exog']} held at last values" if meta.get("exog") else ""
        out[name] = {"summary": f"{name} (v{slot.version}, {slot.family}, {what}{exog})",
                     "value": forecast_example(meta)}
    return out


PROBLEM_PATH = re.compile(r"/problems/(.*)/(?:forecast|series)", re.DOTALL)
ERRORS = {
    400: "Body not received whole (the client closed the connection), or a Content-Length "
         "that is not a byte count",
    404: "Unknown problem (named in the message), or no champion loaded for it",
    408: "Request not received within the server's time limit",
    413: f"Body over {MAX_BODY_BYTES} bytes (declared or sent); not read past it",
    415: "Body not declared as JSON (send Content-Type: application/json)",
    422: "Invalid request (malformed JSON, too deeply nested, or against the model's "
         "contract); the message names the field and value",
    503: "The champion's model is not loaded yet; retry shortly",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for the error ``codes`` a route answers, each an ``ErrorMessage``."""
    return {code: {"model": ErrorMessage, "description": ERRORS[code]} for code in codes}


def _docs_assets() -> Path:
    """Swagger UI and ReDoc files shipped in a Python package (no CDN: works offline)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` served from the installation."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-assets", StaticFiles(directory=_docs_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="ForecastFlow API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="ForecastFlow API",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png",
                              with_google_fonts=False)


def _add_openapi(app: FastAPI, hub: Hub, secured: bool = False) -> None:
    """``/openapi.json`` with the served problems and one working request example each;
    rebuilt when a champion changes."""
    from fastapi.openapi.utils import get_openapi

    built: dict[tuple, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        key = tuple((p, s.version) for p, s in sorted(hub.slots.items()))
        if key not in built:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            examples = _examples(hub)
            for path, item in schema["paths"].items():
                for operation in item.values():
                    for param in operation.get("parameters", []):
                        if param["name"] == "name":
                            param["schema"]["enum"] = list(hub.problems)
                    body = operation.get("requestBody", {}).get("content", {}).get(
                        "application/json")
                    if body is not None and path.endswith("/forecast") and examples:
                        body["examples"] = examples
            _drop_validation_errors(schema)
            if secured:
                auth.document(schema)
            built.clear()
            built[key] = schema
        app.openapi_schema = built[key]
        return built[key]

    app.openapi = openapi  # type: ignore[method-assign]


def _forecast(hub: Hub, problem: str, body: bytes) -> dict[str, Any]:
    """``hub.forecast``; 422 when the model cannot forecast from the request's inputs."""
    from forecastflow.models.base import FitError  # loaded with the models anyway

    try:
        return hub.forecast(problem, body)
    except FitError as err:  # e.g. exog values so large that the forecast is not finite
        raise RequestError(422, f"problem {problem!r}: the champion cannot forecast from "
                           f"these inputs ({err}); check the exog values") from None


def _finite_json(problem: str, result: dict[str, Any]) -> str:
    """``result`` as JSON; 422 when a forecast or bound is not finite (JSON has no NaN)."""
    try:
        return json.dumps(result, allow_nan=False)
    except ValueError:
        raise RequestError(422, f"problem {problem!r}: the forecast from these inputs is not "
                           "finite (NaN or infinite bounds); check the exog values") from None


def _drop_validation_errors(schema: dict[str, Any]) -> None:
    """Remove the 422 FastAPI documents for its own parameter validation: no route here
    answers it (bodies are checked by the app, whose 422 is an ``ErrorMessage``)."""
    for item in schema["paths"].values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                del responses["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)


def _load_models(hub: Hub) -> None:
    """Read the models of slots answering from their card, then have the model workers read
    the versions only a model can answer (problems without a forecast table)."""
    hub.load_models()
    if hub.workers is not None:
        for slot in list(hub.slots.values()):
            if slot.table is None:
                hub.workers.preload(slot)


def create_app(hub: Hub, api_token: str | None = None, model_workers: int = 0) -> FastAPI:
    """The FastAPI application around ``hub``; with ``api_token`` (default: the environment's
    ``FORECASTFLOW_API_TOKEN``) every path but ``/health`` needs it; with ``model_workers``
    requests that need the model are computed in that many worker processes."""
    token = api_token if api_token is not None else auth.configured_token()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if model_workers:
            hub.workers = ModelWorkers(hub.folder, model_workers)
        # Models of versions answering from their card are read once the server is up
        # (reading them imports pandas and the model's library: about a second).
        threading.Thread(target=_load_models, args=(hub,), name="forecastflow-model-load",
                         daemon=True).start()
        yield
        hub.stop()
        if hub.workers is not None:
            hub.workers.close()

    app = FastAPI(title="ForecastFlow", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Forecasts from each problem's champion model in the MLflow "
                  "registry. Errors are 4xx with a message naming the offending field. "
                  "`GET /problems` lists the problems with their horizon limit, exog "
                  "columns and series count; the request examples below are valid for "
                  "each served problem's champion.")
    if token:
        auth.require_token(app, token)
    _add_docs(app)
    _add_openapi(app, hub, secured=bool(token))
    name_doc = f"A problem's name (its YAML's `name`): one of {', '.join(hub.problems)}."

    compute = ThreadPoolExecutor(max_workers=COMPUTE_THREADS,
                                 thread_name_prefix="forecastflow-compute")

    def error(status: int, message: str) -> JSONResponse:
        # A 413 may leave a body unread: the connection is not reused.
        headers = {"Connection": "close"} if status == 413 else None
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.get("/health", summary="Liveness, loaded versions and load errors")
    def health() -> dict[str, Any]:
        return hub.health()

    @app.get("/problems", summary="Problems with their champion version, family and metrics")
    def problems() -> list[dict[str, Any]]:
        return hub.problems_info()

    def known(name: str) -> None:
        """404 naming ``name`` (quoted, cut) unless it is a served problem (a name is only
        ever looked up among them, never used as a path)."""
        if name not in hub.problems:
            raise RequestError(404, f"unknown problem {shown(name)}; known: {hub.problems}")

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        """Paths no route takes: names with ``/`` or a line break (``..%2F``, ``%0A``) are
        named like other unknown problems; other paths by themselves."""
        path = request.scope.get("path", "")
        match = PROBLEM_PATH.fullmatch(path)
        if match is None:
            return error(404, f"no such path {shown(path)}; the API is described at /docs")
        return error(404, f"unknown problem {shown(match[1])}; known: {hub.problems}")

    @app.get("/problems/{name}/series", summary="Series ids and targets of a problem",
             responses=_errors(404))
    def series(name: str = PathParam(description=name_doc)) -> Response:
        try:
            known(name)
            return JSONResponse(hub.series(name))
        except RequestError as err:
            return error(err.status, str(err))

    @app.post("/problems/{name}/forecast", summary="Forecast with the champion",
              response_model=ForecastResponse,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ForecastRequest.model_json_schema()}}}},
              responses=_errors(400, 404, 408, 413, 415, 422, 503))
    async def forecast(request: Request, name: str = PathParam(description=name_doc),
                       ) -> Response:
        try:
            known(name)
            limits.check_json(request)
            body = await limits.read_body(request)
            # Off the event loop (a 50,000-series table cut takes a while); model forecasts
            # go on to the model workers, or run one at a time (see Hub._model_forecast).
            result = await asyncio.get_running_loop().run_in_executor(
                compute, _forecast, hub, name, body)
            return Response(_finite_json(name, result), media_type="application/json")
        except RequestError as err:
            return error(err.status, str(err))

    return app


def startup_lines(hub: Hub, host: str, port: int) -> list[str]:
    """What ``forecastflow serve`` prints when it starts: where it listens, what it serves."""
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lines = [f"forecastflow serve: listening on {url} (Swagger UI: {url}/docs)"]
    return lines + [f"  {hub.describe(name)}" for name in hub.problems]


def discover_problems() -> list[str]:
    """Names of the declared problems whose YAML reads and names itself like its file."""
    import yaml

    from forecastflow.data.problem import problem_files, read_declaration

    names = []
    for path in problem_files():
        try:
            names.append(str(read_declaration(path)["name"]))
        except (OSError, ValueError, yaml.YAMLError) as err:
            log.error("skipping problem file %s: %s", path, err)
    return names


# The MLflow client settings of the server's registry poller (the environment may override).
REGISTRY_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def serve(host: str = "127.0.0.1", port: int = 8000, poll_seconds: float = 10.0,
          problems: list[str] | None = None, cache_size: int = 1024,
          model_workers: int | None = None) -> None:
    """Load the champions and serve until interrupted; forecasts that need the model run in
    ``model_workers`` processes (default: one per core; 0: in the server process)."""
    import uvicorn

    # A registry outage must show within a poll, not after the MLflow client's default 7
    # retries with exponential backoff (minutes): serving goes on from what it has loaded.
    for key, value in REGISTRY_CLIENT.items():
        os.environ.setdefault(key, value)
    hub = Hub(problems or discover_problems(), storage.state_dir() / "serving", poll_seconds,
              cache_size)
    hub.load_cached()  # restart: last champions kept on disk
    hub.load_fast()  # first start: registry looked up without the MLflow client
    if any(p not in hub.slots and p not in hub.waiting for p in hub.problems):
        hub.refresh()  # what the fast paths could not load: through the MLflow client now
    # After a restart from the cache, the first registry check (which imports MLflow, a
    # few CPU-seconds) waits until the server has come up and answered.
    hub.start_polling(delay=0.0 if hub.verified else min(poll_seconds, STARTUP_GRACE))

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # bound (a busy port exits in super() with uvicorn's error)
                bound = (self.servers[0].sockets[0].getsockname()[1]
                         if getattr(self, "servers", None) else port)  # --port 0: the real one
                for line in startup_lines(hub, host, bound):
                    print(line, file=sys.stderr, flush=True)  # shown whatever the log level

    workers = default_count() if model_workers is None else model_workers
    if workers < 0:
        raise ValueError(f"model workers: expected 0 or more, got {workers}")
    Server(uvicorn.Config(create_app(hub, model_workers=workers), host=host, port=port,
                          log_level="warning", access_log=False,
                          **limits.server_options())).run()  # a deadline per request
