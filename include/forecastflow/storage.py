"""All file I/O of the library: the local state folder, frames, JSON and model blobs.

Paths are plain local paths in the embedded default; callers pass references (paths), not data.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where frames are read or written (serving starts fast)
    import pandas as pd


def state_dir() -> Path:
    """Local state (MLflow store, artifacts, Airflow home): ``FORECASTFLOW_HOME`` or
    ``.forecastflow`` in the working directory."""
    return Path(os.environ.get("FORECASTFLOW_HOME", ".forecastflow")).expanduser().resolve()


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write to a sibling temp file, then rename: readers never see half a file and a
    re-run overwrites its own output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Store a frame as Parquet (index kept)."""
    path = Path(path)
    return _atomic_write(path, frame.to_parquet())


def read_frame(path: str | os.PathLike[str], filters: list[tuple] | None = None,
               ) -> pd.DataFrame:
    """A stored frame; ``filters`` (pyarrow's ``[(column, op, value)]``) keep matching rows."""
    import pandas as pd

    return pd.read_parquet(Path(path), filters=filters)


def write_json(obj: Any, path: str | os.PathLike[str], compact: bool = False) -> Path:
    """Store ``obj`` as JSON (``compact``: one line, for large machine-read files)."""
    text = (json.dumps(obj, separators=(",", ":"), default=str) if compact
            else json.dumps(obj, indent=2, sort_keys=True, default=str))
    return _atomic_write(Path(path), text.encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def write_model(model: Any, path: str | os.PathLike[str]) -> Path:
    """Pickle a fitted forecaster (models keep a compact state, see ``models.base``)."""
    return _atomic_write(Path(path), pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


# Where classes pickled by ForecastFlow 0.1 (one flat package) live now (see CHANGELOG.md).
MOVED_MODULES = {
    "forecastflow.preprocess": "forecastflow.models.transforms",
    "forecastflow.data": "forecastflow.data.series",
    "forecastflow.config": "forecastflow.data.problem",
}


class _Unpickler(pickle.Unpickler):
    """Reads models saved before the package was split into layers."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED_MODULES.get(module, module), name)


def read_model(path: str | os.PathLike[str]) -> Any:
    with Path(path).open("rb") as handle:
        return _Unpickler(handle).load()


class ModelFolderError(ValueError):
    """A model folder that cannot be read back (missing file, corrupt pickle or YAML, a class
    that no longer exists); the message names the folder and the cause."""


def _pyfunc_artifacts(path: Path) -> dict[str, Any]:
    """The ``python_function`` artifacts a model folder's ``MLmodel`` names."""
    import yaml

    return yaml.safe_load((path / "MLmodel").read_text())["flavors"]["python_function"][
        "artifacts"]


# The model version tag holding the model pickle's SHA-256, recorded at registration and
# checked before a downloaded or cached copy is unpickled (docs/security.md).
SHA256_TAG = "model_sha256"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_pyfunc_dir(path: str | os.PathLike[str], sha256: str | None = None
                    ) -> tuple[Any, dict[str, Any]]:
    """The fitted forecaster and metadata inside a logged ForecastFlow pyfunc model folder
    (its ``MLmodel`` names the artifacts), without importing MLflow. With ``sha256`` (the
    checksum recorded at registration) the model file is checked before it is unpickled.

    Raises:
        ModelFolderError: whatever makes the folder unreadable, or a checksum mismatch.
    """
    import yaml

    path = Path(path)
    try:
        artifacts = _pyfunc_artifacts(path)
        model_file = path / artifacts["model"]["path"]
        if sha256 is not None and (found := sha256_of(model_file)) != sha256:
            raise ModelFolderError(f"model folder {path}: checksum mismatch, the model file "
                                   f"has SHA-256 {found[:16]}..., the registry recorded "
                                   f"{sha256[:16]}... (corrupted or replaced): not unpickled")
        model = read_model(model_file)
        meta = json.loads((path / artifacts["meta"]["path"]).read_text())
    except ModelFolderError:
        raise
    except (OSError, KeyError, TypeError, ValueError, EOFError, AttributeError, ImportError,
            pickle.UnpicklingError, yaml.YAMLError) as err:
        raise ModelFolderError(f"model folder {path} is unreadable: {type(err).__name__}: "
                               f"{err}") from err
    if not hasattr(model, "predict") or not hasattr(model, "last_"):
        raise ModelFolderError(f"model folder {path}: artifact 'model' is a "
                               f"{type(model).__name__}, not a fitted forecaster")
    return model, meta


def read_pyfunc_card(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The serving card logged with a pyfunc model folder (see
    ``contract.serving_card``); None when the model was logged without one."""
    import yaml

    path = Path(path)
    try:
        card = _pyfunc_artifacts(path).get("card")
        return None if card is None else read_json(path / card["path"])
    except (OSError, KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as err:
        raise ModelFolderError(f"model folder {path}: serving card unreadable: "
                               f"{type(err).__name__}: {err}") from err
