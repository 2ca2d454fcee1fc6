"""The REST API fuzzed from its own OpenAPI spec with schemathesis, in process (ASGI, no
network): every operation, valid and invalid inputs, with and without a token configured.
No answer is a 5xx, and every answer's status and body are the ones the spec documents.

The app serves real champions (fitted here): a single series answered from its forecast
table, a single series with an exogenous input (the model runs) and a panel, plus a problem
without a champion yet, so that forecasts get past the 404s."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from forecastflow.serving.app import create_app
from forecastflow.serving.hub import Hub
from tests.serving.champions import EXOG, PANEL, SINGLE, champions_hub

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPERATIONS = ["GET /health", "GET /problems", "GET /problems/{name}/series",
              "POST /problems/{name}/forecast"]
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    return champions_hub(tmp_path_factory.mktemp("fuzz-serving"))


@pytest.fixture(scope="module")
def schemas(hub: Hub) -> dict[str, schemathesis.BaseSchema]:
    """The spec of the app without a token and of the app with one, loaded from the app."""
    return {
        "open": schemathesis.openapi.from_asgi("/openapi.json", create_app(hub, api_token="")),
        "token": schemathesis.openapi.from_asgi("/openapi.json",
                                                create_app(hub, api_token=TOKEN),
                                                headers=AUTH)}


def test_the_spec_lists_every_operation(schemas: dict[str, schemathesis.BaseSchema]) -> None:
    """The fuzz cases below cover every operation of the spec (a new one must be added)."""
    for schema in schemas.values():
        found = {op.ok().label for op in schema.get_all_operations()}
        assert found == set(OPERATIONS), found


@pytest.mark.parametrize(("auth", "label", "mode"), [
    (auth, label, mode) for auth in ("open", "token") for label in OPERATIONS
    for mode in GenerationMode if "{name}" in label or mode is GenerationMode.POSITIVE])
def test_fuzz(schemas: dict[str, schemathesis.BaseSchema], auth: str, label: str,
              mode: GenerationMode) -> None:
    """Generated requests (valid ones, and invalid ones in negative mode) to one operation:
    no 5xx, and the status and body of every answer are documented."""
    operation = schemas[auth].find_operation_by_label(label)
    headers = AUTH if auth == "token" else None
    seen = []

    @FUZZ
    @given(case=operation.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS, headers=headers)
        seen.append(response.status_code)

    run()
    print(f"{auth} {label} {mode.value}: {len(seen)} requests, statuses "
          f"{dict(sorted(Counter(seen).items()))}")


@st.composite
def contract_bodies(draw: st.DrawFn, meta: dict[str, Any]) -> dict[str, Any]:
    """Bodies the champion described by ``meta`` accepts: a horizon within its limit, known
    series ids (panels, sometimes repeated), any finite exog values, one row per step (and
    series)."""
    body: dict[str, Any] = {"horizon": draw(st.integers(1, int(meta["horizon_limit"])))}
    ids = [str(s) for s in meta.get("series") or []]
    panel = bool(meta.get("panel"))
    if panel and draw(st.booleans()):
        body["series_ids"] = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4))
    exog = list(meta.get("exog") or [])
    if exog:
        number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
        wanted = dict.fromkeys(body.get("series_ids", ids)) if panel else [None]
        body["exog"] = [{**{c: draw(number) for c in exog},
                         **({"series_id": sid} if panel else {})}
                        for sid in wanted for _ in range(body["horizon"])]
    return body


@pytest.mark.parametrize("problem", [SINGLE, EXOG, PANEL])
def test_fuzz_within_each_contract(hub: Hub, schemas: dict[str, schemathesis.BaseSchema],
                                   problem: str) -> None:
    """Requests each champion accepts, generated from its metadata (the spec alone rarely
    gets past the horizon and exog checks): 200 with a body matching ForecastResponse, or a
    documented refusal (an exog value the model cannot forecast from), never a 5xx."""
    operation = schemas["open"].find_operation_by_label("POST /problems/{name}/forecast")
    seen = []

    @FUZZ
    @given(body=contract_bodies(hub.slots[problem].meta))
    def run(body: dict[str, Any]) -> None:
        case = operation.Case(path_parameters={"name": problem}, body=body,
                              media_type="application/json")
        seen.append(case.call_and_validate(checks=CHECKS).status_code)

    run()
    print(f"{problem} within contract: {len(seen)} requests, statuses "
          f"{dict(sorted(Counter(seen).items()))}")
    assert seen.count(200) > len(seen) // 2, Counter(seen)


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_without_the_token_is_a_documented_401(
        schemas: dict[str, schemathesis.BaseSchema], label: str) -> None:
    """A token is configured and the requests carry none: 401 as documented (``/health``
    stays open)."""
    operation = schemas["token"].find_operation_by_label(label)
    seen = []

    @settings(FUZZ, max_examples=10)
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        case.headers = {k: v for k, v in (case.headers or {}).items()
                        if k.lower() != "authorization"}
        seen.append(case.call_and_validate(checks=CHECKS).status_code)

    run()
    assert set(seen) == ({200} if label == "GET /health" else {401}), Counter(seen)
