"""Per-series model choice and combination: the ``ensemble`` family.

For every series of a panel (or the one series), each candidate model (a member: family,
parameters, transform) is validated on the last ``windows`` origins of the training data,
``horizon`` periods each, origins counted from that series' own end. Members are ranked per
series by their mean absolute error there (the MASE ranking: the scale is the series' own).

- ``combination: best`` forecasts each series with its best member;
- ``mean`` / ``median`` combine the ``top_k`` best members' forecasts and bounds (``top_k``
  None: every member).

Then every member that some series uses is fitted once on all the data of those series. The
fitted state is the per-series choice (member indices), the validation scores and the fitted
members, so the pyfunc and the REST API serve it like any model.

Intervals are calibrated (``calibrate``): on the validation forecasts of the combination,
the factor that makes the half-widths cover the nominal share of the errors is found per
step ahead (pooled over series), and applied to the final forecasts' half-widths, shrunk
toward the members' own intervals: ``factor ** calibration_weight``. The validation windows
are the periods just before the forecast, and periods differ: on M1 and Tourism they needed
factors of 1.4-1.6 while the held-out periods needed 1.1-1.3, so full calibration (weight 1)
over-covered (0.93-0.95 for 0.90) and the members' own intervals under-covered (0.84-0.88);
the geometric middle (0.5, chosen on those three panels) covered 0.89-0.92.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.models.base import (
    FitError,
    Forecast,
    Forecaster,
    ModelError,
)
from forecastflow.models.calibrated import half_width_ratios, step_factors
from forecastflow.models.compact import SeriesChoices

log = logging.getLogger(__name__)

COMBINATIONS = ("best", "mean", "median")
SINGLE = "_"  # the id of the one series when the data are not a panel


def default_members(season_length: int | None) -> list[dict[str, Any]]:
    """ETS and Theta (automatic), and the naive baseline that suits the season."""
    baseline = "seasonal_naive" if (season_length or 1) > 1 else "naive"
    return [{"family": "ets"}, {"family": "theta"}, {"family": baseline}]


class Ensemble(Forecaster):
    """Per series, the mean (default) or median of the ``top_k`` best members, or the best
    one (``combination: best``)."""

    family = "ensemble"
    capabilities = {"multivariate": False, "exogenous": True, "panel": True,
                    "intervals": True}

    def __init__(self, members: list[dict[str, Any]] | None = None, combination: str = "mean",
                 top_k: int | None = 2, windows: int = 2, horizon: int | None = None,
                 calibrate: bool = True, calibration_weight: float = 0.5,
                 season_length: int | None = None, coverage: float = 0.9) -> None:
        self.members = members
        self.combination = combination
        self.top_k = top_k
        self.windows = windows
        self.horizon = horizon
        self.calibrate = calibrate
        self.calibration_weight = calibration_weight
        self.season_length = season_length
        self.coverage = coverage

    # Members -----------------------------------------------------------------------------

    def member_specs(self) -> list[dict[str, Any]]:
        specs = self.members if self.members else default_members(self.season_length)
        out = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict) or "family" not in spec:
                raise ModelError(f"ensemble member {i} must be a mapping with a family, "
                                 f"got {spec!r}")
            unknown = sorted(set(spec) - {"family", "params", "transform"})
            if unknown:
                raise ModelError(f"ensemble member {i} ({spec['family']}) has unknown keys "
                                 f"{unknown}; allowed: family, params, transform")
            if spec["family"] == self.family:
                raise ModelError("an ensemble cannot have an ensemble member")
            out.append({"family": spec["family"], "params": dict(spec.get("params") or {}),
                        "transform": spec.get("transform") or "none"})
        return out

    def labels(self) -> list[str]:
        """Readable member names: the family, its non-default parameters and transform."""
        names = []
        for spec in self.member_specs():
            params = " ".join(f"{k}={v}" for k, v in sorted(spec["params"].items()))
            transform = "" if spec["transform"] == "none" else spec["transform"]
            names.append(" ".join(p for p in (spec["family"], params, transform) if p))
        return names

    def _build(self, spec: dict[str, Any]) -> Forecaster:
        from forecastflow.models import build_model
        from forecastflow.models.transforms import ForecastPipeline

        model = build_model(spec["family"], spec["params"], coverage=self.coverage,
                            season_length=self.season_length)
        return ForecastPipeline(model, spec["transform"])

    def _check(self) -> None:
        if self.combination not in COMBINATIONS:
            raise ModelError(f"ensemble combination must be one of {list(COMBINATIONS)}, got "
                             f"{self.combination!r}")
        for spec in self.member_specs():
            self._build(spec)  # unknown families and parameters are refused by name
        n = len(self.member_specs())
        if self.top_k is not None and not 1 <= int(self.top_k) <= n:
            raise ModelError(f"ensemble top_k must be between 1 and the {n} member(s), got "
                             f"{self.top_k!r}")
        if int(self.windows) < 1:
            raise ModelError(f"ensemble windows must be >= 1, got {self.windows!r}")
        if not 0.0 <= float(self.calibration_weight) <= 1.0:
            raise ModelError(f"ensemble calibration_weight must be in [0, 1], got "
                             f"{self.calibration_weight!r}")

    # Fitting -----------------------------------------------------------------------------

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self._check()
        self.panel_ = isinstance(y.index, pd.MultiIndex)
        start = time.perf_counter()
        from forecastflow.models.transforms import str_ids

        specs = self.member_specs()
        panel = str_ids(_as_panel(y))
        Xp = None if X is None else str_ids(_as_panel(X))
        horizon = int(self.horizon or max(self.season_length or 1, 1))
        errors, forecasts = self._validate(specs, panel, Xp, horizon)
        self.scores_ = errors  # series x member: mean absolute validation error
        self.validation_ = forecasts  # not pickled (see __getstate__)
        self._choose(horizon)
        self.members_ = {}
        for i in sorted({i for chosen in self.choice_.values() for i in chosen}):
            sids = self.users(i)
            self.members_[i] = self._build(specs[i]).fit(*self._restore(panel, Xp, sids))
        self.fit_info_ = {"converged": True, "warnings": [],
                          "wins": self.wins(), "seconds": time.perf_counter() - start}
        log.info("ensemble: %d series, %s of %s; wins %s", len(self.choice_), self.combination,
                 self.labels(), self.wins())

    def _choose(self, horizon: int) -> None:
        """Each series' ``top_k`` members by validation error; the interval factors."""
        errors = self.scores_.to_numpy()
        ranked = np.argsort(np.where(np.isfinite(errors), errors, np.inf), axis=1,
                            kind="stable")
        k = 1 if self.combination == "best" else (  # best: top_k is moot; None: all
            int(self.top_k) if self.top_k is not None else errors.shape[1])
        self.choice_ = SeriesChoices((sid, row) for sid, row in zip(
            self.scores_.index, ranked[:, :k].tolist(), strict=True))
        self.factors_ = (self._calibration(self.validation_, horizon) if self.calibrate
                         else None)

    def variant(self, combination: str, top_k: int) -> Ensemble:
        """This fitted ensemble with another combination, from the same validation (no
        refit): every member the new choice needs must have been fitted (fit with
        ``top_k`` = all members to compare them all). Only before pickling."""
        if not hasattr(self, "validation_"):
            raise ModelError("ensemble.variant needs the validation forecasts of a fit in "
                             "this process")
        new = self.clone()
        new.combination, new.top_k = combination, top_k
        new._check()
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k.endswith("_")})
        new._choose(len(self.factors_ or []) or int(self.horizon or 1))
        missing = sorted({i for c in new.choice_.values() for i in c} - set(self.members_))
        if missing:
            raise ModelError(f"ensemble.variant: members {missing} were not fitted")
        return new

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("validation_", None)  # large, and only needed while choosing
        return state

    def _validate(self, specs: list[dict[str, Any]], y: pd.DataFrame, X: pd.DataFrame | None,
                  horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Mean absolute error per series and member on the validation windows, and every
        validation forecast (window, member, series, step, actual, mean, lower, upper)."""
        sids = pd.Index(y.index.get_level_values(SERIES).unique())
        position = y.groupby(level=SERIES, sort=False).cumcount().to_numpy()
        length = y.groupby(level=SERIES, sort=False)[y.columns[0]].transform("size").to_numpy()
        sums = np.zeros((len(sids), len(specs)))
        counts = np.zeros((len(sids), len(specs)))
        rows = []
        min_train = 2 * (self.season_length or 1) + 3
        fitted: dict[int, list[tuple[Forecaster, frozenset[str]]]] = {}
        for w in range(int(self.windows), 0, -1):
            cut = length - horizon * w  # each series' own origin
            train = (position < cut) & (cut >= min_train)
            test = (position >= cut) & (position < cut + horizon) & (cut >= min_train)
            if not train.any():
                continue
            actual = y[test].iloc[:, 0]
            members = frozenset(y[train].index.get_level_values(SERIES))
            for i, spec in enumerate(specs):
                try:
                    fitted[i] = self._window_models(spec, fitted.get(i, []), y, X, train,
                                                    members)
                    frame = pd.concat([_frame(model.predict(
                        horizon, None if X is None or not model.exog_ else X[test]))
                        for model, _ in fitted[i]])
                except (FitError, ModelError, np.linalg.LinAlgError) as err:
                    log.warning("ensemble member %s failed on validation window %d: %s",
                                self.labels()[i], w, err)
                    fitted.pop(i, None)
                    continue
                frame = frame.join(actual.rename("actual"), how="inner")
                frame = frame[np.isfinite(frame.to_numpy()).all(axis=1)]
                err = (frame["actual"] - frame["mean"]).abs().groupby(level=SERIES).agg(
                    ["sum", "size"])
                at = sids.get_indexer(err.index)
                sums[at, i] += err["sum"].to_numpy()
                counts[at, i] += err["size"].to_numpy()
                frame = frame.assign(window=w, member=i,
                                     step=frame.groupby(level=SERIES).cumcount() + 1)
                rows.append(frame.reset_index())
        with np.errstate(invalid="ignore", divide="ignore"):
            errors = pd.DataFrame(np.where(counts > 0, sums / counts, np.nan), index=sids,
                                  columns=self.labels())
        forecasts = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        return errors, forecasts

    def _window_models(self, spec: dict[str, Any],
                       previous: list[tuple[Forecaster, frozenset[str]]], y: pd.DataFrame,
                       X: pd.DataFrame | None, train: np.ndarray, series: frozenset[str],
                       ) -> list[tuple[Forecaster, frozenset[str]]]:
        """The member for one validation window, as models and the series each forecasts:
        the previous window's fits moved to the new origins (same parameters, no
        re-estimation) where their series are all in this window, and one fit on this
        window's training rows for the series they leave (those too short for the earlier
        window, or everything when there is no previous fit)."""
        rows = y[train]
        sids = rows.index.get_level_values(SERIES)
        out, covered = [], frozenset()
        for model, members in previous:
            if members <= series:
                try:
                    out.append((model.update(*self._rows(rows, X, train, sids, members)),
                                members))
                    covered |= members
                except ModelError:
                    continue  # a member that cannot move its origin is refitted below
        rest = series - covered
        if rest:
            out.append((self._build(spec).fit(*self._rows(rows, X, train, sids, rest)), rest))
        return out

    def _rows(self, rows: pd.DataFrame, X: pd.DataFrame | None, train: np.ndarray,
              sids: pd.Index, members: frozenset[str],
              ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The training rows of ``members`` (y and X), shaped as the data were given."""
        keep = np.asarray(sids.isin(list(members)))
        return (_level_freq(rows[keep], self.freq_),
                None if X is None else _level_freq(X[train][keep], self.freq_))

    def _calibration(self, forecasts: pd.DataFrame, horizon: int) -> list[float] | None:
        """Per step, the factor on the half-widths that covers ``coverage`` of the
        validation errors of the combined forecasts (pooled over series and windows), to
        the power ``calibration_weight``."""
        if forecasts.empty:
            return None
        chosen = pd.DataFrame([(sid, i) for sid, members in self.choice_.items()
                               for i in members], columns=[SERIES, "member"])
        picked = forecasts.merge(chosen, on=[SERIES, "member"])
        how = "median" if self.combination == "median" else "mean"
        combined = picked.groupby([SERIES, "window", "step"])[
            ["actual", "mean", "lower", "upper"]].agg(
            {"actual": "first", "mean": how, "lower": how, "upper": how}).reset_index()
        factors = step_factors(half_width_ratios(combined, mean="mean"), self.coverage,
                               horizon)
        if factors is None:
            return None
        return [f ** float(self.calibration_weight) for f in factors]

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        from forecastflow.models.transforms import str_ids

        panel = str_ids(_as_panel(y))
        Xp = None if X is None else str_ids(_as_panel(X))
        self.members_ = {i: m.update(*self._restore(panel, Xp, self.users(i)))
                         for i, m in self.members_.items()}

    def users(self, member: int) -> list[str]:
        """The series that member ``member`` forecasts."""
        return [sid for sid, chosen in self.choice_.items() if member in chosen]

    def _restore(self, panel: pd.DataFrame, X: pd.DataFrame | None, sids: list[str],
                 ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The rows of series ``sids``, shaped as the data were given (panel or one series)."""
        if not self.panel_:
            return (_level_freq(panel, self.freq_),
                    None if X is None else _level_freq(X, self.freq_))
        keep = panel.index.get_level_values(SERIES).isin(sids)
        return panel[keep], None if X is None else X[keep]

    # Forecasting -------------------------------------------------------------------------

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "members_"):
            raise ModelError("ensemble: call fit before predict")
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ModelError(f"horizon must be a positive integer, got {horizon!r}")
        Xf = self._check_future_exog(int(horizon), X, self.forecast_index(int(horizon)))
        Xp = None if Xf is None else _as_panel(Xf) if self.panel_ else Xf
        parts = {}
        for i, model in self.members_.items():
            future = None
            if Xp is not None and model.exog_:
                future = Xp
                if self.panel_:
                    keep = Xp.index.get_level_values(SERIES).isin(self.users(i))
                    future = Xp[keep]
            fc = model.predict(int(horizon), future)
            parts[i] = {key: _as_panel(getattr(fc, key)).iloc[:, 0]
                        for key in ("mean", "lower", "upper")}
        return self._combine(parts, int(horizon))

    def _combine(self, parts: dict[int, dict[str, pd.Series]], horizon: int) -> Forecast:
        index = self.forecast_index(horizon)
        panel_index = index if self.panel_ else pd.MultiIndex.from_product(
            [[SINGLE], index], names=[SERIES, DATE])
        sids = panel_index.get_level_values(SERIES)
        out = {}
        k = max(len(chosen) for chosen in self.choice_.values())
        for key in ("mean", "lower", "upper"):
            stack = np.full((len(panel_index), k), np.nan)
            for rank in range(k):
                member = np.array([self.choice_[s][rank] if rank < len(self.choice_[s])
                                   else -1 for s in sids])
                for i, values in parts.items():
                    rows = member == i
                    if rows.any():
                        stack[rows, rank] = values[key].reindex(panel_index[rows]).to_numpy()
            out[key] = (np.nanmedian(stack, axis=1) if self.combination == "median"
                        else np.nanmean(stack, axis=1))
        mean, lower, upper = out["mean"], out["lower"], out["upper"]
        if self.factors_:
            steps = np.asarray(pd.Series(sids).groupby(sids).cumcount())
            factor = np.asarray(self.factors_)[np.minimum(steps, len(self.factors_) - 1)]
            lower = mean - factor * np.maximum(mean - lower, 0.0)
            upper = mean + factor * np.maximum(upper - mean, 0.0)
        frames = [pd.DataFrame(a[:, None], index=index, columns=self.targets_)
                  for a in (mean, lower, upper)]
        return Forecast(*frames, coverage=self.coverage)

    # Reporting ---------------------------------------------------------------------------

    def choice_table(self) -> pd.DataFrame:
        """One row per series: the members used (best first), the winner's family and the
        validation error of every member."""
        labels, specs = self.labels(), self.member_specs()
        table = self.scores_.round(6).add_prefix("mae: ")
        table.insert(0, "family", [specs[self.choice_[s][0]]["family"] for s in table.index])
        table.insert(0, "members", [" + ".join(labels[i] for i in self.choice_[s])
                                    for s in table.index])
        return table.rename_axis(SERIES).reset_index()

    def wins(self) -> dict[str, int]:
        """How many series each member family forecasts (as the best, or top, member)."""
        specs = self.member_specs()
        families = [specs[chosen[0]]["family"] for chosen in self.choice_.values()]
        return {f: families.count(f) for f in sorted(set(families))}


def _frame(fc: Forecast) -> pd.DataFrame:
    """A forecast's first target as mean, lower and upper columns on a panel index."""
    return pd.DataFrame({key: _as_panel(getattr(fc, key)).iloc[:, 0]
                         for key in ("mean", "lower", "upper")})


def _as_panel(frame: pd.DataFrame) -> pd.DataFrame:
    """A panel view: one series keeps its dates under the series id ``_``."""
    if isinstance(frame.index, pd.MultiIndex):
        return frame
    out = frame.copy()
    out.index = pd.MultiIndex.from_product([[SINGLE], frame.index], names=[SERIES, DATE])
    return out


def _level_freq(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Back to a single series (with its frequency) when the panel view holds only ``_``."""
    if set(frame.index.get_level_values(SERIES)) != {SINGLE}:
        return frame
    out = frame.droplevel(SERIES)
    out.index = pd.DatetimeIndex(out.index, freq=freq, name=DATE)
    return out

