"""The data profile: per series and target, span, length and summary statistics."""

from __future__ import annotations

from typing import Any

import pandas as pd


def data_profile(data: Any) -> pd.DataFrame:
    """Per series and target: span, length and summary statistics."""
    rows = []
    for sid, one in data.iter_series():
        for col in one.targets:
            values = one.y[col]
            rows.append({"series_id": sid or "-", "target": col,
                         "start": values.index.min().date(), "end": values.index.max().date(),
                         "length": len(values), "mean": values.mean(), "std": values.std(),
                         "min": values.min(), "max": values.max()})
    return pd.DataFrame(rows).set_index(["series_id", "target"])
