"""The MLflow model registry: the pyfunc wrapper, idempotent registration, gated promotion by
alias (``challenger``, ``champion``, ``previous``; never stages) and rollback.

Pyfunc contract (``mlflow.pyfunc.load_model("models:/<problem>@champion").predict(df)``):
see :mod:`forecastflow.lifecycle.contract`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from forecastflow import storage
from forecastflow.lifecycle import tracking
from forecastflow.lifecycle.contract import (  # noqa: F401 - re-exported
    ForecastRequestError,
    predict_frame,
    request_example,
    serving_card,
)

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
EXAMPLE_FORECAST = "model_example/forecast.csv"
CARD = "serving_card.json"
SHA256_TAG = storage.SHA256_TAG  # the model pickle's checksum (docs/security.md)


def _pyfunc_base() -> type:
    import mlflow.pyfunc

    return mlflow.pyfunc.PythonModel


class ForecastModel(_pyfunc_base()):
    """MLflow pyfunc around a fitted ``ForecastPipeline`` (artifact ``model``) and its
    metadata (artifact ``meta``: problem, horizon limit, exog, series ids)."""

    def load_context(self, context: Any) -> None:
        self.model = storage.read_model(context.artifacts["model"])
        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_frame(self.model, self.meta, model_input)


# Registration -----------------------------------------------------------------------------

def registered_version(name: str, run_id: str) -> str | None:
    """The version already registered from ``run_id`` (a retried task must not add one)."""
    mlflow_client = tracking.client()
    versions = tracking.retry(lambda: mlflow_client.search_model_versions(
        f"name = '{name}' and run_id = '{run_id}'"), "search versions")
    return str(versions[0].version) if versions else None


def register(name: str, run_id: str, model_path: Path, meta: dict[str, Any],
             tags: dict[str, str]) -> str:
    """Log the model as a pyfunc in ``run_id`` and register it under ``name`` (once per
    run); give it alias ``challenger``. Returns the version."""
    import mlflow
    from mlflow.models import infer_signature

    existing = registered_version(name, run_id)
    if existing:
        log.info("model %s: run %s already registered as version %s", name, run_id, existing)
        ensure_challenger(name, existing)
        return existing
    tracking.client()
    tags = {**tags, SHA256_TAG: storage.sha256_of(model_path)}
    folder = model_path.parent
    meta_path = storage.write_json(meta, folder / "model_meta.json")
    model = storage.read_model(model_path)
    # Lets a server answer exog-free requests before it has unpickled the model.
    card_path = storage.write_json(serving_card(model, meta), folder / CARD, compact=True)
    example = request_example(model, meta, min(int(meta["horizon"]), int(meta["horizon_limit"])))
    output = predict_frame(model, meta, example)
    signature = infer_signature(example, output)
    import forecastflow

    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=ForecastModel(),
            artifacts={"model": str(model_path), "meta": str(meta_path),
                       "card": str(card_path)},
            code_paths=[str(Path(forecastflow.__file__).parent)],
            signature=signature, input_example=example,
            pip_requirements=_requirements())
    mlflow_client = tracking.client()
    # The forecast for the input example: a fresh process must reproduce it from the registry.
    tracking.retry(lambda: mlflow_client.log_text(run_id, output.to_csv(index=False),
                                                  EXAMPLE_FORECAST), "log example forecast")
    version = tracking.retry(lambda: mlflow.register_model(info.model_uri, name, tags=tags),
                             "register model")
    tracking.retry(lambda: mlflow_client.set_registered_model_alias(
        name, CHALLENGER, version.version), "set alias")
    log.info("model %s: registered version %s from run %s (alias %s)", name, version.version,
             run_id, CHALLENGER)
    return str(version.version)


def ensure_challenger(name: str, version: str) -> None:
    """Alias ``challenger`` on ``version`` unless a promotion already decided on it (a
    registration retried after the version was created but before the alias was set)."""
    mlflow_client = tracking.client()
    found = tracking.retry(lambda: mlflow_client.get_model_version(name, version),
                           "get version")
    if "promotion" not in found.tags and CHALLENGER not in (found.aliases or []):
        tracking.retry(lambda: mlflow_client.set_registered_model_alias(
            name, CHALLENGER, version), "set alias")
        log.info("model %s: alias %s set on version %s (left unset by an earlier try)",
                 name, CHALLENGER, version)


def _requirements() -> list[str]:
    from importlib.metadata import version

    pins = []
    for package in ("pandas", "numpy", "scipy", "statsmodels", "scikit-learn", "pyarrow",
                    "pydantic", "PyYAML"):
        pins.append(f"{package}=={version(package)}")
    return pins


# Loading ----------------------------------------------------------------------------------

class ModelLoadError(RuntimeError):
    """A registered version whose artifacts cannot be turned back into a forecaster."""


class ModelCorruptError(ModelLoadError):
    """A version whose artifacts were downloaded but do not match their checksum or do not
    unpickle: retrying will not help."""


def recorded_sha256(name: str, version: str) -> str | None:
    """The model checksum recorded when ``version`` was registered (None: registered before
    checksums were recorded)."""
    mlflow_client = tracking.client()
    found = tracking.retry(lambda: mlflow_client.get_model_version(name, version),
                           "get version")
    return found.tags.get(SHA256_TAG)


def load_version(name: str, version: str, cache: Path | None = None,
                 sha256: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The library forecaster and its metadata of ``name`` version ``version``, read from the
    version's pyfunc artifacts (downloaded once into ``cache`` when given). Faster than
    ``mlflow.pyfunc.load_model`` and the same model object.

    The model file's checksum is compared with ``sha256`` (default: the one recorded on the
    version) before it is unpickled. A cached copy that cannot be read or does not match is
    moved aside (``.unreadable-*``, kept for inspection) and downloaded again.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = f"models:/{name}/{version}"
    if sha256 is None:
        try:
            sha256 = recorded_sha256(name, version)
        except MlflowException as err:
            raise ModelLoadError(f"cannot read {uri}: {err}") from err
        if sha256 is None:
            log.warning("%s has no recorded %s (registered before checksums): loaded "
                        "unchecked", uri, SHA256_TAG)
    target = None if cache is None else cache / name / str(version)
    if target is not None and target.exists():
        try:
            return storage.read_pyfunc_dir(target, sha256)
        except storage.ModelFolderError as err:
            aside = Path(tempfile.mkdtemp(prefix=f".unreadable-{version}.", dir=target.parent))
            os.replace(target, aside / "model")
            log.warning("%s: cached copy unreadable (%s); kept in %s, downloading again", uri,
                        err, aside)
    tracking.client()
    try:
        if target is None:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        else:  # download beside, then rename: a half-finished copy is never used
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(partial))
            try:
                os.replace(partial, target)
            except OSError:  # another process got there first: use its copy
                shutil.rmtree(partial, ignore_errors=True)
            local = target
    except (MlflowException, OSError) as err:
        raise ModelLoadError(f"cannot download {uri}: {type(err).__name__}: {err}") from err
    try:
        return storage.read_pyfunc_dir(local, sha256)
    except storage.ModelFolderError as err:
        raise ModelCorruptError(f"cannot load {uri}: {err}") from err


def check_loads(name: str, version: str) -> None:
    """Download ``version`` afresh and unpickle it after checking its checksum (what serving
    and the forecast DAG will do): a version that does not load must not be promoted.

    Raises:
        ModelLoadError: it cannot be downloaded (ModelCorruptError: it does not load).
    """
    with tempfile.TemporaryDirectory(prefix="forecastflow-check-") as folder:
        load_version(name, version, cache=Path(folder))
    log.info("model %s: version %s downloads, matches its checksum and loads", name, version)


# Promotion --------------------------------------------------------------------------------

# What the registry answers when the model or the alias does not exist.
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def alias_version(name: str, alias: str) -> Any | None:
    """The model version behind ``alias``, or None (also when the model does not exist).

    Raises:
        MlflowException: the registry cannot answer (down, unreachable): not "no champion".
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = tracking.client()

    def lookup() -> Any | None:
        try:
            return mlflow_client.get_model_version_by_alias(name, alias)
        except MlflowException as err:
            if err.error_code in NOT_FOUND:
                return None
            raise

    return tracking.retry(lookup, "get alias")


# Two backtest scores closer than this (relative) are the same model re-scored: float rounding
# of one fit differs between processes (0.8388680807375001 vs 0.8388680807605006 seen).
NOISE = 1e-6


def _noise(target: float, noise: float = NOISE) -> float:
    """The smallest difference from ``target`` that is not float rounding."""
    return noise * max(abs(target), 1e-12)


def better(score: float, target: float, noise: float = NOISE) -> bool:
    """Whether ``score`` is lower than ``target`` by more than numerical noise."""
    if not math.isfinite(score):
        return False
    if not math.isfinite(target):
        return True
    return score < target - _noise(target, noise)


def _compare(score: float, target: float, what: str) -> tuple[bool, str]:
    if better(score, target):
        return True, f"challenger {score:.4f} < {what} {target:.4f}"
    if math.isfinite(score) and math.isfinite(target) and abs(score - target) <= _noise(
            target):
        return False, (f"challenger {score:.6g} ties {what} {target:.6g} (within numerical "
                       f"noise, relative {NOISE:g})")
    return False, f"challenger {score:.4f} >= {what} {target:.4f}"


def decide(score: float, baseline: float, champion_score: float | None, margin: float,
           first_must_beat_baseline: bool, force: bool = False) -> tuple[bool, list[str]]:
    """Whether a challenger with backtest ``score`` (lower is better) becomes champion: it must
    beat seasonal naive and ``champion_score x (1 - margin)`` by more than numerical noise."""
    beats_baseline, reason = _compare(score, baseline, "seasonal naive")
    reasons = [reason]
    if champion_score is None:
        ok = beats_baseline or not first_must_beat_baseline
        reasons.append("no champion yet" + ("" if ok else "; a first champion must beat "
                                            "seasonal naive"))
    else:
        beats_champion, reason = _compare(score, champion_score * (1.0 - margin),
                                          f"champion {champion_score:.4f} x (1 - margin "
                                          f"{margin})" if margin else "champion")
        reasons.append(reason)
        ok = beats_baseline and beats_champion
    if force and not ok:
        reasons.append("promotion forced by the run's force_promotion param")
        ok = True
    return ok, reasons


# What makes two registered versions the same model: same data, same trial, same code.
SAME_MODEL_TAGS = ("data_fingerprint", "family", "transform", "code_version", "horizon",
                   "max_horizon")


def unchanged_champion(name: str, tags: dict[str, str]) -> dict[str, str] | None:
    """The champion's version and why, when a challenger with ``tags`` would be the same
    model on the same data (nothing to register or promote); else None."""
    current = alias_version(name, CHAMPION)
    if current is None:
        return None
    known = current.tags
    if "unknown" in (known.get("code_version"), tags.get("code_version")):
        return None
    if any(known.get(key) != tags.get(key) for key in SAME_MODEL_TAGS):
        return None
    try:
        if json.loads(known.get("params", "null")) != json.loads(tags.get("params", "null")):
            return None
    except json.JSONDecodeError:
        return None
    return {"version": str(current.version), "reason": (
        f"champion v{current.version} was trained on the same data (fingerprint "
        f"{tags['data_fingerprint']}) with the same model ({tags['family']} "
        f"{tags.get('params')}, transform {tags['transform']}) and code {tags['code_version']}")}


def reject(name: str, version: str, reasons: list[str]) -> None:
    """Record on ``version`` why it was not promoted (its aliases stay as they are)."""
    mlflow_client = tracking.client()
    tracking.retry(lambda: mlflow_client.set_model_version_tag(
        name, version, "promotion", "not promoted: " + "; ".join(reasons)), "tag version")


def promote(name: str, version: str, reasons: list[str]) -> str | None:
    """Make ``version`` champion; the displaced champion keeps alias ``previous``."""
    mlflow_client = tracking.client()
    current = alias_version(name, CHAMPION)
    displaced = None
    if current is not None and str(current.version) != str(version):
        displaced = str(current.version)
        tracking.retry(lambda: mlflow_client.set_registered_model_alias(
            name, PREVIOUS, displaced), "set previous")
    tracking.retry(lambda: mlflow_client.set_registered_model_alias(name, CHAMPION, version),
                   "set champion")
    tracking.retry(lambda: mlflow_client.set_model_version_tag(
        name, version, "promotion", "promoted: " + "; ".join(reasons)), "tag version")
    return displaced


def rollback(name: str) -> tuple[str, str]:
    """Move ``champion`` back to ``previous``; returns (old champion, new champion)."""
    current = alias_version(name, CHAMPION)
    previous = alias_version(name, PREVIOUS)
    if previous is None:
        raise LookupError(f"model {name!r} has no 'previous' version to roll back to")
    mlflow_client = tracking.client()
    old = None if current is None else str(current.version)
    mlflow_client.set_registered_model_alias(name, CHAMPION, previous.version)
    mlflow_client.delete_registered_model_alias(name, PREVIOUS)
    if old:
        mlflow_client.set_model_version_tag(name, old, "rolled_back", "true")
    return old or "-", str(previous.version)
