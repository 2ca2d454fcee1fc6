"""The promote task's fault paths against a real MLflow store: a version that does not load
is refused (the champion stays, no retry), and a retry after an earlier try moved the alias
finishes that promotion and announces it once."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from forecastflow.lifecycle import registry, tracking
from forecastflow.orchestration import training
from tests.lifecycle.test_registry import fitted, parent, store, stored_pickle  # noqa: F401


def registered(fitted, key: str) -> dict:  # noqa: F811
    problem, path, meta, _ = fitted
    run = parent(problem.name, key)
    version = registry.register(problem.name, run, path, meta, {"family": "seasonal_naive"})
    return {"model": problem.name, "version": version, "run": {"parent_run_id": run},
            "evaluated": {}}


def test_a_version_that_does_not_load_is_refused_and_the_champion_stays(fitted):  # noqa: F811
    champion = registered(fitted, "good")
    registry.promote(champion["model"], champion["version"], ["first"])
    bad = registered(fitted, "corrupt")
    name, version = bad["model"], bad["version"]
    stored = stored_pickle(name, version)
    stored.write_bytes(stored.read_bytes()[:100])  # a truncated upload
    with (pytest.raises(AirflowFailException, match="checksum mismatch"),
          training.no_retry_on(registry.ModelCorruptError)):
        training._refuse_unloadable(name, version, bad["run"]["parent_run_id"])
    tags = tracking.client().get_model_version(name, version).tags
    assert tags["promotion"].startswith(f"not promoted: version {version} does not load")
    assert str(registry.alias_version(name, registry.CHAMPION).version) == champion["version"]


def test_a_retry_after_the_alias_moved_finishes_the_promotion_once(fitted):  # noqa: F811
    first = registered(fitted, "v1")
    registry.promote(first["model"], first["version"], ["first"])
    second = registered(fitted, "v2")
    name, version = second["model"], second["version"]
    client = tracking.client()
    # The earlier try died between moving the aliases and recording its decision.
    client.set_registered_model_alias(name, registry.PREVIOUS, first["version"])
    client.set_registered_model_alias(name, registry.CHAMPION, version)
    decision = training.promote({}, second)
    assert decision["changed"] and decision["champion"] == version
    assert decision["previous"] == first["version"]
    assert client.get_model_version(name, version).tags["promotion"].startswith("promoted")
    again = training.promote({}, second)  # the run cleared and re-run: no second announcement
    assert not again["changed"] and "already champion" in again["reasons"][0]
