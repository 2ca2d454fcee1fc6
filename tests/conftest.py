"""Shared fixtures: short synthetic series (fast to fit) and problem declarations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecastflow.data.problem import ProblemConfig, parse_problem
from forecastflow.data.series import DATE, SERIES, SeriesData
from forecastflow.models import FAMILIES, Forecaster, build_model
from tests.support.services import (  # noqa: F401 - fixtures for every test folder
    mariadb_url,
    postgres_url,
    s3,
    s3_endpoint,
)

# Small settings per family so that every fit takes a fraction of a second.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "naive": {},
    "seasonal_naive": {},
    "drift": {},
    "sarimax": {"order": [1, 0, 0], "trend": "c", "maxiter": 25},
    "varmax": {"order": [1, 0], "trend": "c", "maxiter": 25},
    "gradient_boosting": {"max_iter": 15, "min_samples_leaf": 5},
    "ets": {"error": "add", "trend": "add", "damped": False, "seasonal": "add"},
    "theta": {},
    "fast_ets": {"max_iter": 60},
    "auto_arima": {"max_p": 1, "max_q": 1, "max_P": 0, "max_Q": 0, "maxiter": 25},
    "ensemble": {"members": [{"family": "theta"}, {"family": "seasonal_naive"},
                             {"family": "drift"}], "horizon": 6},
}
# Families that need several targets (the rest are fitted on the monthly series).
MULTI_TARGET_FAMILIES = {"varmax"}


def seasonal_monthly(n: int = 72, seed: int = 0, level: float = 100.0) -> pd.DataFrame:
    """Monthly series with linear trend, yearly seasonality and noise; strictly positive."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = level + 0.8 * t + 10.0 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1.5, n)
    index = pd.date_range("2015-01-01", periods=n, freq="MS", name=DATE)
    return pd.DataFrame({"y": values}, index=index)


@pytest.fixture
def monthly() -> pd.DataFrame:
    return seasonal_monthly()


@pytest.fixture
def monthly_data(monthly: pd.DataFrame) -> SeriesData:
    return SeriesData(monthly, None, "MS", season=12)


@pytest.fixture
def quarterly() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three related quarterly targets (positive, trending) and one exogenous column ``x``;
    returns ``(y, X)`` over 48 quarters."""
    rng = np.random.default_rng(1)
    n = 48
    index = pd.date_range("2008-01-01", periods=n, freq="QS", name=DATE)
    x = np.sin(np.arange(n) / 3.0) + rng.normal(0, 0.2, n)
    common = np.cumsum(rng.normal(0.5, 1.0, n))
    y = pd.DataFrame({
        "gdp": 200 + common + 2.0 * x + rng.normal(0, 0.5, n),
        "cons": 150 + 0.8 * common + 1.0 * x + rng.normal(0, 0.5, n),
        "inv": 60 + 0.5 * common - 1.5 * x + rng.normal(0, 0.8, n),
    }, index=index)
    X = pd.DataFrame({"x": x}, index=index)
    return y, X


@pytest.fixture
def future_x(quarterly: tuple[pd.DataFrame, pd.DataFrame]) -> Callable[[int], pd.DataFrame]:
    """Future rows of the quarterly exog column for ``h`` periods."""
    _, X = quarterly

    def make(h: int) -> pd.DataFrame:
        index = pd.date_range(X.index[-1], periods=h + 1, freq="QS", name=DATE)[1:]
        return pd.DataFrame({"x": np.cos(np.arange(h) / 2.0)}, index=index)

    return make


def make_panel(ids: tuple[str, ...] = ("a", "b", "c"), n: int = 48,
               levels: tuple[float, ...] = (50.0, 500.0, 5000.0)) -> pd.DataFrame:
    """Monthly panel indexed by ``(series_id, date)``, sorted, one target ``y``."""
    frames = []
    for k, (sid, level) in enumerate(zip(ids, levels, strict=True)):
        one = seasonal_monthly(n, seed=10 + k, level=100.0)
        one["y"] = one["y"] * level / 100.0
        one.index = pd.MultiIndex.from_product([[sid], one.index], names=[SERIES, DATE])
        frames.append(one)
    return pd.concat(frames)


@pytest.fixture
def panel() -> pd.DataFrame:
    return make_panel()


@pytest.fixture
def panel_data(panel: pd.DataFrame) -> SeriesData:
    return SeriesData(panel, None, "MS", season=12)


@pytest.fixture
def problem_dict() -> dict[str, Any]:
    """A minimal valid problem declaration (monthly, one target)."""
    return {
        "name": "toy",
        "source": "toy.csv",
        "time_column": DATE,
        "target": ["y"],
        "frequency": "MS",
        "horizon": 6,
        "models": [{"family": "naive"}],
        "backtest": {"windows": 2},
        "metric": "mase",
        "coverage": 0.9,
    }


@pytest.fixture
def make_problem(problem_dict: dict[str, Any]) -> Callable[..., ProblemConfig]:
    def make(**overrides: Any) -> ProblemConfig:
        return parse_problem({**problem_dict, **overrides})

    return make


@pytest.fixture
def family_case(monthly: pd.DataFrame, quarterly: tuple[pd.DataFrame, pd.DataFrame]) -> Callable[
        [str], tuple[Forecaster, pd.DataFrame]]:
    """``(unfitted model, training targets)`` for a family, with fast settings."""

    def make(family: str, coverage: float = 0.9, **params: Any) -> tuple[Forecaster,
                                                                           pd.DataFrame]:
        model = build_model(family, {**FAST_PARAMS.get(family, {}), **params},
                            coverage=coverage, season_length=12)
        y = quarterly[0] if family in MULTI_TARGET_FAMILIES else monthly
        return model, y

    return make


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_series() -> Callable[..., pd.DataFrame]:
    """Factory: ``make_series(n, seed=0, level=100.0)`` (see :func:`seasonal_monthly`)."""
    return seasonal_monthly


@pytest.fixture
def make_panel_frame() -> Callable[..., pd.DataFrame]:
    """Factory: ``make_panel_frame(ids, n, levels)`` (see :func:`make_panel`)."""
    return make_panel


# Shared helpers ----------------------------------------------------------------------------

def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def problem_for(name: str, **extra: Any) -> ProblemConfig:
    """A small monthly problem declaration named ``name`` (its source is not read)."""
    return parse_problem({"name": name, "source": "unused.csv", "time_column": DATE,
                          "target": "y", "frequency": "MS", "horizon": 6, "max_horizon": 12,
                          "models": [{"family": "naive"}], **extra})


@contextmanager
def embedded_store(home: Path) -> Iterator[Path]:
    """``home`` as the state folder, with its embedded MLflow store (no MLFLOW_TRACKING_URI),
    until the block ends; also for module-scoped fixtures."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORECASTFLOW_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        try:
            yield home
        finally:
            mlflow.set_tracking_uri(None)


@pytest.fixture
def isolated_store(tmp_path: Path) -> Iterator[Path]:
    """A state folder of its own with an embedded MLflow store (no MLFLOW_TRACKING_URI)."""
    with embedded_store(tmp_path):
        yield tmp_path
