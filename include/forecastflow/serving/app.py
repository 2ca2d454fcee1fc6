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

Endpoints: ``GET /health``, ``GET /problems``, ``GET /problems/{name}/series``,
``POST /problems/{name}/forecast``; OpenAPI at ``/openapi.json`` (request examples built from
the loaded champions' metadata, one per problem), Swagger UI at ``/docs`` and ReDoc at
``/redoc``, both served from the installation (files of the ``fastapi-offline`` package, no CDN).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecastflow import storage

log = logging.getLogger("forecastflow.serving.app")

MAX_BODY_BYTES = 1_000_000
DRAIN_BYTES = 16 * MAX_BODY_BYTES  # larger bodies are refused without reading them
MAX_EXOG_ROWS = 20_000
STARTUP_GRACE = 3.0  # seconds


class ForecastRequest(BaseModel):
    """Body of ``POST /problems/{name}/forecast``."""

    # Valid for any exog-free problem; /openapi.json adds one example per served problem,
    # built from its champion's metadata (see ``forecast_example``).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"horizon": 1}]})

    horizon: int = Field(ge=1, description="Steps ahead (at most the problem's max_horizon).")
    exog: list[dict[str, Any]] | None = Field(
        default=None, max_length=MAX_EXOG_ROWS,
        description="Future exogenous values: one row per step (panels: per step and "
        "series, with series_id), carrying every exog column of the problem.")
    series_ids: list[str] | None = Field(
        default=None, max_length=MAX_EXOG_ROWS,
        description="Panels: the series wanted (default all).")


class ForecastPoint(BaseModel):
    series_id: str | None = None
    target: str
    date: str
    step: int
    forecast: float
    lower: float
    upper: float


class ForecastResponse(BaseModel):
    problem: str
    model_version: str
    family: str
    horizon: int
    origin: str
    forecasts: list[ForecastPoint]


class RequestError(ValueError):
    """A request the API refuses with ``status`` and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Slot:
    """One loaded champion (immutable: swapped whole)."""

    problem: str
    version: str
    family: str
    model: Any  # None until the model is read (requests are answered from ``table``)
    meta: dict[str, Any]
    metrics: dict[str, float]
    origin: str
    loaded_at: float
    source: str  # "registry" (verified), "cache" (restart) or "lookup" (fast first start)
    table: list[dict[str, Any]] | None = None  # max-horizon forecast (exog-free problems)


@dataclass
class Hub:
    """The champions being served and the registry poller."""

    problems: list[str]
    cache: Path
    poll_seconds: float = 10.0
    cache_size: int = 1024
    slots: dict[str, Slot] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # problems without a champion yet
    verified: bool = False
    last_poll: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _results: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _load_locks: dict[str, threading.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One lock per problem: a request waits only for its own model being read.
        self._load_locks = {problem: threading.Lock() for problem in self.problems}

    # Loading ---------------------------------------------------------------------------

    def pointer(self, problem: str) -> Path:
        return self.cache / problem / "champion.json"

    def _write_pointer(self, slot: Slot) -> None:
        """Remember ``slot`` as the champion to serve on the next start."""
        storage.write_json({"version": slot.version, "family": slot.family,
                            "metrics": slot.metrics}, self.pointer(slot.problem))

    def card_path(self, problem: str, version: str) -> Path:
        return self.cache / problem / f"v{version}.json"

    def load_cached(self) -> None:
        """Serve the last champions kept on disk (no registry round trip, no MLflow import)."""
        for problem in self.problems:
            path = self.pointer(problem)
            if not path.exists():
                continue
            try:
                info = storage.read_json(path)
                version, family = str(info["version"]), str(info["family"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                self.errors[problem] = f"serving pointer {path} unreadable: {err}"
                continue
            self._install_from_disk(problem, version, family, info.get("metrics", {}),
                                    "cache")

    def load_fast(self) -> None:
        """Champions of problems not loaded yet, looked up without the MLflow client
        (:mod:`forecastflow.serving.lookup`); :meth:`refresh` verifies them later."""
        from forecastflow.lifecycle.tracking import tracking_uri
        from forecastflow.serving import lookup

        uri = tracking_uri()
        for problem in self.problems:
            if problem in self.slots:
                continue
            try:
                ref = lookup.aliased(problem, "champion", uri)
                if ref is None:
                    self.waiting.add(problem)
                    continue
                folder = self.cache / problem / ref.version
                if not folder.exists():
                    lookup.fetch(ref, folder, uri)
            except (lookup.LookupUnavailableError, OSError) as err:
                log.info("%s: no fast lookup (%s); the MLflow client will load it", problem,
                         err)
                continue
            family, metrics = ref.tags.get("family", "?"), _tag_metrics(ref.tags)
            if self._install_from_disk(problem, ref.version, family, metrics, "lookup"):
                self._write_pointer(self.slots[problem])

    def _install_from_disk(self, problem: str, version: str, family: str,
                           metrics: dict[str, float], source: str) -> bool:
        """Serve ``version`` from the serving cache: from its card when there is one (the
        model is read later by :meth:`load_models`), else from the model itself."""
        card = self._read_card(problem, version)
        if card is not None:
            if family == "?":
                family = str(card["meta"].get("family", "?"))
            self._install(Slot(problem, version, family, None, card["meta"], metrics,
                               str(card["origin"]), time.time(), source, card["table"]))
            return True
        try:
            model, meta = storage.read_pyfunc_dir(self.cache / problem / version)
        except storage.ModelFolderError as err:
            self.errors[problem] = f"cached v{version}: {err}"
            log.error("%s: %s", problem, self.errors[problem])
            return False
        self._install(self._slot(problem, version, family, model, meta, metrics, source))
        return True

    def _read_card(self, problem: str, version: str) -> dict[str, Any] | None:
        """The version's serving card: logged with the model (``serving_card.json``) or, for
        models registered without one, written by this server (``v<version>.json``)."""
        path = self.card_path(problem, version)
        try:
            card = (storage.read_json(path) if path.exists()
                    else storage.read_pyfunc_card(self.cache / problem / version))
            if card is None:
                return None
            missing = sorted({"origin", "meta", "table"} - set(card))
            if missing:
                raise KeyError(f"missing {missing}")
            if str(card.get("version", version)) != version:
                raise ValueError(f"card is for version {card['version']}")
        except (storage.ModelFolderError, OSError, ValueError, KeyError, TypeError) as err:
            log.warning("%s: serving card of v%s unreadable (%s); reading the model",
                        problem, version, err)
            return None
        return card

    def _write_card(self, slot: Slot) -> None:
        """Store a serving card for a model registered without one (a start-up shortcut:
        failing to write it is logged, not raised)."""
        from forecastflow.lifecycle.contract import ForecastRequestError, serving_card
        from forecastflow.models.base import ModelError

        try:
            card = {"version": slot.version, **serving_card(slot.model, slot.meta)}
            storage.write_json(card, self.card_path(slot.problem, slot.version), compact=True)
        except (ForecastRequestError, ModelError, OSError) as err:
            log.warning("%s: no serving card for v%s: %s", slot.problem, slot.version, err)

    def load_models(self) -> None:
        """After start-up (background): read the models of slots answering from their card
        and write the cards that are missing."""
        # Problems without a forecast table first: only their models can answer them.
        for problem in sorted(self.slots, key=lambda p: self.slots[p].table is not None):
            from_card = self.slots[problem].model is None  # installed from its card
            slot = self._attach_model(problem)
            if not from_card and slot is not None and slot.model is not None and (
                    self._read_card(problem, slot.version) is None):
                self._write_card(slot)

    def _attach_model(self, problem: str) -> Slot | None:
        """Read the model of ``problem``'s slot from the serving cache (once; callers wait)."""
        with self._load_locks[problem]:
            slot = self.slots.get(problem)
            if slot is None or slot.model is not None:
                return slot
            try:
                model, _ = storage.read_pyfunc_dir(self.cache / problem / slot.version)
            except storage.ModelFolderError as err:
                self.errors[problem] = (f"cached v{slot.version}: {err}; exog-free requests "
                                        "are answered from its stored forecast table")
                log.error("%s: %s", problem, self.errors[problem])
                return slot
            self._install(Slot(**{**slot.__dict__, "model": model}))
            return self.slots[problem]

    def refresh(self) -> None:
        """Check every problem's champion alias; load and swap in versions that moved."""
        from mlflow.exceptions import MlflowException
        from requests import RequestException
        from sqlalchemy.exc import SQLAlchemyError

        from forecastflow.lifecycle import registry

        for problem in self.problems:
            try:
                current = registry.alias_version(problem, registry.CHAMPION)
            except (MlflowException, RequestException, SQLAlchemyError, OSError) as err:
                # The registry is down or unreachable: keep serving what is loaded, report it.
                self.errors[problem] = f"registry unreachable: {type(err).__name__}: {err}"
                log.error("%s: %s", problem, self.errors[problem])
                continue
            if current is None:
                self.waiting.add(problem)  # not an error: nothing promoted yet
                continue
            self.waiting.discard(problem)
            version = str(current.version)
            slot = self.slots.get(problem)
            if slot is not None and slot.version == version and slot.model is None:
                slot = self._attach_model(problem)  # waits for (or does) the cached read
            if slot is not None and slot.version == version and slot.model is not None:
                if slot.source != "registry":  # now verified by the MLflow client
                    self._install(Slot(**{**slot.__dict__, "source": "registry"}))
                self.errors.pop(problem, None)
                continue
            with self._load_locks[problem]:  # an unreadable cached copy is fetched again
                try:
                    model, meta = registry.load_version(problem, version, cache=self.cache)
                except registry.ModelLoadError as err:
                    kept = f"; still serving v{slot.version}" if slot else ""
                    self.errors[problem] = f"champion v{version} failed to load: {err}{kept}"
                    log.error("%s: %s", problem, self.errors[problem])
                    continue
                metrics = _tag_metrics(current.tags)
                family = current.tags.get("family", meta.get("family", "?"))
                new = self._slot(problem, version, family, model, meta, metrics, "registry")
                self._install(new)
            if self._read_card(problem, version) is None:
                self._write_card(new)
            self._write_pointer(new)
            self.errors.pop(problem, None)
            if slot is None or slot.version != version:
                log.info("%s: serving champion v%s (%s)%s", problem, version, family,
                         f", replacing v{slot.version}" if slot else "")
        self.verified = True
        self.last_poll = time.time()

    @staticmethod
    def _slot(problem: str, version: str, family: str, model: Any, meta: dict[str, Any],
              metrics: dict[str, float], source: str) -> Slot:
        from forecastflow.lifecycle.contract import origin_of

        return Slot(problem, str(version), family, model, meta, metrics,
                    str(origin_of(model).date()), time.time(), source)

    def _install(self, slot: Slot) -> None:
        self.slots = {**self.slots, slot.problem: slot}  # one atomic swap of the snapshot

    def start_polling(self, delay: float = 0.0) -> threading.Thread:
        """Poll the registry in a daemon thread, first after ``delay`` seconds."""
        def loop() -> None:
            if self._stop.wait(delay):
                return
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.poll_seconds)

        thread = threading.Thread(target=loop, name="forecastflow-registry-poll", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    # Forecasting -----------------------------------------------------------------------

    def served(self, problem: str) -> Slot:
        """The slot serving ``problem`` (404 naming it when unknown or without a champion)."""
        if problem not in self.problems:
            raise RequestError(404, f"unknown problem {problem!r}; known: {self.problems}")
        slot = self.slots.get(problem)
        if slot is None:
            why = self.errors.get(problem) or ("no champion in the registry yet"
                                               if problem in self.waiting else "loading")
            raise RequestError(404, f"problem {problem!r} has no champion model loaded ({why})")
        return slot

    def series(self, problem: str) -> dict[str, Any]:
        """The series ids (panels; empty for a single series) and targets of the champion."""
        slot = self.served(problem)
        ids = [str(s) for s in slot.meta.get("series") or []]
        return {"problem": problem, "model_version": slot.version,
                "panel": bool(slot.meta.get("panel")), "n_series": len(ids) or 1,
                "series_ids": ids, "targets": list(slot.meta.get("targets") or [])}

    def forecast(self, problem: str, body: bytes) -> dict[str, Any]:
        slot = self.served(problem)
        key = (problem, slot.version, body)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return cached
        request = parse_request(body)
        check_request(slot, request)
        if slot.model is not None:
            result = run_forecast(slot, request)
        elif slot.table is not None and not request.exog:
            result = table_forecast(slot, request)  # the model is still being read
        else:
            slot = self._attach_model(problem)
            if slot is None or slot.model is None:
                raise RequestError(503, f"problem {problem!r}: champion model not loaded ("
                                   f"{self.errors.get(problem, 'loading')}); retry shortly")
            result = run_forecast(slot, request)
        if self.cache_size:
            with self._lock:
                self._results[key] = result
                while len(self._results) > self.cache_size:
                    self._results.popitem(last=False)
        return result

    def health(self) -> dict[str, Any]:
        models = {}
        for problem in self.problems:
            slot = self.slots.get(problem)
            models[problem] = {
                "version": None if slot is None else slot.version,
                "family": None if slot is None else slot.family,
                "source": None if slot is None else slot.source,
                "loaded_at": None if slot is None else _iso(slot.loaded_at),
                "model_in_memory": None if slot is None else slot.model is not None,
                "error": self.errors.get(problem),
                "note": "no champion in the registry yet" if problem in self.waiting else None}
        status = "ok" if self.verified and not self.errors else "degraded"
        if not self.verified:
            status = "starting" if not self.slots else "ok-unverified"
        return {"status": status, "registry_checked_at": _iso(self.last_poll),
                "poll_seconds": self.poll_seconds, "models": models}

    def describe(self, problem: str) -> str:
        """One line on what ``problem`` serves (the start-up log)."""
        slot = self.slots.get(problem)
        if slot is not None:
            return f"{problem}: champion v{slot.version} ({slot.family}) from {slot.source}"
        if problem in self.errors:
            return f"{problem}: not loaded ({self.errors[problem]})"
        if problem in self.waiting:
            return f"{problem}: no champion yet"
        return f"{problem}: loading"


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _tag_metrics(tags: dict[str, str]) -> dict[str, float]:
    """Backtest metrics stored as model version tags."""
    return {k: float(v) for k, v in tags.items()
            if k.startswith(("backtest_", "baseline_")) and _is_number(v)}


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def parse_request(body: bytes) -> ForecastRequest:
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, f"request body is {len(body)} bytes; the limit is "
                           f"{MAX_BODY_BYTES}")
    try:
        return ForecastRequest.model_validate_json(body or b"{}")
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors())
        raise RequestError(422, problems) from None


def check_request(slot: Slot, request: ForecastRequest) -> None:
    """Check a request against the served model's contract (horizon, exog, series)."""
    meta = slot.meta
    limit = int(meta["horizon_limit"])
    if request.horizon > limit:
        raise RequestError(422, f"horizon: {request.horizon} is above the maximum {limit} "
                           f"for problem {slot.problem!r}")
    exog = list(meta.get("exog") or [])
    panel = bool(meta.get("panel"))
    if request.series_ids is not None and not panel:
        raise RequestError(422, f"series_ids: problem {slot.problem!r} has a single series")
    if exog and not request.exog:
        raise RequestError(422, f"exog: problem {slot.problem!r} needs future values of "
                           f"{exog}, one row per step{' and series' if panel else ''}")
    if request.exog and not exog:
        raise RequestError(422, f"exog: problem {slot.problem!r} takes no exogenous inputs")
    allowed = set(exog) | ({"series_id"} if panel else set()) | {"date"}
    for i, row in enumerate(request.exog or []):
        extra = sorted(set(row) - allowed)
        if extra:
            raise RequestError(422, f"exog[{i}]: unexpected column(s) {extra}; "
                               f"expected {exog}")
        missing = [c for c in exog if c not in row]
        if missing:
            raise RequestError(422, f"exog[{i}]: missing column(s) {missing}")
        for col in exog:
            value = row[col]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    not math.isfinite(value)):
                raise RequestError(422, f"exog[{i}].{col}: expected a finite number, got "
                                   f"{value!r}")
    if request.series_ids is not None:
        unknown = sorted(set(request.series_ids) - set(meta["series"]))
        if unknown or not request.series_ids:
            raise RequestError(422, f"series_ids: unknown series {unknown[:5]}" if unknown
                               else "series_ids: empty list")


def _response(slot: Slot, horizon: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"problem": slot.problem, "model_version": slot.version, "family": slot.family,
            "horizon": horizon, "origin": slot.origin, "forecasts": rows}


def table_forecast(slot: Slot, request: ForecastRequest) -> dict[str, Any]:
    """An exog-free forecast cut from the version's max-horizon table (checked request)."""
    wanted = None if request.series_ids is None else set(request.series_ids)
    rows = [row for row in slot.table or [] if row["step"] <= request.horizon and (
        wanted is None or row.get("series_id") in wanted)]
    return _response(slot, request.horizon, rows)


def run_forecast(slot: Slot, request: ForecastRequest) -> dict[str, Any]:
    """Forecast a checked request with the model."""
    import pandas as pd

    from forecastflow.lifecycle.contract import ForecastRequestError, forecast_rows, predict_frame
    from forecastflow.models.base import ModelError

    frame = pd.DataFrame({"horizon": [request.horizon]})
    if request.exog:
        frame = pd.DataFrame(request.exog).drop(columns=["date"], errors="ignore")
        frame["horizon"] = request.horizon
    if request.series_ids is not None:
        if not request.exog:
            frame = pd.DataFrame({"series_id": request.series_ids,
                                  "horizon": request.horizon})
        elif "series_id" in frame.columns:
            frame = frame[frame["series_id"].astype(str).isin(request.series_ids)]
    try:
        out = predict_frame(slot.model, slot.meta, frame)
    except (ForecastRequestError, ModelError) as err:
        raise RequestError(422, str(err)) from None
    return _response(slot, request.horizon, forecast_rows(out))


def forecast_example(meta: dict[str, Any], n_series: int = 2) -> dict[str, Any]:
    """A request body the champion described by ``meta`` accepts: its default horizon (within
    the limit), future exog held at the last observed values, the first series of a panel."""
    horizon = max(1, min(int(meta.get("horizon") or 1), int(meta["horizon_limit"])))
    body: dict[str, Any] = {"horizon": horizon}
    series = [str(s) for s in meta.get("series") or []][:n_series]
    panel = bool(meta.get("panel"))
    if panel and series:
        body["series_ids"] = series
    exog = list(meta.get("exog") or [])
    if exog:
        last = meta.get("exog_last") or {}
        if panel:
            body["exog"] = [{"series_id": sid, **_held(last.get(sid) or {}, exog)}
                            for sid in series for _ in range(horizon)]
        else:
            body["exog"] = [_held(last, exog) for _ in range(horizon)]
    return body


def _held(last: dict[str, Any], columns: list[str]) -> dict[str, float]:
    """The last observed exog values as JSON numbers (0.0 where missing or not finite, so
    the example is still a valid request)."""
    out = {}
    for col in columns:
        try:
            value = float(last.get(col, 0.0))
        except (TypeError, ValueError):
            value = 0.0
        out[col] = value if math.isfinite(value) else 0.0
    return out


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


def _add_openapi(app: FastAPI, hub: Hub) -> None:
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
            built.clear()
            built[key] = schema
        app.openapi_schema = built[key]
        return built[key]

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(hub: Hub) -> FastAPI:
    """The FastAPI application around ``hub``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Models of versions answering from their card are read once the server is up
        # (reading them imports pandas and the model's library: about a second).
        threading.Thread(target=hub.load_models, name="forecastflow-model-load",
                         daemon=True).start()
        yield
        hub.stop()

    app = FastAPI(title="ForecastFlow", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Forecasts from each problem's champion model in the MLflow "
                  "registry. Errors are 4xx with a message naming the offending field. "
                  "`GET /problems` lists the problems with their horizon limit, exog "
                  "columns and series count; the request examples below are valid for "
                  "each served problem's champion.")
    _add_docs(app)
    _add_openapi(app, hub)
    name_doc = f"A problem's name (its YAML's `name`): one of {', '.join(hub.problems)}."

    compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecastflow-compute")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    @app.get("/health", summary="Liveness, loaded versions and load errors")
    def health() -> dict[str, Any]:
        return hub.health()

    @app.get("/problems", summary="Problems with their champion version, family and metrics")
    def problems() -> list[dict[str, Any]]:
        out = []
        for name in hub.problems:
            slot = hub.slots.get(name)
            meta = {} if slot is None else slot.meta
            out.append({"name": name, "champion_version": None if slot is None else
                        slot.version, "family": None if slot is None else slot.family,
                        "metrics": {} if slot is None else slot.metrics,
                        "horizon": meta.get("horizon"), "max_horizon": meta.get(
                            "horizon_limit"), "frequency": meta.get("freq"),
                        "exog": meta.get("exog", []), "targets": meta.get("targets", []),
                        "n_series": len(meta.get("series") or []) or (1 if meta else 0),
                        "origin": None if slot is None else slot.origin})
        return out

    @app.get("/problems/{name}/series", summary="Series ids and targets of a problem")
    def series(name: str = PathParam(description=name_doc)) -> Response:
        try:
            return JSONResponse(hub.series(name))
        except RequestError as err:
            return error(err.status, str(err))

    @app.post("/problems/{name}/forecast", summary="Forecast with the champion",
              response_model=ForecastResponse,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ForecastRequest.model_json_schema()}}}},
              responses={404: {"description": "Unknown problem or no champion"},
                         413: {"description": "Body too large"},
                         422: {"description": "Invalid request; the message names the field"}})
    async def forecast(request: Request, name: str = PathParam(description=name_doc),
                       ) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            if int(length) <= DRAIN_BYTES:
                # Read (and drop) a moderately oversized body before answering: closing a
                # socket with unread data resets it and the client never sees the 413.
                async for _ in request.stream():
                    pass
            return error(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        body = await request.body()
        try:
            # One compute thread: forecasts are CPU-bound and hold the GIL, so more threads
            # only add contention; the event loop stays free for /health and queued I/O.
            result = await asyncio.get_running_loop().run_in_executor(
                compute, hub.forecast, name, body)
        except RequestError as err:
            return error(err.status, str(err))
        return Response(json.dumps(result), media_type="application/json")

    return app


def startup_lines(hub: Hub, host: str, port: int) -> list[str]:
    """What ``forecastflow serve`` prints when it starts: where it listens, what it serves."""
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lines = [f"forecastflow serve: listening on {url} (Swagger UI: {url}/docs)"]
    return lines + [f"  {hub.describe(name)}" for name in hub.problems]


def discover_problems() -> list[str]:
    """Names of the declared problems whose YAML reads and names itself like its file."""
    import yaml

    from forecastflow.data.problem import problem_files

    names = []
    for path in problem_files():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            log.error("skipping problem file %s: %s", path, err)
            continue
        if isinstance(data, dict) and data.get("name") == path.stem:
            names.append(path.stem)
    return names


def serve(host: str = "127.0.0.1", port: int = 8000, poll_seconds: float = 10.0,
          problems: list[str] | None = None, cache_size: int = 1024) -> None:
    """Load the champions and serve until interrupted."""
    import uvicorn

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

    Server(uvicorn.Config(create_app(hub), host=host, port=port, log_level="warning",
                          access_log=False)).run()
