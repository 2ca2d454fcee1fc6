"""Native thread limits for model fitting inside a task.

Every worker process that fits models (a mapped search task, fit, evaluate, the batch forecast)
shares the machine's cores with its siblings. BLAS (OpenBLAS, MKL) and OpenMP (scikit-learn's
gradient boosting) start one thread per core by default, so four search tasks on two cores run
sixteen busy threads that mostly wait for each other (a VARMAX trial measured 5.6 s alone,
148 s oversubscribed). The task code limits its own pools, whatever executor runs it:
``cores // tasks running at once``, at least one; ``FORECASTFLOW_THREADS`` overrides. The same
share bounds the processes that fit a panel's series in parallel (``models.parallel``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from forecastflow.cpu import cores, env_count

log = logging.getLogger(__name__)

ENV = "FORECASTFLOW_THREADS"


def threads_per_task(concurrent: int, available: int | None = None) -> int:
    """Native threads for one of ``concurrent`` tasks sharing ``available`` cores."""
    override = env_count(ENV)
    if override is not None:
        return override
    total = cores() if available is None else available
    return max(1, total // max(1, int(concurrent)))


@contextmanager
def limited(concurrent: int, what: str = "task") -> Iterator[int]:
    """Limit BLAS and OpenMP pools for the block to this task's share of the cores.

    Call it after the model libraries are imported: a limit applies to the native libraries
    loaded at that moment (numpy/scipy's BLAS, scikit-learn's OpenMP)."""
    import numpy  # noqa: F401 - loads the BLAS the limit applies to
    import scipy.linalg  # noqa: F401
    import sklearn.utils._openmp_helpers  # noqa: F401 - loads OpenMP (gradient boosting)
    from threadpoolctl import threadpool_limits

    from forecastflow.models.parallel import use_jobs

    n = threads_per_task(concurrent)
    with threadpool_limits(limits=n), use_jobs(n):
        log.info("%s: %d native thread(s) per BLAS/OpenMP pool (%d core(s), %d task(s) at "
                 "once)", what, n, cores(), concurrent)
        yield n
