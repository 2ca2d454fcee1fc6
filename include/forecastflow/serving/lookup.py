"""Read-only champion lookup without the MLflow client, for a serving process's first start.

Importing MLflow and opening its stores costs a serving process 2-3 s before it can answer.
Resolving one alias and fetching one model folder does not need that:

- ``http(s)://`` tracking servers: MLflow's public REST API (``registered-models/alias``,
  ``model-versions/get-download-uri``) and, for proxied artifacts (``mlflow-artifacts:``),
  the server's artifact endpoints. ``MLFLOW_TRACKING_TOKEN`` or
  ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` are sent as the client would.
- ``sqlite:///`` embedded stores: the registry's alias and version tables, opened read-only.

Anything else (another scheme, an artifact store such as ``s3://``, a schema this code does not
recognise) raises :class:`LookupUnavailableError` and the caller uses
:mod:`forecastflow.lifecycle.registry`.
The server's registry poller re-checks every answer through the MLflow client seconds later.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT = 10.0  # seconds per HTTP call


class LookupUnavailableError(RuntimeError):
    """The fast path cannot answer this; use the MLflow client (the message says why)."""


@dataclass(frozen=True)
class VersionRef:
    """A registered model version: where its artifacts are and its tags."""

    name: str
    version: str
    artifact_uri: str
    tags: dict[str, str] = field(default_factory=dict)


def aliased(name: str, alias: str, tracking_uri: str) -> VersionRef | None:
    """The version behind ``alias`` of model ``name`` (None: no such alias or model)."""
    if tracking_uri.startswith("sqlite:///"):
        return _sqlite_alias(Path(tracking_uri.removeprefix("sqlite:///")), name, alias)
    if tracking_uri.startswith(("http://", "https://")):
        return _rest_alias(tracking_uri.rstrip("/"), name, alias)
    raise LookupUnavailableError(f"no fast lookup for tracking URI scheme of {tracking_uri!r}")


def fetch(ref: VersionRef, target: Path, tracking_uri: str) -> Path:
    """Copy the version's artifact folder to ``target`` (complete or not at all)."""
    parsed = urllib.parse.urlparse(ref.artifact_uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{ref.version}.", dir=target.parent))
    try:
        if parsed.scheme == "file":
            source = Path(urllib.parse.unquote(parsed.path))
            if not (source / "MLmodel").is_file():
                raise LookupUnavailableError(f"{ref.artifact_uri} has no MLmodel file here")
            shutil.copytree(source, partial, dirs_exist_ok=True)
        elif parsed.scheme == "mlflow-artifacts" and tracking_uri.startswith("http"):
            _rest_download(tracking_uri.rstrip("/"), parsed.path.lstrip("/"), partial)
        else:
            raise LookupUnavailableError(f"no fast download for {ref.artifact_uri!r}")
        try:
            os.replace(partial, target)
        except OSError:  # a copy is already there (another process): keep it
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


# SQLite -----------------------------------------------------------------------------------

def _sqlite_alias(path: Path, name: str, alias: str) -> VersionRef | None:
    if not path.is_file():
        raise LookupUnavailableError(f"no MLflow store at {path}")
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0) as db:
            rows = db.execute(
                "SELECT v.version, v.storage_location, v.status FROM registered_model_aliases a "
                "JOIN model_versions v ON v.name = a.name AND v.version = a.version "
                "WHERE a.name = ? AND a.alias = ?", (name, alias)).fetchall()
            if len(rows) != 1:
                if rows:
                    raise LookupUnavailableError(f"{len(rows)} rows for {name}@{alias}")
                return None
            version, location, status = rows[0]
            tags = dict(db.execute("SELECT key, value FROM model_version_tags WHERE name = ? "
                                   "AND version = ?", (name, version)).fetchall())
    except sqlite3.Error as err:  # locked, or a schema this code does not know
        raise LookupUnavailableError(f"MLflow store {path}: {type(err).__name__}: {err}") from err
    if status != "READY" or not location:
        raise LookupUnavailableError(f"{name} v{version} is {status} at {location!r}")
    return VersionRef(name, str(version), str(location), tags)


# REST -------------------------------------------------------------------------------------

def _headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers=_headers())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        raise LookupUnavailableError(f"GET {url}: HTTP {err.code}") from err
    except (urllib.error.URLError, OSError) as err:
        raise LookupUnavailableError(f"GET {url}: {err}") from err


def _get_json(base: str, endpoint: str, **params: str) -> dict[str, Any] | None:
    """JSON of an MLflow REST call; None when the model or alias does not exist."""
    url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        return json.loads(_get(url))
    except LookupUnavailableError as err:
        cause = err.__cause__
        if isinstance(cause, urllib.error.HTTPError) and _missing(cause):
            return None
        raise
    except ValueError as err:
        raise LookupUnavailableError(f"GET {url}: not JSON: {err}") from err


def _missing(err: urllib.error.HTTPError) -> bool:
    """MLflow's answer for an unknown model (RESOURCE_DOES_NOT_EXIST) or alias
    (INVALID_PARAMETER_VALUE, "... alias ... not found")."""
    try:
        body = json.loads(err.read() or b"{}")
    except ValueError:
        return False
    code, message = body.get("error_code"), str(body.get("message", ""))
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in message and "not found" in message)


def _rest_alias(base: str, name: str, alias: str) -> VersionRef | None:
    found = _get_json(base, "registered-models/alias", name=name, alias=alias)
    if found is None:
        return None
    try:
        mv = found["model_version"]
        version = str(mv["version"])
        tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    except (KeyError, TypeError) as err:
        raise LookupUnavailableError(f"unexpected alias answer for {name}@{alias}: {err}") from err
    where = _get_json(base, "model-versions/get-download-uri", name=name, version=version)
    if not where or "artifact_uri" not in where:
        raise LookupUnavailableError(f"no download URI for {name} v{version}")
    return VersionRef(name, version, str(where["artifact_uri"]), tags)


def _rest_download(base: str, path: str, into: Path) -> None:
    """Download the proxied artifact folder ``path`` (recursively) into ``into``."""
    listing = json.loads(_get(f"{base}/api/2.0/mlflow-artifacts/artifacts?"
                              f"{urllib.parse.urlencode({'path': path})}") or b"{}")
    for item in listing.get("files", []):
        rel = item["path"]
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise LookupUnavailableError(f"refusing artifact path {rel!r}")
        if item.get("is_dir"):
            (into / rel).mkdir(parents=True, exist_ok=True)
            _rest_download(base, f"{path}/{rel}", into / rel)
        else:
            data = _get(f"{base}/api/2.0/mlflow-artifacts/artifacts/"
                        f"{urllib.parse.quote(f'{path}/{rel}')}")
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            (into / rel).write_bytes(data)
