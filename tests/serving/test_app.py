"""The REST API over HTTP on loopback: `forecastflow serve` in a subprocess, on models really
registered in a temporary MLflow store. Happy paths, every bad-request kind, hot swap after a
promotion, and the failed-load fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecastflow import storage
from forecastflow.data.series import SeriesData
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle import registry, tracking
from forecastflow.lifecycle.contract import model_meta
from tests.conftest import embedded_store, free_port, make_panel, problem_for, seasonal_monthly

BIN = Path(sys.executable).parent
SINGLE, EXOG, PANEL, NONE = "api_single", "api_exog", "api_panel", "api_none"




def register(name: str, data: SeriesData, trial: Trial, key: str, promote: bool = True,
             **extra) -> str:
    """Fit ``trial`` on ``data``, register it under ``name`` (and make it champion)."""
    problem = problem_for(name, **extra)
    model = trial.build(problem, data.season).fit(data.y, data.X)
    folder = storage.state_dir() / "test_models" / name / key
    path = storage.write_model(model, folder / "model.pkl")
    meta = model_meta(problem, data, model, {"trial": trial.to_dict()})
    run = tracking.find_or_create_run(name, {"airflow_run_id": key}, run_name=key)
    version = registry.register(name, run, path, meta, {
        "family": trial.family, "backtest_mase": "0.5", "baseline_mase": "1.0"})
    if promote:
        registry.promote(name, version, ["test"])
    return version


def exog_data() -> SeriesData:
    y = seasonal_monthly(60, seed=3)
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"price": rng.normal(10, 1, len(y))}, index=y.index)
    y["y"] = y["y"] - 2.0 * X["price"]
    return SeriesData(y, X, "MS", season=12)



def call(base: str, path: str, body: object = None, raw: bytes | None = None,
         ) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method="POST" if data is not None
                                     else "GET", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def start_server(home: Path, *args: str, registry_home: Path | None = None,
                 verbose: bool = True) -> tuple[subprocess.Popen, str]:
    """`forecastflow serve` on SINGLE, EXOG, PANEL, NONE with state in ``home`` (the MLflow
    store of ``registry_home`` when given; ``-v`` unless not ``verbose``), its output in
    ``home/serve.log``; returns the process and base URL."""
    port = free_port()
    env = {**os.environ, "FORECASTFLOW_HOME": str(home)}
    if registry_home is not None:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{registry_home}/mlflow.db"
    log = (home / "serve.log").open("a")
    process = subprocess.Popen(
        [str(BIN / "forecastflow"), *(["-v"] if verbose else []), "serve", SINGLE, EXOG,
         PANEL, NONE, "--port", str(port), *args], env=env, stdout=log,
        stderr=subprocess.STDOUT)
    log.close()
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def first_answer(base: str, path: str, body: object, timeout: float = 60.0) -> tuple[int, dict]:
    """The first answer once the server accepts connections."""
    deadline = time.time() + timeout
    while True:
        try:
            return call(base, path, body)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    with embedded_store(home):
        tracking.client()
        single = SeriesData(seasonal_monthly(72), None, "MS", season=12)
        models = {
            SINGLE: register(SINGLE, single, Trial("seasonal_naive", {}, "none"), "s1"),
            EXOG: register(EXOG, exog_data(), Trial("sarimax", {"order": [1, 0, 0],
                                                               "trend": "c", "maxiter": 25},
                                                     "none"), "e1", exog=["price"]),
            PANEL: register(PANEL, SeriesData(make_panel(), None, "MS", season=12),
                            Trial("seasonal_naive", {}, "none"), "p1", id_column="series_id"),
        }
        process, base = start_server(home, "--poll-seconds", "0.5")
        try:
            wait_for(lambda: call(base, "/health")[1]["status"] == "ok", what="server start")
            yield {"base": base, "home": home, "single": single, "versions": models}
        finally:
            stop_server(process)


def test_health_problems_and_docs(server):
    status, health = call(server["base"], "/health")
    assert status == 200 and health["status"] == "ok"
    assert {p: m["version"] for p, m in health["models"].items()} == {**server["versions"],
                                                                      NONE: None}
    # A problem without a champion yet is noted, not an error.
    assert health["models"][NONE]["note"] == "no champion in the registry yet"
    status, problems = call(server["base"], "/problems")
    by_name = {p["name"]: p for p in problems}
    assert by_name[EXOG]["exog"] == ["price"] and by_name[EXOG]["family"] == "sarimax"
    assert by_name[PANEL]["n_series"] == 3 and by_name[SINGLE]["max_horizon"] == 12
    assert by_name[SINGLE]["metrics"] == {"backtest_mase": 0.5, "baseline_mase": 1.0}
    with urllib.request.urlopen(server["base"] + "/docs", timeout=10) as response:
        assert b"swagger" in response.read().lower()
    status, spec = call(server["base"], "/openapi.json")
    assert "/problems/{name}/forecast" in spec["paths"]


def test_docs_assets_are_served_locally(server):
    """Swagger UI and ReDoc load nothing from a CDN: every script, stylesheet and icon is a
    path on this server, and each answers with its file."""
    import re

    for page in ("/docs", "/redoc"):
        with urllib.request.urlopen(server["base"] + page, timeout=10) as response:
            html = response.read().decode()
        urls = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html)
        urls += re.findall(r"(?:url|href): *['\"]([^'\"]+)['\"]", html)
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert assets, (page, html[:500])
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from another host"
            with urllib.request.urlopen(server["base"] + url, timeout=10) as response:
                assert response.status == 200 and len(response.read()) > 100, url
        assert "cdn." not in html and "fonts.googleapis" not in html, page


def test_openapi_examples_work_for_every_served_problem(server):
    base = server["base"]
    status, spec = call(base, "/openapi.json")
    operation = spec["paths"]["/problems/{name}/forecast"]["post"]
    (name_param,) = [p for p in operation["parameters"] if p["name"] == "name"]
    assert name_param["schema"]["enum"] == [SINGLE, EXOG, PANEL, NONE]
    assert SINGLE in name_param["description"] and NONE in name_param["description"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert sorted(examples) == sorted(server["versions"])  # NONE has no champion
    assert examples[EXOG]["value"]["exog"] and examples[PANEL]["value"]["series_ids"]
    for problem, example in examples.items():
        status, body = call(base, f"/problems/{problem}/forecast", example["value"])
        assert status == 200, (problem, example, body)
        assert body["horizon"] == example["value"]["horizon"]


def test_series_endpoint_lists_a_panels_ids(server):
    base = server["base"]
    status, body = call(base, f"/problems/{PANEL}/series")
    assert status == 200 and body["panel"] and body["n_series"] == 3
    assert body["series_ids"] == ["a", "b", "c"] and body["targets"]
    status, body = call(base, f"/problems/{SINGLE}/series")
    assert status == 200 and not body["panel"] and body["n_series"] == 1
    status, body = call(base, "/problems/nope/series")
    assert status == 404 and "'nope'" in body["detail"]
    status, body = call(base, f"/problems/{NONE}/series")
    assert status == 404 and "no champion" in body["detail"]


def test_start_up_prints_the_url_and_the_champions(server):
    log = (server["home"] / "serve.log").read_text()
    url = server["base"]  # the bound port, printed once (not doubled by -v logging)
    assert log.count(f"forecastflow serve: listening on {url} (Swagger UI: {url}/docs)") == 1
    for problem, version in server["versions"].items():
        assert f"  {problem}: champion v{version} (" in log, log[-2000:]
    assert f"  {SINGLE}: champion v{server['versions'][SINGLE]} (seasonal_naive) from lookup" \
        in log
    assert f"  {EXOG}: champion v{server['versions'][EXOG]} (sarimax) from lookup" in log
    assert f"  {NONE}: no champion yet" in log


def test_forecasts(server):
    base = server["base"]
    status, out = call(base, f"/problems/{SINGLE}/forecast", {"horizon": 12})
    assert status == 200 and out["model_version"] == server["versions"][SINGLE]
    assert len(out["forecasts"]) == 12 and out["origin"] == "2020-12-01"
    y = server["single"].y["y"]
    assert [p["forecast"] for p in out["forecasts"]] == pytest.approx(y.iloc[-12:].tolist())
    assert all(p["lower"] <= p["forecast"] <= p["upper"] for p in out["forecasts"])
    assert out["forecasts"][0]["date"] == "2021-01-01"

    rows = [{"price": 10.0 + i} for i in range(3)]
    status, out = call(base, f"/problems/{EXOG}/forecast", {"horizon": 3, "exog": rows})
    assert status == 200 and [p["step"] for p in out["forecasts"]] == [1, 2, 3]
    status, dearer = call(base, f"/problems/{EXOG}/forecast",
                          {"horizon": 3, "exog": [{"price": 20.0}] * 3})
    assert dearer["forecasts"][0]["forecast"] < out["forecasts"][0]["forecast"]

    status, out = call(base, f"/problems/{PANEL}/forecast", {"horizon": 2,
                                                              "series_ids": ["b"]})
    assert status == 200 and {p["series_id"] for p in out["forecasts"]} == {"b"}
    status, out = call(base, f"/problems/{PANEL}/forecast", {"horizon": 2})
    assert len(out["forecasts"]) == 6


@pytest.mark.parametrize(("path", "body", "status", "needle"), [
    ("/problems/nope/forecast", {"horizon": 3}, 404, "unknown problem 'nope'"),
    (f"/problems/{NONE}/forecast", {"horizon": 3}, 404, "no champion in the registry yet"),
    (f"/problems/{SINGLE}/forecast", {"horizon": 0}, 422, "horizon"),
    (f"/problems/{SINGLE}/forecast", {"horizon": 13}, 422, "horizon: 13 is above the maximum 12"),
    (f"/problems/{SINGLE}/forecast", {"horizon": "soon"}, 422, "horizon"),
    (f"/problems/{SINGLE}/forecast", {}, 422, "horizon"),
    (f"/problems/{SINGLE}/forecast", {"horizon": 3, "colour": 1}, 422, "colour"),
    (f"/problems/{SINGLE}/forecast", {"horizon": 3, "exog": [{"x": 1}]}, 422, "no exogenous"),
    (f"/problems/{SINGLE}/forecast", {"horizon": 3, "series_ids": ["a"]}, 422, "single series"),
    (f"/problems/{EXOG}/forecast", {"horizon": 3}, 422, "needs future values of ['price']"),
    (f"/problems/{EXOG}/forecast", {"horizon": 2, "exog": [{"price": 1}, {"cost": 2}]}, 422,
     "exog[1]: unexpected column(s) ['cost']"),
    (f"/problems/{EXOG}/forecast", {"horizon": 2, "exog": [{"price": 1}, {}]}, 422,
     "exog[1]: missing column(s) ['price']"),
    (f"/problems/{EXOG}/forecast", {"horizon": 1, "exog": [{"price": "cheap"}]}, 422,
     "exog[0].price: expected a finite number, got 'cheap'"),
    (f"/problems/{EXOG}/forecast", {"horizon": 3, "exog": [{"price": 1}]}, 422,
     "1 exog row(s) for horizon 3"),
    (f"/problems/{EXOG}/forecast", {"horizon": 2, "exog": "lots"}, 422, "exog"),
    (f"/problems/{PANEL}/forecast", {"horizon": 2, "series_ids": ["zz"]}, 422, "['zz']"),
    (f"/problems/{PANEL}/forecast", {"horizon": 2, "series_ids": "a"}, 422, "series_ids"),
])
def test_bad_requests_are_4xx_naming_the_field(server, path, body, status, needle):
    code, out = call(server["base"], path, body)
    assert code == status, out
    assert needle in out["detail"], out["detail"]


def test_malformed_and_oversize_bodies(server):
    base = server["base"]
    code, out = call(base, f"/problems/{SINGLE}/forecast", raw=b'{"horizon": 3')
    assert code == 422 and "JSON" in out["detail"]
    code, out = call(base, f"/problems/{SINGLE}/forecast", raw=b"[1, 2]")
    assert code == 422
    code, out = call(base, f"/problems/{SINGLE}/forecast",
                     raw=json.dumps({"horizon": 3, "pad": "x" * 1_100_000}).encode())
    assert code == 413 and "limit" in out["detail"]
    code, out = call(base, f"/problems/{SINGLE}/forecast", raw=b'{"horizon": NaN}')
    assert code == 422


def test_hot_swap_and_failed_load_fallback(server):
    base = server["base"]
    # A promotion: the poller notices the alias move and swaps the model.
    v2 = register(SINGLE, server["single"], Trial("drift", {}, "none"), "s2")
    wait_for(lambda: call(base, "/health")[1]["models"][SINGLE]["version"] == v2,
             timeout=30, what="hot swap")
    code, out = call(base, f"/problems/{SINGLE}/forecast", {"horizon": 3})
    assert code == 200 and out["model_version"] == v2 and out["family"] == "drift"
    # The OpenAPI examples are rebuilt for the new champion.
    spec = call(base, "/openapi.json")[1]
    example = spec["paths"]["/problems/{name}/forecast"]["post"]["requestBody"]["content"][
        "application/json"]["examples"][SINGLE]
    assert f"v{v2}, drift" in example["summary"], example

    # A champion whose artifact is broken: the old model keeps serving; /health says why.
    v3 = register(SINGLE, server["single"], Trial("naive", {}, "none"), "s3", promote=False)
    client = tracking.client()
    source = client.get_model_version(SINGLE, v3).source  # models:/m-<id>
    logged = client.get_logged_model(source.rsplit("/", 1)[-1])
    folder = Path(logged.artifact_location.removeprefix("file://"))
    (folder / "artifacts" / "model.pkl").write_bytes(b"not a pickle")
    registry.promote(SINGLE, v3, ["test: broken artifact"])
    health = wait_for(lambda: (h := call(base, "/health")[1])["models"][SINGLE]["error"] and h,
                      timeout=30, what="load error in /health")
    assert health["status"] == "degraded"
    assert f"champion v{v3} failed to load" in health["models"][SINGLE]["error"]
    assert f"still serving v{v2}" in health["models"][SINGLE]["error"]
    code, out = call(base, f"/problems/{SINGLE}/forecast", {"horizon": 3})
    assert code == 200 and out["model_version"] == v2
    # Rolling back to a good version clears the error.
    registry.promote(SINGLE, v2, ["test: back"])
    wait_for(lambda: call(base, "/health")[1]["status"] == "ok", timeout=30, what="recovery")


def test_first_start_and_restart_answer_before_the_model_is_read(server, tmp_path):
    """A second server with its own (empty) serving cache on the same registry: the first
    start finds champions without the MLflow client ("lookup") and answers exog-free requests
    from the serving card logged with the model; after a restart it answers from its cache.
    Card answers equal the model's answers; the registry check then verifies the versions."""
    base = server["base"]
    wanted = {(SINGLE, 5): None, (PANEL, 4): None}
    for (name, h) in wanted:  # computed by the module's server, with its model in memory
        wanted[name, h] = call(base, f"/problems/{name}/forecast", {"horizon": h})[1]
    panel_b = call(base, f"/problems/{PANEL}/forecast", {"horizon": 3, "series_ids": ["b"]})[1]
    exog_body = {"horizon": 2, "exog": [{"price": 10.0}, {"price": 11.0}]}
    exog = call(base, f"/problems/{EXOG}/forecast", exog_body)[1]

    for start in ("first start", "restart"):
        process, other = start_server(tmp_path, "--poll-seconds", "2", "--cache-size", "0",
                                      registry_home=server["home"])
        try:
            code, out = first_answer(other, f"/problems/{SINGLE}/forecast", {"horizon": 5})
            assert code == 200 and out == wanted[SINGLE, 5], start
            health = call(other, "/health")[1]
            assert health["models"][SINGLE]["source"] == (
                "lookup" if start == "first start" else "cache"), (start, health)
            assert health["models"][NONE]["note"] == "no champion in the registry yet"
            assert call(other, f"/problems/{PANEL}/forecast", {"horizon": 4})[1] == wanted[
                PANEL, 4]
            assert call(other, f"/problems/{PANEL}/forecast", {
                "horizon": 3, "series_ids": ["b"]})[1] == panel_b
            # Exog requests need the model: answered once it is read (the request waits).
            assert call(other, f"/problems/{EXOG}/forecast", exog_body)[1] == exog
            health = wait_for(lambda url=other: (h := call(url, "/health")[1])["status"] == "ok"
                              and h, what="registry verification")
            assert all(m["model_in_memory"] and m["source"] == "registry"
                       for p, m in health["models"].items() if p != NONE), health
            # With the model in memory (and no result cache) the answer is the same.
            assert call(other, f"/problems/{SINGLE}/forecast", {"horizon": 5})[1] == wanted[
                SINGLE, 5]
        finally:
            stop_server(process)
    assert (tmp_path / "serving" / SINGLE / "champion.json").exists()


def test_restart_with_an_unreadable_cached_model(server, tmp_path):
    """A corrupt cached pickle does not stop a restart: exog-free requests are answered from
    the card, /health names the problem, and the registry check downloads a good copy (the
    bad one is kept aside). The first start runs at the CLI's default log level (no -v): the
    start-up lines are shown all the same."""
    process, other = start_server(tmp_path, "--poll-seconds", "30",
                                  registry_home=server["home"], verbose=False)
    try:
        wait_for(lambda: call(other, "/health")[1]["status"] == "ok", what="start")
    finally:
        stop_server(process)
    log = (tmp_path / "serve.log").read_text()
    assert f"forecastflow serve: listening on {other} (Swagger UI: {other}/docs)" in log, log
    assert f"  {PANEL}: champion v{server['versions'][PANEL]} (seasonal_naive) from" in log
    assert f"  {NONE}: no champion yet" in log
    version = json.loads((tmp_path / "serving" / SINGLE / "champion.json").read_text())[
        "version"]
    (tmp_path / "serving" / SINGLE / version / "artifacts" / "model.pkl").write_bytes(b"junk")

    process, other = start_server(tmp_path, "--poll-seconds", "30",
                                  registry_home=server["home"])
    try:
        code, out = first_answer(other, f"/problems/{SINGLE}/forecast", {"horizon": 3})
        assert code == 200 and out["model_version"] == version
        health = wait_for(lambda: (h := call(other, "/health")[1])["models"][SINGLE]["error"]
                          and h, what="the unreadable copy reported")
        assert "checksum mismatch" in health["models"][SINGLE]["error"]
        # The first registry check (3 s after start) fetches the version again.
        health = wait_for(lambda: (h := call(other, "/health")[1])["status"] == "ok" and h,
                          what="healed from the registry")
        assert health["models"][SINGLE]["model_in_memory"]
        assert health["models"][SINGLE]["error"] is None
        kept = list((tmp_path / "serving" / SINGLE).glob(f".unreadable-{version}.*/model"))
        assert len(kept) == 1
    finally:
        stop_server(process)


def test_hub_answers_from_the_card_until_the_model_is_read(server, tmp_path):
    """In process: a first start's slots hold the serving card, not the model; their answers
    equal the model's (every horizon, series subsets); an exog request reads the model."""
    from forecastflow.serving.hub import Hub

    hub = Hub([SINGLE, PANEL, EXOG], tmp_path, poll_seconds=60, response_cache_size=0)
    hub.load_fast()  # the module's registry (FORECASTFLOW_HOME), no MLflow client
    assert hub.slots[SINGLE].model is None and len(hub.slots[SINGLE].table) == 12
    assert hub.slots[EXOG].model is None and hub.slots[EXOG].table is None
    bodies = [(SINGLE, {"horizon": h}) for h in (1, 7, 12)] + [
        (PANEL, {"horizon": 12}), (PANEL, {"horizon": 2, "series_ids": ["c", "a"]})]
    from_card = [hub.forecast(name, json.dumps(b).encode()) for name, b in bodies]
    assert hub.slots[SINGLE].model is None  # still: those came from the card
    hub.load_models()
    assert hub.slots[SINGLE].model is not None and hub.slots[PANEL].model is not None
    assert [hub.forecast(name, json.dumps(b).encode()) for name, b in bodies] == from_card
    assert [len(out["forecasts"]) for out in from_card] == [1, 7, 12, 36, 4]

    fresh = Hub([EXOG], tmp_path, poll_seconds=60, response_cache_size=0)
    fresh.load_fast()
    body = {"horizon": 2, "exog": [{"price": 10.0}, {"price": 11.0}]}
    out = fresh.forecast(EXOG, json.dumps(body).encode())
    assert [p["step"] for p in out["forecasts"]] == [1, 2]
    assert fresh.slots[EXOG].model is not None


def test_models_registered_without_a_card_get_one_from_the_server(server, tmp_path):
    """Versions logged before serving cards existed: the first start reads the model, then
    writes the card itself (``v<version>.json``), which the next start answers from."""
    import yaml

    from forecastflow.serving.hub import Hub

    hub = Hub([SINGLE], tmp_path, poll_seconds=60, response_cache_size=0)
    hub.load_fast()
    version = hub.slots[SINGLE].version
    mlmodel = tmp_path / SINGLE / version / "MLmodel"
    spec = yaml.safe_load(mlmodel.read_text())
    del spec["flavors"]["python_function"]["artifacts"]["card"]
    mlmodel.write_text(yaml.safe_dump(spec))
    expected = hub.forecast(SINGLE, b'{"horizon": 4}')

    old = Hub([SINGLE], tmp_path, poll_seconds=60, response_cache_size=0)
    old.load_cached()
    assert old.slots[SINGLE].model is not None  # no card: the model was read at start
    old.load_models()
    assert (tmp_path / SINGLE / f"v{version}.json").exists()

    again = Hub([SINGLE], tmp_path, poll_seconds=60, response_cache_size=0)
    again.load_cached()
    assert again.slots[SINGLE].model is None and again.slots[SINGLE].table
    assert again.forecast(SINGLE, b'{"horizon": 4}') == expected


def test_exog_free_requests_are_answered_from_the_table_equal_to_the_model(server, tmp_path):
    """With the model in memory too, exog-free requests read the precomputed table (by
    series: no scan of every row); its answers equal the model's, in the model's order."""
    from forecastflow.serving.hub import Hub, RequestError, run_forecast, table_forecast
    from forecastflow.serving.schemas import parse_request

    hub = Hub([PANEL], tmp_path, poll_seconds=60, response_cache_size=0)
    hub.load_fast()
    hub.load_models()
    slot = hub.slots[PANEL]
    assert slot.model is not None and set(slot.by_series) == {"a", "b", "c"}
    for body in ({"horizon": 12}, {"horizon": 5, "series_ids": ["c", "a", "c"]},
                 {"horizon": 1, "series_ids": ["b"]}):
        request = parse_request(json.dumps(body).encode())
        assert table_forecast(slot, request) == run_forecast(slot, request)
        assert hub.forecast(PANEL, json.dumps(body).encode()) == run_forecast(slot, request)
    with pytest.raises(RequestError, match=r"series_ids: unknown series \['zz'\]"):
        hub.forecast(PANEL, b'{"horizon": 2, "series_ids": ["zz", "a"]}')
