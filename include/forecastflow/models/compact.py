"""Per-series bookkeeping that pickles as arrays, not as one object per series.

A panel model keeps, per series, its last date (``last_``) and, for an ensemble, the members
it combines (``choice_``). In memory these are dicts (lookups by series id); pickled, a dict
of 10,000 Timestamps takes 370 kB and an ensemble holds several. These dict subclasses pickle
as the series ids and small arrays (codes into the distinct end dates; a table of member
indices). The ids are interned while pickling, so the equal
id lists of an ensemble, its members and their wrappers are stored once per model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

_INTERNED: OrderedDict[tuple[str, ...], tuple[str, ...]] = OrderedDict()
_INTERN_SIZE = 8
_LOCK = threading.Lock()


def _interned(ids: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object per distinct id list among the last few (pickle stores an object it
    has seen once, by reference)."""
    with _LOCK:
        found = _INTERNED.get(ids)
        if found is None:
            _INTERNED[ids] = found = ids
            if len(_INTERNED) > _INTERN_SIZE:
                _INTERNED.popitem(last=False)
        else:
            _INTERNED.move_to_end(ids)
        return found


class SeriesEnds(dict):
    """Series id -> last date (a Timestamp), in the fitted series order."""

    def __reduce__(self) -> tuple[Any, ...]:
        values = list(self.values())
        units = {getattr(v, "unit", None) for v in values}
        if len(units) != 1 or None in units or any(v.tz is not None for v in values):
            return (SeriesEnds, (dict(self),))  # unusual dates: pickled as they are
        unit = units.pop()
        # Series of one panel share few end dates: each is a small code into them.
        codes, dates = pd.factorize(pd.DatetimeIndex(values).as_unit(unit))
        return (_ends, (_interned(tuple(self)), unit, dates.asi8, _smallest(codes)))


def _smallest(codes: np.ndarray) -> np.ndarray:
    top = int(codes.max(initial=0))
    return codes.astype(np.int16 if top < 2**15 else np.int32)


def _ends(ids: tuple[str, ...], unit: str, dates: np.ndarray, codes: np.ndarray,
          ) -> SeriesEnds:
    table = pd.DatetimeIndex(dates.view(f"M8[{unit}]"))
    return SeriesEnds(zip(ids, table.take(codes.astype(np.intp)), strict=True))


class SeriesChoices(dict):
    """Series id -> the indices of the ensemble members it combines, best first."""

    def __reduce__(self) -> tuple[Any, ...]:
        width = max((len(c) for c in self.values()), default=0)
        table = np.full((len(self), width), -1, dtype=np.int16)
        for row, chosen in enumerate(self.values()):
            table[row, :len(chosen)] = chosen
        return (_choices, (_interned(tuple(self)), table))


def _choices(ids: tuple[str, ...], table: np.ndarray) -> SeriesChoices:
    rows = table.tolist()
    return SeriesChoices((sid, [i for i in row if i >= 0])
                         for sid, row in zip(ids, rows, strict=True))
