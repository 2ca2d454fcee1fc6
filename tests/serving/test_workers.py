"""Model workers (forecasts that need the model, computed in separate processes): concurrent
exog requests get the answers serial ones get, a swap during concurrent requests never
fails one nor mixes two versions, a worker that dies is replaced, and exog-free requests
never reach a worker. No timing assertions: performance lives in bench/load.py."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forecastflow.data.series import SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle import registry, tracking
from forecastflow.serving.hub import Hub
from forecastflow.serving.workers import ModelWorkers
from tests.conftest import embedded_store, make_panel
from tests.serving.test_app import (
    EXOG,
    PANEL,
    call,
    exog_data,
    register,
    start_server,
    stop_server,
    wait_for,
)


def bodies(n: int, seed: int) -> list[bytes]:
    """``n`` distinct exog requests (horizon 1-12, random prices)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = rng.randint(1, 12)
        out.append(json.dumps({"horizon": h, "exog": [{"price": round(rng.uniform(8, 12), 4)}
                                                      for _ in range(h)]}).encode())
    return out


def hub_at(folder: Path, version: str, problems: list[str]) -> Hub:
    """A hub serving ``version`` of EXOG (promoted, then looked up into ``folder``)."""
    registry.promote(EXOG, version, ["test"])
    hub = Hub(problems, folder, poll_seconds=60, response_cache_size=0)
    hub.load_fast()
    hub.load_models()
    return hub


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """EXOG with two versions (SARIMAX AR(1), AR(2)) and an exog-free PANEL."""
    home = tmp_path_factory.mktemp("workers")
    with embedded_store(home):
        tracking.client()
        data = exog_data()
        versions = [register(EXOG, data, Trial("sarimax", {"order": [p, 0, 0], "trend": "c",
                                                           "maxiter": 25}, "none"), f"e{p}",
                             promote=False, exog=["price"]) for p in (1, 2)]
        register(PANEL, SeriesData(make_panel(), None, "MS", season=12),
                 Trial("seasonal_naive", {}, "none"), "p1", id_column="series_id")
        folder = home / "serving"
        hubs = {v: hub_at(folder, v, [EXOG]) for v in versions}
        yield {"folder": folder, "versions": versions, "hubs": hubs}


@pytest.fixture(scope="module")
def workers(store):
    pool = ModelWorkers(store["folder"], 2)
    yield pool
    pool.close()


def test_concurrent_requests_answer_as_serial_ones(store, workers):
    v1 = store["versions"][0]
    serial_hub = store["hubs"][v1]
    work = bodies(40, seed=1)
    serial = [serial_hub.forecast(EXOG, body) for body in work]
    assert {out["model_version"] for out in serial} == {v1}
    hub = hub_at(store["folder"], v1, [EXOG])
    with ThreadPoolExecutor(8) as threads:  # in the server process, one at a time
        assert list(threads.map(lambda b: hub.forecast(EXOG, b), work)) == serial
        hub.workers = workers  # in two worker processes
        assert list(threads.map(lambda b: hub.forecast(EXOG, b), work)) == serial


def test_a_swap_during_concurrent_requests_fails_none_and_mixes_none(store, workers):
    v1, v2 = store["versions"]
    work = bodies(120, seed=2)
    expected = {v: [store["hubs"][v].forecast(EXOG, b) for b in work] for v in (v1, v2)}
    assert expected[v1][0]["forecasts"] != expected[v2][0]["forecasts"]
    hub = Hub([EXOG], store["folder"], poll_seconds=60, response_cache_size=64)
    hub.slots = dict(store["hubs"][v1].slots)
    hub.workers = workers
    new = store["hubs"][v2].slots[EXOG]

    def ask(i: int) -> tuple[int, dict]:
        if i == len(work) // 3:
            hub._install(new)  # what the registry poller does when the alias moves
        return i, hub.forecast(EXOG, work[i])

    with ThreadPoolExecutor(8) as threads:
        answers = list(threads.map(ask, range(len(work))))
    seen = {out["model_version"] for _, out in answers}
    assert seen == {v1, v2}
    for i, out in answers:  # each answer is wholly one version's
        assert out == expected[out["model_version"]][i]
    assert hub.forecast(EXOG, work[0]) == expected[v2][0]


def test_a_dead_worker_is_replaced_and_its_request_still_answered(store):
    v1 = store["versions"][0]
    hub = hub_at(store["folder"], v1, [EXOG])
    work = bodies(6, seed=3)
    expected = [hub.forecast(EXOG, b) for b in work]
    hub.workers = pool = ModelWorkers(store["folder"], 1)
    try:
        assert hub.forecast(EXOG, work[0]) == expected[0]
        for pid in list(pool._pools[0]._processes):
            os.kill(pid, 9)
        assert [hub.forecast(EXOG, b) for b in work] == expected
    finally:
        pool.close()


class NoWorkers:
    """Model workers that must not be asked."""

    def forecast(self, slot, body):
        raise AssertionError(f"exog-free request sent to a model worker: {body!r}")

    def preload(self, slot):
        raise AssertionError("preload of an exog-free problem")


def test_exog_free_requests_never_reach_the_model(store):
    """Answered from the serving card's table whatever the horizon and series subset, with
    the model in memory or not."""
    registry.promote(PANEL, "1", ["test"])
    hub = Hub([PANEL], store["folder"], poll_seconds=60, response_cache_size=0)
    hub.load_fast()
    hub.workers = NoWorkers()
    limit = int(hub.slots[PANEL].meta["horizon_limit"])
    requests = [{"horizon": h} for h in range(1, limit + 1)] + [
        {"horizon": h, "series_ids": ids} for h in (1, 5, limit)
        for ids in (["b"], ["c", "a"], ["a", "b", "c"])]
    before = [hub.forecast(PANEL, json.dumps(r).encode()) for r in requests]
    assert hub.slots[PANEL].model is None
    hub.load_models()
    assert hub.slots[PANEL].model is not None
    assert [hub.forecast(PANEL, json.dumps(r).encode()) for r in requests] == before


def test_swap_under_concurrent_http_requests(store):
    """`forecastflow serve` with two model workers: exog requests from 8 threads before,
    during and after the champion alias moves; every answer is 200 and wholly one
    version's, and both versions answer."""
    v1, v2 = store["versions"]
    work = bodies(60, seed=4)
    expected = {v: [store["hubs"][v].forecast(EXOG, b) for b in work] for v in (v1, v2)}
    registry.promote(EXOG, v1, ["test"])
    home = Path(os.environ["FORECASTFLOW_HOME"]) / "http"
    home.mkdir()
    process, base = start_server(home, "--poll-seconds", "0.5", "--model-workers", "2",
                                 registry_home=Path(os.environ["FORECASTFLOW_HOME"]))
    answers: list[tuple[int, int, dict]] = []
    done = threading.Event()

    def client(k: int) -> None:
        i = k
        while not done.is_set():  # until v2 has answered 40 requests (or 60 s)
            code, out = call(base, f"/problems/{EXOG}/forecast", raw=work[i % len(work)])
            answers.append((i % len(work), code, out))
            i += 8

    try:
        wait_for(lambda: call(base, "/health")[1]["models"][EXOG]["version"] == v1,
                 what="server start")
        with ThreadPoolExecutor(8) as threads:
            running = [threads.submit(client, k) for k in range(8)]
            wait_for(lambda: len(answers) >= 40, what="answers from v1")
            registry.promote(EXOG, v2, ["test: swap under load"])
            deadline = time.time() + 60
            while sum(out.get("model_version") == v2 for _, _, out in list(answers)) < 40:
                assert time.time() < deadline, "v2 never answered 40 requests"
                time.sleep(0.1)
            done.set()
            for future in running:
                future.result()
    finally:
        done.set()
        stop_server(process)
    assert [(code, out) for _, code, out in answers if code != 200] == []
    assert {out["model_version"] for _, _, out in answers} == {v1, v2}
    for i, _, out in answers:
        assert out == expected[out["model_version"]][i]
