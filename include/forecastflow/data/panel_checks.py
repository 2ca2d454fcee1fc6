"""The panel's clean series, found with array operations over all rows at once.

A series is clean when it needs no repair and breaks no rule: its timestamps are exactly its
regular grid up to its end (no duplicate, gap or off-grid date; the panel's end unless series may
end earlier, ``own_end``), every value is
finite, every target varies (and is positive when a log transform is declared), and it is long
enough for the backtest. Validation takes those as they are and checks only the others one by
one, which is where its messages come from; on a clean panel of thousands of series that
turns a per-series loop into a few passes over arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES


def clean_series(values: pd.DataFrame, columns: list[str], n_targets: int, freq: str,
                 end: pd.Timestamp, need: int, positive: bool, own_end: bool = False,
                 ) -> tuple[pd.DataFrame, list[str]]:
    """``(rows of the clean series indexed (series_id, date), ids of the other series)``.

    ``values``: one row per observation, a ``DatetimeIndex`` and a ``series_id`` column;
    ``columns``: targets first (``n_targets`` of them), then exogenous inputs."""
    codes, uniques = pd.factorize(values[SERIES], sort=True)
    uniques = np.asarray(uniques, dtype=object)
    dates = values.index.to_numpy()
    order = np.lexsort((dates, codes))
    codes, dates = codes[order], dates[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    counts = np.diff(np.r_[starts, len(codes)])
    data = values[columns].to_numpy(dtype=float)[order]
    broken_rows = (~np.isfinite(data)).any(axis=1)  # a missing or infinite value anywhere
    ok = (np.add.reduceat(broken_rows, starts) == 0) & (counts >= need)
    for j in range(n_targets):
        low = np.minimum.reduceat(data[:, j], starts)
        ok &= np.maximum.reduceat(data[:, j], starts) > low
        if positive:
            ok &= low > 0
    lasts = dates[starts + counts - 1]
    if not own_end:
        ok &= lasts == np.datetime64(end).astype(dates.dtype)
    ok &= _on_grid(dates, starts, counts, ok, freq, lasts)
    rows = np.repeat(ok, counts)
    day_codes, days = pd.factorize(dates[rows], sort=True)
    index = pd.MultiIndex(levels=[pd.Index(uniques[ok], dtype="str"), pd.DatetimeIndex(days)],
                          codes=[np.repeat(np.arange(int(ok.sum())), counts[ok]), day_codes],
                          names=[SERIES, DATE], verify_integrity=False)
    frame = pd.DataFrame(data[rows], columns=columns, index=index)
    return frame, [str(sid) for sid in uniques[~ok]]


def _on_grid(dates: np.ndarray, starts: np.ndarray, counts: np.ndarray, ok: np.ndarray,
             freq: str, lasts: np.ndarray) -> np.ndarray:
    """Per series (only those still ``ok`` are looked at): timestamps equal to
    ``date_range(first, last, freq)``. One grid per distinct (start, end) pair."""
    result = np.zeros(len(starts), dtype=bool)
    firsts = dates[starts]
    pairs = {(a, b) for a, b in zip(firsts[ok], lasts[ok], strict=True)}
    for first, last in pairs:
        grid = pd.date_range(pd.Timestamp(first), pd.Timestamp(last), freq=freq).to_numpy()
        grid = grid.astype(dates.dtype)
        for k in np.flatnonzero(ok & (firsts == first) & (lasts == last)):
            result[k] = counts[k] == len(grid) and np.array_equal(
                dates[starts[k]:starts[k] + counts[k]], grid)
    return result
