"""Wrappers that make single-series models handle panels and several targets, by fitting
one copy per series (``PerSeries``) or per target column (``PerColumn``)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from forecastflow.data.series import DATE, SERIES
from forecastflow.models.base import FitError, Forecast, Forecaster, ModelError


class PerColumn(Forecaster):
    """One clone of ``model`` per target column (for univariate models)."""

    family = "per_column"

    def __init__(self, model: Forecaster) -> None:
        self.model = model

    @property
    def capabilities(self) -> dict[str, bool]:  # type: ignore[override]
        return {**self.model.capabilities, "multivariate": True}

    @property
    def coverage(self) -> float:
        return self.model.coverage

    @property
    def fit_info_(self) -> dict[str, object]:
        return _merge_info(self.models_.values())

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.models_ = {col: self.model.clone().fit(y[[col]], X) for col in y.columns}

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        self.models_ = {col: m.update(y[[col]], X) for col, m in self.models_.items()}

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "models_"):
            raise ModelError("per_column: call fit before predict")
        parts = [m.predict(horizon, X) for m in self.models_.values()]
        return Forecast(*(pd.concat([getattr(p, a) for p in parts], axis=1)
                          for a in ("mean", "lower", "upper")), coverage=self.coverage)


class PerSeries(Forecaster):
    """One clone of ``model`` per series of a panel (``(series_id, date)`` index)."""

    family = "per_series"

    def __init__(self, model: Forecaster) -> None:
        self.model = model

    @property
    def capabilities(self) -> dict[str, bool]:  # type: ignore[override]
        return {**self.model.capabilities, "multivariate": True, "panel": True}

    @property
    def coverage(self) -> float:
        return self.model.coverage

    @property
    def fit_info_(self) -> dict[str, object]:
        return _merge_info(self.models_.values(), self.fallbacks_)

    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        from forecastflow.models.parallel import map_chunks

        items = []
        for sid, ys in y.groupby(level=SERIES, sort=False):
            xs = None if X is None else _single(X.xs(sid, level=SERIES, drop_level=False),
                                               self.freq_)
            items.append((str(sid), _single(ys, self.freq_), xs))
        fitted = map_chunks(partial(_fit_series, self.model), items,
                            min_items=1_000_000 if self.model.family in CHEAP else 8)
        self.models_ = {sid: model for sid, model, _ in fitted}
        self.fallbacks_ = {sid: reason for sid, _, reason in fitted if reason}
        if len(self.fallbacks_) == len(self.models_):
            first = next(iter(self.fallbacks_.items()))
            raise FitError(f"{self.model.family} failed on every series, e.g. {first[0]!r}: "
                           f"{first[1]}")

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None) -> None:
        models = {}
        for sid, ys in y.groupby(level=SERIES, sort=False):
            model = self.models_[str(sid)]
            xs = None if X is None or not model.exog_ else _single(
                X.xs(sid, level=SERIES, drop_level=False), self.freq_)
            models[str(sid)] = model.update(_single(ys, self.freq_), xs)
        self.models_ = {sid: models[sid] for sid in self.models_}

    def predict(self, horizon: int, X: pd.DataFrame | None = None) -> Forecast:
        if not hasattr(self, "models_"):
            raise ModelError("per_series: call fit before predict")
        out = {"mean": [], "lower": [], "upper": []}
        for sid, model in self.models_.items():
            xs = None
            if X is not None and model.exog_:
                if sid not in X.index.get_level_values(SERIES):
                    raise ModelError(f"future exog has no rows for series {sid!r}")
                xs = X.xs(sid, level=SERIES)
            fc = model.predict(horizon, xs)
            for key, frames in out.items():
                frame = getattr(fc, key)
                frame.index = pd.MultiIndex.from_product([[sid], frame.index],
                                                         names=[SERIES, DATE])
                frames.append(frame)
        return Forecast(*(pd.concat(out[k]) for k in ("mean", "lower", "upper")),
                        coverage=self.coverage)


# Families so quick to fit that a process pool would only add its overhead.
CHEAP = frozenset({"naive", "seasonal_naive", "drift"})


def _fit_series(template: Forecaster, items: list[tuple[str, pd.DataFrame, pd.DataFrame | None]],
                ) -> list[tuple[str, Forecaster, str]]:
    """Fit a clone of ``template`` on each ``(series id, y, X)``: ``(id, model, fallback
    reason)``. One series that cannot be fitted must not sink the thousands of others: it
    falls back to seasonal naive, and the reason is reported."""
    from forecastflow.models.naive import SeasonalNaive

    out = []
    for sid, ys, xs in items:
        try:
            out.append((sid, local_model(template.clone(), ys).fit(ys, xs), ""))
        except (FitError, np.linalg.LinAlgError) as err:
            season = getattr(template, "season_length", None)
            out.append((sid, SeasonalNaive(season, template.coverage).fit(ys),
                        f"{type(err).__name__}: {err}"[:300]))
    return out


def _single(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    frame = frame.droplevel(SERIES)
    frame.index = pd.DatetimeIndex(frame.index, freq=freq, name=DATE)
    return frame


def _merge_info(models: object, fallbacks: dict[str, str] | None = None) -> dict[str, object]:
    infos = [getattr(m, "fit_info_", {}) for m in models]
    converged = [i.get("converged", True) for i in infos]
    warnings = sorted({w for i in infos for w in i.get("warnings", [])})
    if fallbacks:
        warnings.append(f"{len(fallbacks)} series fell back to seasonal naive: "
                        f"{sorted(fallbacks)[:10]}")
    return {"converged": bool(np.all(converged)), "n_not_converged": int(np.sum(~np.array(
        converged, dtype=bool))), "warnings": warnings, "fallbacks": dict(fallbacks or {})}


def local_model(model: Forecaster, y: pd.DataFrame) -> Forecaster:
    """Wrap ``model`` in ``PerColumn`` when it is univariate and ``y`` has several targets."""
    if y.shape[1] > 1 and not model.capabilities["multivariate"]:
        return PerColumn(model)
    return model


def adapt(model: Forecaster, y: pd.DataFrame) -> Forecaster:
    """The model, wrapped as needed so that it can fit ``y`` (panel and/or several targets)."""
    if isinstance(y.index, pd.MultiIndex) and not model.capabilities["panel"]:
        return PerSeries(model)
    return local_model(model, y)
