"""The one place that writes files: atomic, re-runnable, readable by other users."""

from __future__ import annotations

import os
import stat

import pandas as pd

from forecastflow import storage


def test_writes_are_atomic_overwrites_with_umask_permissions(tmp_path):
    path = tmp_path / "deep" / "summary.json"
    storage.write_json({"a": 1}, path)
    storage.write_json({"a": 2}, path)  # a re-run overwrites its own output
    assert storage.read_json(path) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]  # no temp files left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_frames_and_models_round_trip(tmp_path):
    frame = pd.DataFrame({"y": [1.0, 2.0]}, index=pd.date_range("2020-01-01", periods=2))
    pd.testing.assert_frame_equal(storage.read_frame(storage.write_frame(frame, tmp_path / "f")),
                                  frame, check_freq=False)
    assert storage.read_model(storage.write_model({"k": [1, 2]}, tmp_path / "m.pkl")) == {
        "k": [1, 2]}


def test_state_dir_follows_forecastflow_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECASTFLOW_HOME", str(tmp_path / "state"))
    assert storage.state_dir() == tmp_path / "state"


def test_models_pickled_by_the_flat_package_still_load(tmp_path, monkeypatch):
    """Versions registered by 0.1 pickled ``forecastflow.preprocess.ForecastPipeline``."""
    import pickle
    import sys

    from forecastflow.models import transforms
    from forecastflow.models.naive import Naive
    from forecastflow.storage import read_model

    model = transforms.ForecastPipeline(Naive(), "log")
    monkeypatch.setitem(sys.modules, "forecastflow.preprocess", transforms)
    monkeypatch.setattr(transforms.ForecastPipeline, "__module__", "forecastflow.preprocess")
    data = pickle.dumps(model)
    assert b"forecastflow.preprocess" in data
    monkeypatch.undo()
    path = tmp_path / "old.pkl"
    path.write_bytes(data)
    loaded = read_model(path)
    assert type(loaded) is transforms.ForecastPipeline and loaded.transform == "log"
