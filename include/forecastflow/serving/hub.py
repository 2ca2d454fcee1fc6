"""The champions being served, without HTTP: one immutable ``Slot`` per problem, swapped
whole when the registry's ``champion`` alias moves; the serving folder (pointer file, cards,
model copies) for fast restarts; lazy model reads behind per-problem locks; the response
cache; health. See :mod:`forecastflow.serving.app` for the start-up path."""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forecastflow import storage
from forecastflow.serving.folder import ServingFolder
from forecastflow.serving.schemas import (
    ForecastRequest,
    RequestError,
    check_request,
    parse_request,
)

log = logging.getLogger("forecastflow.serve")


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
    # The table's rows per series id (in table order), so that a request for one series of
    # 50,000 reads its own rows instead of scanning all of them.
    by_series: dict[Any, list[dict[str, Any]]] | None = field(default=None, repr=False,
                                                              compare=False)

    known: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    # The model file's SHA-256 recorded in the registry (None: registered before checksums).
    sha256: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The panel's series ids as a set, built once (a request checks its ids against it).
        object.__setattr__(self, "known", frozenset(str(s) for s in self.meta.get("series")
                                                    or []))
        if self.table is not None and self.by_series is None:
            groups: dict[Any, list[dict[str, Any]]] = {}
            for row in self.table:
                groups.setdefault(row.get("series_id"), []).append(row)
            object.__setattr__(self, "by_series", groups)


@dataclass
class Hub:
    """The champions being served and the registry poller."""

    problems: list[str]
    folder: Path  # the serving folder: pointer files, cards, model copies
    poll_seconds: float = 10.0
    response_cache_size: int = 1024  # identical requests answered from memory (0: off)
    slots: dict[str, Slot] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # problems without a champion yet
    verified: bool = False
    last_poll: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _results: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _load_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _compute_lock: threading.Lock = field(default_factory=threading.Lock)
    # Model workers (:class:`forecastflow.serving.workers.ModelWorkers`) answering requests
    # that need the model; None: the request's thread forecasts, one at a time.
    workers: Any = None
    disk: ServingFolder = field(init=False)

    def __post_init__(self) -> None:
        # One lock per problem: a request waits only for its own model being read.
        self._load_locks = {problem: threading.Lock() for problem in self.problems}
        self.disk = ServingFolder(self.folder)

    def _write_pointer(self, slot: Slot) -> None:
        self.disk.write_pointer(slot.problem, slot.version, slot.family, slot.metrics,
                                slot.sha256)

    def _write_card(self, slot: Slot) -> None:
        self.disk.write_card(slot.problem, slot.version, slot.model, slot.meta)

    # Loading ---------------------------------------------------------------------------

    def load_cached(self) -> None:
        """Serve the last champions kept on disk (no registry round trip, no MLflow import)."""
        for problem in self.problems:
            path = self.disk.pointer(problem)
            if not path.exists():
                continue
            try:
                info = storage.read_json(path)
                version, family = str(info["version"]), str(info["family"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                self.errors[problem] = f"serving pointer {path} unreadable: {err}"
                continue
            self._install_from_disk(problem, version, family, info.get("metrics", {}),
                                    "cache", info.get("sha256"))

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
                folder = self.disk.version_dir(problem, ref.version)
                if not folder.exists():
                    lookup.fetch(ref, folder, uri)
            except (lookup.LookupUnavailableError, OSError) as err:
                log.info("%s: no fast lookup (%s); the MLflow client will load it", problem,
                         err)
                continue
            family, metrics = ref.tags.get("family", "?"), _tag_metrics(ref.tags)
            if self._install_from_disk(problem, ref.version, family, metrics, "lookup",
                                       ref.tags.get(storage.SHA256_TAG)):
                self._write_pointer(self.slots[problem])

    def _install_from_disk(self, problem: str, version: str, family: str,
                           metrics: dict[str, float], source: str,
                           sha256: str | None = None) -> bool:
        """Serve ``version`` from the serving cache: from its card when there is one (the
        model is read later by :meth:`load_models`), else from the model itself."""
        card = self.disk.read_card(problem, version)
        if card is not None:
            if family == "?":
                family = str(card["meta"].get("family", "?"))
            self._install(Slot(problem, version, family, None, card["meta"], metrics,
                               str(card["origin"]), time.time(), source, card["table"],
                               sha256=sha256))
            return True
        try:
            model, meta = storage.read_pyfunc_dir(self.disk.version_dir(problem, version),
                                                  sha256)
        except storage.ModelFolderError as err:
            self.errors[problem] = f"cached v{version}: {err}"
            log.error("%s: %s", problem, self.errors[problem])
            return False
        self._install(self._slot(problem, version, family, model, meta, metrics, source,
                                 sha256=sha256))
        return True

    def load_models(self) -> None:
        """After start-up (background): read the models of slots answering from their card
        and write the cards that are missing."""
        # Problems without a forecast table first: only their models can answer them.
        for problem in sorted(self.slots, key=lambda p: self.slots[p].table is not None):
            from_card = self.slots[problem].model is None  # installed from its card
            slot = self._attach_model(problem)
            if not from_card and slot is not None and slot.model is not None and (
                    self.disk.read_card(problem, slot.version) is None):
                self._write_card(slot)

    def _attach_model(self, problem: str) -> Slot | None:
        """Read the model of ``problem``'s slot from the serving cache (once; callers wait)."""
        with self._load_locks[problem]:
            slot = self.slots.get(problem)
            if slot is None or slot.model is not None:
                return slot
            try:
                model, _ = storage.read_pyfunc_dir(self.disk.version_dir(problem, slot.version),
                                                   slot.sha256)
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
                self.errors.pop(problem, None)  # (the registry answers again)
                continue
            self.waiting.discard(problem)
            version = str(current.version)
            slot = self.slots.get(problem)
            if slot is not None and slot.version == version and slot.model is None:
                slot = self._attach_model(problem)  # waits for (or does) the cached read
            recorded = current.tags.get(storage.SHA256_TAG)
            if (slot is not None and slot.version == version and slot.model is not None
                    and (slot.sha256 == recorded or not recorded)):
                if slot.source != "registry":  # now verified by the MLflow client
                    self._install(Slot(**{**slot.__dict__, "source": "registry"}))
                self.errors.pop(problem, None)
                continue
            with self._load_locks[problem]:  # an unreadable cached copy is fetched again
                try:
                    model, meta = registry.load_version(problem, version, cache=self.folder,
                                                        sha256=recorded)
                except registry.ModelLoadError as err:
                    kept = f"; still serving v{slot.version}" if slot else ""
                    self.errors[problem] = f"champion v{version} failed to load: {err}{kept}"
                    log.error("%s: %s", problem, self.errors[problem])
                    continue
                metrics = _tag_metrics(current.tags)
                family = current.tags.get("family", meta.get("family", "?"))
                card = self.disk.read_card(problem, version)
                if card is None:  # registered without one: written here once
                    card = self.disk.write_card(problem, version, model, meta)
                new = self._slot(problem, version, family, model, meta, metrics, "registry",
                                 None if card is None else card["table"], recorded)
                self._install(new)
            self._write_pointer(new)
            self.errors.pop(problem, None)
            if slot is None or slot.version != version:
                log.info("%s: serving champion v%s (%s)%s", problem, version, family,
                         f", replacing v{slot.version}" if slot else "")
        self.verified = True
        self.last_poll = time.time()

    @staticmethod
    def _slot(problem: str, version: str, family: str, model: Any, meta: dict[str, Any],
              metrics: dict[str, float], source: str,
              table: list[dict[str, Any]] | None = None, sha256: str | None = None) -> Slot:
        from forecastflow.lifecycle.contract import origin_of

        return Slot(problem, str(version), family, model, meta, metrics,
                    str(origin_of(model).date()), time.time(), source, table, sha256=sha256)

    def _install(self, slot: Slot) -> None:
        self.slots = {**self.slots, slot.problem: slot}  # one atomic swap of the snapshot
        if slot.table is not None:
            # A 50,000-series table is 600,000 row dicts: left to the cyclic collector, its
            # full passes would walk them all in the middle of requests (tail latency).
            # They hold no cycles; refcounting frees them when the slot is replaced.
            gc.freeze()

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
        if slot.table is not None and not request.exog:
            result = table_forecast(slot, request)  # exog-free: precomputed, whatever the model
        else:
            result = self._model_forecast(slot, request, body)
        if self.response_cache_size:
            with self._lock:
                self._results[key] = result
                while len(self._results) > self.response_cache_size:
                    self._results.popitem(last=False)
        return result

    def _model_forecast(self, slot: Slot, request: ForecastRequest, body: bytes
                        ) -> dict[str, Any]:
        """A checked request answered by the model: in a model worker process when there are
        workers, else here, one forecast at a time (models are not thread-safe)."""
        if self.workers is not None:
            from forecastflow.serving.workers import WorkerFailedError, WorkerUnavailableError

            try:
                return self.workers.forecast(slot, body)
            except WorkerFailedError as err:  # maybe caused by the request: not run here
                log.error("%s: %s", slot.problem, err)
                raise RequestError(503, f"problem {slot.problem!r}: the model worker failed "
                                   "on this request; retry shortly") from None
            except WorkerUnavailableError as err:
                log.error("%s: %s; forecasting in the server process", slot.problem, err)
        problem = slot.problem
        if slot.model is None:
            attached = self._attach_model(problem)
            if attached is None or attached.model is None:
                raise RequestError(503, f"problem {problem!r}: champion model not loaded ("
                                   f"{self.errors.get(problem, 'loading')}); retry shortly")
            slot = attached
        with self._compute_lock:
            return run_forecast(slot, request)

    def problems_info(self) -> list[dict[str, Any]]:
        """Every problem with its champion's version, family, metrics and contract."""
        out = []
        for name in self.problems:
            slot = self.slots.get(name)
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


def _response(slot: Slot, horizon: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"problem": slot.problem, "model_version": slot.version, "family": slot.family,
            "horizon": horizon, "origin": slot.origin, "forecasts": rows}


def table_forecast(slot: Slot, request: ForecastRequest) -> dict[str, Any]:
    """An exog-free forecast cut from the version's max-horizon table (checked request)."""
    h = request.horizon
    if request.series_ids is None:
        return _response(slot, h, [row for row in slot.table or [] if row["step"] <= h])
    groups = slot.by_series or {}  # the ids are known: check_request refused the others
    rank = {sid: i for i, sid in enumerate(groups)} if len(request.series_ids) > 1 else {}
    wanted = sorted(set(request.series_ids), key=rank.get)  # the table's (the model's) order
    rows = [row for sid in wanted for row in groups[sid] if row["step"] <= h]
    return _response(slot, h, rows)


def run_forecast(slot: Slot, request: ForecastRequest) -> dict[str, Any]:
    """Forecast a checked request with the model."""
    import pandas as pd

    from forecastflow.lifecycle.contract import ForecastRequestError, column_rows, predict_columns
    from forecastflow.models.base import ModelError

    frame = pd.DataFrame({"horizon": [request.horizon]})
    if request.exog:
        frame = pd.DataFrame(request.exog)
        if "date" in frame.columns:
            frame = frame.drop(columns=["date"])
        frame["horizon"] = request.horizon
    if request.series_ids is not None:
        if not request.exog:
            frame = pd.DataFrame({"series_id": request.series_ids,
                                  "horizon": request.horizon})
        elif "series_id" in frame.columns:
            frame = frame[frame["series_id"].astype(str).isin(request.series_ids)]
    try:
        out = predict_columns(slot.model, slot.meta, frame)  # predict_frame's, as arrays
    except (ForecastRequestError, ModelError) as err:
        raise RequestError(422, str(err)) from None
    return _response(slot, request.horizon, column_rows(out))
