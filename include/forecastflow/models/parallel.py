"""Per-series fits in parallel: a process pool sized to this task's share of the cores.

Statistical models fit one series at a time in Python and hold the GIL, so a panel of
thousands of series only uses several cores with processes. The pool is created once per
process and reused (every backtest window and trial would otherwise pay its start-up). Its
workers are forked, so they start with the libraries already imported and need no importable
``__main__`` (a script or a task runner works as is); each keeps one native thread. The
families fitted this way are statistical ones on numpy/scipy (OpenBLAS is fork-safe); gradient
boosting (OpenMP) fits all series in one model and never comes here.

``FORECASTFLOW_JOBS`` sets the number of processes; by default it is the share of the cores
the task was given (:func:`forecastflow.orchestration.threads.limited` calls :func:`use_jobs`)
or, outside a task, every core. ``1`` fits in the calling process.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from forecastflow.cpu import cores, env_count

log = logging.getLogger(__name__)

ENV = "FORECASTFLOW_JOBS"
_share: list[int] = []  # the innermost use_jobs() value
_pool: dict[str, Any] = {}


def jobs() -> int:
    """Processes for per-series fits: ``FORECASTFLOW_JOBS``, else this task's share."""
    override = env_count(ENV)
    if override is not None:
        return override
    return _share[-1] if _share else cores()


@contextmanager
def use_jobs(n: int) -> Iterator[int]:
    """Per-series fits inside the block use at most ``n`` processes."""
    _share.append(max(1, int(n)))
    try:
        yield _share[-1]
    finally:
        _share.pop()


def _worker_init() -> None:
    # One native thread per worker: the pool itself is the parallelism.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _share.append(1)  # a worker never starts a pool of its own


def _executor(n: int) -> ProcessPoolExecutor:
    pool = _pool.get("executor")
    if pool is not None and _pool.get("size") == n and _pool.get("pid") == os.getpid():
        return pool
    shutdown()
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(n, mp_context=context, initializer=_worker_init)
    _pool.update(executor=pool, size=n, pid=os.getpid())
    return pool


def shutdown() -> None:
    """Stop this process's pool (it is started again when needed)."""
    pool = _pool.pop("executor", None)
    if pool is not None and _pool.get("pid") == os.getpid():
        pool.shutdown(wait=True, cancel_futures=True)
    _pool.clear()


atexit.register(shutdown)


def chunked(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in at most ``parts`` consecutive chunks of near-equal size."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + size + (1 if k < extra else 0)
        out.append(list(items[start:stop]))
        start = stop
    return out


def map_chunks(fn: Callable[[list[Any]], list[Any]], items: Sequence[Any],
               min_items: int = 8, per_job: int = 4) -> list[Any]:
    """``fn`` over chunks of ``items`` in the pool, results concatenated in order; in this
    process when one job is allowed or there are fewer than ``min_items`` items. Each job
    gets ``per_job`` chunks (several balance series of different cost; array code over a
    chunk wants one large chunk per job)."""
    n = jobs()
    if n < 2 or len(items) < max(min_items, 2):
        return fn(list(items))
    chunks = chunked(items, n * per_job)
    try:
        results = list(_executor(n).map(fn, chunks))
    except BrokenProcessPool as err:  # a worker died (killed, out of memory): retry serially
        log.warning("the fitting pool broke (%s); fitting %d item(s) in this process",
                    err, len(items))
        shutdown()
        return fn(list(items))
    return [item for part in results for item in part]
