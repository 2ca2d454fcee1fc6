"""Model workers: forecasts that need the model (requests with exog) computed in separate
processes, so that they scale with the cores.

Threads do not: a statsmodels results object is not safe to forecast from in two threads at
once (concurrent VARMAX forecasts with exog on one model gave non-finite values), and with a
model copy per thread two threads ran at 0.72x the speed of one (the GIL). Each worker is a
spawned process (the server has threads, so no fork) holding its own copy of the versions it
was asked for, read from the serving folder. A request carries the version of the slot the
hub chose, and the worker answers with that version, so a swap never mixes two models. When a
version is first seen, every worker is asked to read it ahead of its requests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

log = logging.getLogger("forecastflow.serve")

VERSIONS_KEPT = 2  # per problem and worker: the one served and the one it replaces
# A worker reading a model and answering; beyond it the server forecasts in its own process.
WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class Job:
    """What a worker needs to answer for one version (picklable, small)."""

    folder: str  # the serving folder
    problem: str
    version: str
    family: str
    origin: str
    sha256: str | None = None  # the model file's checksum recorded in the registry


class WorkerUnavailableError(RuntimeError):
    """A worker could not answer (its process died, or it cannot read the version)."""


class WorkerFailedError(WorkerUnavailableError):
    """A request's worker died twice or hung on it: the request may be the cause, so it is
    not run in the server process (the caller answers 503)."""


def default_count() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


# In each worker process ------------------------------------------------------------------

_slots: dict[tuple[str, str], Any] = {}  # (problem, version) -> Slot with its model


def _init_worker(server: int) -> None:
    # One BLAS/OpenMP thread per worker: the workers already use every core. (The spawned
    # process has imported numpy by now, so the environment would come too late.)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    threading.Thread(target=_exit_with, args=(server,), name="forecastflow-worker-watch",
                     daemon=True).start()


def _exit_with(server: int) -> None:
    """End this worker when the server process is gone (killed, or exited without shutting
    its workers down): the worker holds its own task queue open, so it would wait forever."""
    while os.getppid() == server:
        time.sleep(1.0)
    os._exit(0)


def _slot(job: Job) -> Any:
    """The worker's slot for ``job``'s version, read from the serving folder once."""
    from forecastflow import storage
    from forecastflow.serving.hub import Slot

    key = (job.problem, job.version)
    slot = _slots.get(key)
    if slot is None:
        model, meta = storage.read_pyfunc_dir(Path(job.folder) / job.problem / job.version,
                                              job.sha256)  # checked before unpickling
        slot = Slot(job.problem, job.version, job.family, model, meta, {}, job.origin, 0.0,
                    "worker")
        _slots[key] = slot
        older = [k for k in _slots if k[0] == job.problem]
        for stale in older[:-VERSIONS_KEPT]:  # insertion order: oldest first
            del _slots[stale]
    return slot


def _preload(job: Job) -> str:
    _slot(job)
    return job.version


def _forecast(job: Job, body: bytes) -> tuple[str, Any]:
    """``("ok", answer)``, ``("refused", (status, message))`` or ``("unavailable", why)``:
    exceptions are not sent back as such (``RequestError`` does not unpickle)."""
    from forecastflow import storage
    from forecastflow.serving.hub import run_forecast
    from forecastflow.serving.schemas import RequestError, parse_request

    try:
        slot = _slot(job)
    except storage.ModelFolderError as err:
        return "unavailable", f"worker {os.getpid()} cannot read v{job.version}: {err}"
    try:
        return "ok", run_forecast(slot, parse_request(body))
    except RequestError as err:
        return "refused", (err.status, str(err))


# In the server -----------------------------------------------------------------------------

class ModelWorkers:
    """``count`` worker processes; a request goes to the one with the fewest in flight."""

    def __init__(self, folder: Path, count: int) -> None:
        if count < 1:
            raise ValueError(f"model workers: count must be >= 1, got {count}")
        self.folder = str(folder)
        self._context = get_context("spawn")
        self._pools = [self._pool() for _ in range(count)]
        self._busy = [0] * count
        self._seen: dict[str, str] = {}  # problem -> the last version sent to the workers
        self._closed = False
        self._lock = threading.RLock()  # a done callback may run in the submitting thread

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=self._context, initializer=_init_worker,
                                   initargs=(os.getpid(),))

    def job(self, slot: Any) -> Job:
        return Job(self.folder, slot.problem, slot.version, slot.family, slot.origin,
                   getattr(slot, "sha256", None))

    def preload(self, slot: Any) -> None:
        """Have every worker read ``slot``'s version now (not waited for)."""
        if self._closed:
            return
        with self._lock:
            self._seen[slot.problem] = slot.version
            for i in range(len(self._pools)):
                self._submit(i, _preload, self.job(slot)).add_done_callback(_log_failure)

    def forecast(self, slot: Any, body: bytes) -> dict[str, Any]:
        """The answer of a checked request for ``slot``'s version (blocks the caller's
        thread; raises ``RequestError`` as the model did, ``WorkerUnavailableError``)."""
        from forecastflow.serving.schemas import RequestError

        if self._closed:
            raise WorkerUnavailableError("model workers closed (the server is stopping)")
        for attempt in (1, 2):  # a worker found dead is replaced and asked once more
            if self._seen.get(slot.problem) != slot.version:
                self.preload(slot)  # a new version: every worker reads it first
            with self._lock:
                i = min(range(len(self._pools)), key=self._busy.__getitem__)
                future = self._submit(i, _forecast, self.job(slot), body)
                pool = self._pools[i]
            try:
                kind, value = future.result(timeout=WAIT_SECONDS)
                break
            except (BrokenProcessPool, CancelledError) as err:
                self._replace(i, pool)
                if attempt == 2:
                    raise WorkerFailedError(f"model worker {i} stopped twice on this "
                                            f"request: {err!r}") from None
            except TimeoutError:
                self._replace(i, pool, kill=True)
                raise WorkerFailedError(f"model worker {i} gave no answer in "
                                        f"{WAIT_SECONDS:.0f} s; replaced") from None
        if kind == "refused":
            raise RequestError(*value)
        if kind == "unavailable":
            raise WorkerUnavailableError(value)
        return value

    def _submit(self, i: int, fn: Any, *args: Any) -> Future:
        """Submit to worker ``i`` (callers hold the lock); its in-flight count follows."""
        try:
            future = self._pools[i].submit(fn, *args)
        except BrokenProcessPool:  # its process died since the last request
            broken, self._pools[i] = self._pools[i], self._pool()
            broken.shutdown(wait=False, cancel_futures=True)
            log.error("model worker %d stopped; replaced", i)
            future = self._pools[i].submit(fn, *args)
        self._busy[i] += 1
        future.add_done_callback(lambda _: self._done(i))
        return future

    def _done(self, i: int) -> None:
        with self._lock:
            self._busy[i] -= 1

    def _replace(self, i: int, broken: ProcessPoolExecutor, kill: bool = False) -> None:
        """A fresh process for worker ``i`` if it still runs the ``broken`` pool (another
        request may have replaced it already); it reads versions anew. ``kill``: the old
        process is hung, end it."""
        with self._lock:
            if self._pools[i] is not broken or self._closed:
                return
            self._pools[i] = self._pool()
            self._seen.clear()  # the next request of each problem preloads again
        if kill:
            for process in list((broken._processes or {}).values()):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)
        log.error("model worker %d stopped; replaced", i)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)


def _log_failure(future: Future) -> None:
    if future.cancelled():
        return
    err = future.exception()
    if err is not None:
        log.warning("model worker could not read a version ahead: %s", err)
