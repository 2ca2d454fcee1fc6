"""Real champions served in process (no registry): fitted here, held as the server holds
them, for the tests that fuzz and stress the API (tests/serving/test_fuzz.py,
tests/serving/test_limits.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from forecastflow.data.series import SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle.contract import model_meta, serving_card
from forecastflow.serving.hub import Hub, Slot
from tests.conftest import make_panel, problem_for, seasonal_monthly

SINGLE, EXOG, PANEL, NONE = "fz_single", "fz_exog", "fz_panel", "fz_none"


def exog_data() -> SeriesData:
    """A monthly series driven by a price (the exog column)."""
    y = seasonal_monthly(60, seed=3)
    X = pd.DataFrame({"price": np.random.default_rng(5).normal(10, 1, len(y))}, index=y.index)
    return SeriesData(y.assign(y=y["y"] - 2.0 * X["price"]), X, "MS", season=12)


def champion(name: str, data: SeriesData, trial: Trial, **extra: object) -> Slot:
    """``trial`` fitted on ``data`` as the server holds it: metadata read back from JSON and,
    for exog-free problems, the serving card's forecast table."""
    problem = problem_for(name, **extra)
    model = trial.build(problem, data.season).fit(data.y, data.X)
    meta = json.loads(json.dumps(model_meta(problem, data, model, {"trial": trial.to_dict()})))
    card = serving_card(model, meta)
    return Slot(name, "1", trial.family, model, meta, {"backtest_mase": 0.5}, card["origin"],
                0.0, "registry", card["table"])


def champions_hub(folder: Path) -> Hub:
    """A hub serving SINGLE, EXOG and PANEL, with NONE still waiting for a champion."""
    sarimax = Trial("sarimax", {"order": [1, 0, 0], "trend": "c", "maxiter": 25}, "none")
    slots = [
        champion(SINGLE, SeriesData(seasonal_monthly(72), None, "MS", season=12),
                 Trial("seasonal_naive", {}, "none")),
        champion(EXOG, exog_data(), sarimax, exog=["price"]),
        champion(PANEL, SeriesData(make_panel(), None, "MS", season=12),
                 Trial("seasonal_naive", {}, "none"), id_column="series_id"),
    ]
    hub = Hub([SINGLE, EXOG, PANEL, NONE], folder, poll_seconds=3600.0, response_cache_size=0)
    hub.slots = {slot.problem: slot for slot in slots}
    for slot in slots:  # as logged with the model: no warning when the app starts
        hub.disk.write_card(slot.problem, slot.version, slot.model, slot.meta)
    hub.waiting.add(NONE)
    hub.verified = True
    return hub
