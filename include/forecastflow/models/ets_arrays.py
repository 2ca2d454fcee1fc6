"""Exponential smoothing (ETS) for every series of a panel at once, as array code.

The state-space models of Hyndman et al. (2008) without multiplicative trends: error additive
or multiplicative, trend none / additive / damped, season none / additive / multiplicative.
Written with the absolute one-step error ``r = y - yhat``, the state updates of a model do not
depend on its error type (only the likelihood does), so one filter serves all of them:

    base = l + phi b                      yhat = base + s   (or base * s, multiplicative season)
    l' = base + alpha r / d               b' = phi b + beta r / d          (d = s, or 1)
    s' = s + gamma r / base (multiplicative season), s + gamma r (additive)

Every series is a row of a ``(series, time)`` matrix (from its own first observation, padded
after its end), and every step above is one array operation over the rows. The parameters
(smoothing parameters, damping, initial level and slope) are estimated per row by a
Nelder-Mead search that runs for all rows at once (each row its own simplex); the initial
seasonal states come from a classical decomposition of the first cycles. The model of each
series is chosen by AICc among the specifications its data allow (multiplicative forms only
for positive series, seasonal ones with two full cycles and two more points).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numba
import numpy as np

from forecastflow.models.theta import seasonal_indices

# Canonical parameter slots; a specification estimates a subset of them.
ALPHA, BETA, GAMMA, PHI, LEVEL, SLOPE = range(6)
N_SLOTS = 6
SMALL = 1e-4
PHI_RANGE = (0.8, 0.98)
# Longer seasons keep their starting states from the decomposition (a search over 50+
# dimensions would be slow and poor).
MAX_FREE_SEASON = 24
# The criterion's floor on the error variance (a constant series fits exactly).
TINY = 1e-300


@dataclass(frozen=True)
class Spec:
    """One ETS specification."""

    error: str  # "add" | "mul"
    trend: bool
    damped: bool
    season: str | None  # None | "add" | "mul"

    @property
    def name(self) -> str:
        trend = ("A" + ("d" if self.damped else "")) if self.trend else "N"
        season = {None: "N", "add": "A", "mul": "M"}[self.season]
        return f"ETS({'A' if self.error == 'add' else 'M'},{trend},{season})"

    @property
    def slots(self) -> list[int]:
        """The parameter slots this specification estimates by search."""
        return [s for s, used in ((ALPHA, True), (BETA, self.trend), (GAMMA, bool(self.season)),
                                  (PHI, self.damped), (LEVEL, True), (SLOPE, self.trend))
                if used]

    def dims(self, m: int) -> int:
        """Search dimensions: the slots and, with a season of at most ``MAX_FREE_SEASON``,
        m - 1 starting seasonal states."""
        return len(self.slots) + (m - 1 if self.season and m <= MAX_FREE_SEASON else 0)

    def n_params(self, m: int) -> int:
        """Estimated parameters for AICc: the searched ones, the initial seasonal states
        (one less than the season) and the error variance."""
        return len(self.slots) + (m - 1 if self.season else 0) + 1


def specs(positive: bool, seasonal: bool) -> list[Spec]:
    """The specifications AutoETS chooses among (no multiplicative trend; additive error
    with multiplicative season left out as numerically unstable)."""
    out = []
    for error in ("add", "mul") if positive else ("add",):
        for trend, damped in ((False, False), (True, False), (True, True)):
            for season in (None, "add", "mul") if seasonal else (None,):
                if season == "mul" and (error == "add" or not positive):
                    continue
                out.append(Spec(error, trend, damped, season))
    return out


# The filter --------------------------------------------------------------------------------

@dataclass
class Filtered:
    level: np.ndarray  # (rows,) final states
    slope: np.ndarray
    season: np.ndarray  # (rows, m), by phase
    sse: np.ndarray  # sum of squared errors (relative ones for multiplicative error)
    log_abs: np.ndarray  # sum of log |yhat| (the multiplicative likelihood's Jacobian term)
    invalid: np.ndarray  # a forecast <= 0 in a multiplicative model, or non-finite


def run_filter(values: np.ndarray, n: np.ndarray, params: np.ndarray, season0: np.ndarray,
               mul_error: np.ndarray, mul_season: np.ndarray) -> Filtered:
    """Filter every row through its own series: ``params`` (rows, N_SLOTS), initial
    seasonal states ``season0`` (rows, m) by phase (zeros / ones when there is no season)."""
    rows = len(n)
    level, slope = np.empty(rows), np.empty(rows)
    season = np.array(season0, dtype=float, order="C")  # updated in place
    sse, log_abs = np.empty(rows), np.empty(rows)
    invalid = np.empty(rows, dtype=bool)
    _filter_rows(np.ascontiguousarray(values, dtype=float), np.asarray(n, dtype=np.int64),
                 np.ascontiguousarray(params, dtype=float), np.asarray(mul_error, dtype=bool),
                 np.asarray(mul_season, dtype=bool), season, level, slope, sse, log_abs,
                 invalid)
    return Filtered(level, slope, season, sse, log_abs, invalid)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _filter_rows(values: np.ndarray, n: np.ndarray, params: np.ndarray,
                 mul_error: np.ndarray, mul_season: np.ndarray, season: np.ndarray,
                 level_out: np.ndarray, slope_out: np.ndarray, sse_out: np.ndarray,
                 log_abs_out: np.ndarray, invalid_out: np.ndarray,
                 ) -> None:  # pragma: no cover - compiled
    """The recursions of the module docstring, one row at a time (compiled: a numpy
    operation per time step costs microseconds of overhead for a few flops per row)."""
    m = season.shape[1]
    for i in range(len(n)):
        alpha, beta, gamma, phi = params[i, 0], params[i, 1], params[i, 2], params[i, 3]
        level, slope = params[i, 4], params[i, 5]
        me, ms = mul_error[i], mul_season[i]
        sse, log_abs, bad = 0.0, 0.0, False
        for t in range(n[i]):
            phase = t % m
            s = season[i, phase]
            base = level + phi * slope
            yhat = base * s if ms else base + s
            r = values[i, t] - yhat
            e = r / yhat if me else r
            sse += e * e
            if me:
                log_abs += np.log(np.abs(yhat))
            if (me or ms) and not yhat > 0:
                bad = True
            scaled = r / s if ms else r
            level = base + alpha * scaled
            slope = phi * slope + beta * scaled
            season[i, phase] = s + gamma * (r / base if ms else r)
        level_out[i], slope_out[i] = level, slope
        sse_out[i], log_abs_out[i] = sse, log_abs
        invalid_out[i] = bad or not np.isfinite(sse) or not np.isfinite(level)


def criterion(f: Filtered, n: np.ndarray, mul_error: np.ndarray) -> np.ndarray:
    """-2 log-likelihood up to a constant shared by all specifications (inf if invalid)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lik = n * np.log(np.maximum(f.sse / n, TINY)) + np.where(mul_error, 2.0 * f.log_abs,
                                                                   0.0)
    return np.where(f.invalid | ~np.isfinite(lik), np.inf, lik)


def aicc(lik: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = lik + 2 * k + 2 * k * (k + 1) / (n - k - 1)
    return np.where(n - k - 1 > 0, out, np.inf)


# Starting values ---------------------------------------------------------------------------

def initial_states(values: np.ndarray, n: np.ndarray, m: int, season: str | None,
                   trend: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heuristic initial level, slope, seasonal states (rows, m) and a level scale, from the
    first cycles: a classical decomposition, then a line through the first adjusted
    values."""
    rows = len(n)
    mul = season == "mul"
    if season:
        first = values[:, :3 * m].copy()
        first[np.arange(first.shape[1])[None, :] >= np.minimum(n, 3 * m)[:, None]] = np.nan
        season0 = seasonal_indices(first, m, np.ones(rows, dtype=bool),
                                   np.full(rows, mul))
    else:
        season0 = np.zeros((rows, m))
    k = max(2 * m, 10) if season else 10
    head = values[:, :k]
    phase = np.arange(head.shape[1]) % m
    adjusted = head / season0[:, phase] if mul else head - season0[:, phase]
    live = np.arange(head.shape[1])[None, :] < np.minimum(n, k)[:, None]
    t = np.arange(1, head.shape[1] + 1, dtype=float)[None, :]
    count = live.sum(axis=1)
    t_mean = np.where(live, t, 0).sum(axis=1) / count
    y_mean = np.where(live, adjusted, 0).sum(axis=1) / count
    dt = np.where(live, t - t_mean[:, None], 0.0)
    slope = (dt * np.where(live, adjusted - y_mean[:, None], 0.0)).sum(axis=1) / np.maximum(
        (dt * dt).sum(axis=1), 1e-12)
    level = y_mean - slope * t_mean if trend else y_mean
    spread = np.nanstd(np.where(live, adjusted, np.nan), axis=1)
    scale = np.where(spread > 0, spread, np.maximum(np.abs(y_mean), 1.0) * 0.01)
    return level, slope if trend else np.zeros(rows), season0, scale


# Nelder-Mead over all rows at once --------------------------------------------------------

def nelder_mead(f: Callable[[np.ndarray, np.ndarray], np.ndarray], x0: np.ndarray,
                step: np.ndarray, max_iter: int = 200, tol: float = 1e-7) -> tuple[
                    np.ndarray, np.ndarray, np.ndarray]:
    """Minimize ``f(x, rows)`` (x: (len(rows), d)) for every row independently from ``x0``
    (rows, d); a row stops when its simplex values agree to ``tol`` (relative). Returns the
    best points and values, and which rows stopped so (the others ran out of iterations).
    The simplices are not reordered: each iteration finds its best, second-worst and worst
    vertices, and finished rows leave the working arrays."""
    rows, d = x0.shape
    simplex = np.repeat(x0[:, None, :], d + 1, axis=1)
    for i in range(d):
        simplex[:, i + 1, i] += step[i]
    every = np.arange(rows)
    values = np.stack([f(simplex[:, j], every) for j in range(d + 1)], axis=1)
    active, sim, fv = every, simplex, values  # the unfinished rows' simplices and values
    converged = np.ones(rows, dtype=bool)
    for _ in range(max_iter):
        order = np.argsort(fv, axis=1, kind="stable")
        at = np.arange(len(active))
        low, high = fv[at, order[:, 0]], fv[at, order[:, -1]]
        with np.errstate(invalid="ignore"):  # inf - inf: an invalid row, done below
            done = np.abs(high - low) <= tol * (np.abs(low) + tol)
        done |= ~np.isfinite(low)
        if done.any():
            simplex[active[done]], values[active[done]] = sim[done], fv[done]
            keep = ~done
            active, sim, fv, order = active[keep], sim[keep], fv[keep], order[keep]
            if not len(active):
                break
        _step(f, active, sim, fv, order)
    simplex[active], values[active] = sim, fv
    converged[active] = False
    best = np.argmin(values, axis=1)
    return simplex[every, best], values[every, best], converged


def _step(f: Callable[[np.ndarray, np.ndarray], np.ndarray], rows: np.ndarray,
          sim: np.ndarray, fv: np.ndarray, order: np.ndarray) -> None:
    """One Nelder-Mead iteration of simplices ``sim`` (values ``fv``; ``order`` sorts each
    row's vertices by value), in place."""
    at = np.arange(len(rows))
    best_at, worst_at = order[:, 0], order[:, -1]
    f_best, f_second, f_worst = fv[at, best_at], fv[at, order[:, -2]], fv[at, worst_at]
    worst = sim[at, worst_at]
    centroid = (sim.sum(axis=1) - worst) / (sim.shape[1] - 1)
    xr = 2 * centroid - worst
    fr = f(xr, rows)
    expand = fr < f_best
    fe = np.full(len(rows), np.inf)
    xe = 3 * centroid - 2 * worst
    if expand.any():
        fe[expand] = f(xe[expand], rows[expand])
    contract = ~expand & ~(fr < f_second)
    outside = fr < f_worst
    xc = np.where(outside[:, None], centroid + 0.5 * (xr - centroid),
                  centroid + 0.5 * (worst - centroid))
    fc = np.full(len(rows), np.inf)
    if contract.any():
        fc[contract] = f(xc[contract], rows[contract])
    take_e = expand & (fe < fr)
    take_r = ~contract & ~take_e
    take_c = contract & (fc < np.where(outside, fr, f_worst))
    new = np.where(take_e[:, None], xe, np.where(take_r[:, None], xr, xc))
    new_f = np.where(take_e, fe, np.where(take_r, fr, fc))
    accept = take_e | take_r | take_c
    sim[at[accept], worst_at[accept]] = new[accept]
    fv[at[accept], worst_at[accept]] = new_f[accept]
    shrink = contract & ~take_c
    if shrink.any():  # every vertex halfway to the best (which stays)
        idx = np.flatnonzero(shrink)
        best = sim[idx, best_at[idx]][:, None, :]
        sim[idx] = best + 0.5 * (sim[idx] - best)
        for j in range(sim.shape[1]):
            moved = idx[best_at[idx] != j]
            fv[moved, j] = f(sim[moved, j], rows[moved])


# Fitting one specification -----------------------------------------------------------------

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def decode(spec: Spec, x: np.ndarray, start: dict[str, np.ndarray]) -> np.ndarray:
    """Search coordinates (rows, spec.dims) -> parameters (rows, N_SLOTS) in slot order:
    alpha in (0, 1), beta < alpha, gamma < 1 - alpha, phi in PHI_RANGE, level and slope as
    offsets from their starting values in units of the series' scale."""
    rows = len(x)
    p = np.zeros((rows, N_SLOTS))
    p[:, PHI] = 1.0
    col = {slot: k for k, slot in enumerate(spec.slots)}
    alpha = SMALL + (1 - 2 * SMALL) * _sigmoid(x[:, col[ALPHA]])
    p[:, ALPHA] = alpha
    if BETA in col:
        p[:, BETA] = SMALL + (alpha - 2 * SMALL) * _sigmoid(x[:, col[BETA]])
    if GAMMA in col:
        p[:, GAMMA] = SMALL + (1 - alpha - 2 * SMALL) * _sigmoid(x[:, col[GAMMA]])
    if PHI in col:
        p[:, PHI] = PHI_RANGE[0] + (PHI_RANGE[1] - PHI_RANGE[0]) * _sigmoid(x[:, col[PHI]])
    p[:, LEVEL] = start["level"] + start["scale"] * x[:, col[LEVEL]]
    if SLOPE in col:
        p[:, SLOPE] = start["slope"] + start["scale"] / 10.0 * x[:, col[SLOPE]]
    return p


def moved_season(spec: Spec, x: np.ndarray, season0: np.ndarray, scale: np.ndarray,
                 ) -> np.ndarray:
    """The starting seasonal states moved by the search's last m - 1 coordinates (the last
    state keeps them centred: sum 0, or mean 1 when multiplicative)."""
    if not spec.season:
        return season0
    m = season0.shape[1]
    k = len(spec.slots)
    step = 0.1 if spec.season == "mul" else scale[:, None]
    moved = season0.copy()
    if x.shape[1] > k:
        moved[:, :m - 1] += step * x[:, k:k + m - 1]
    if spec.season == "mul":
        return moved / moved.mean(axis=1, keepdims=True)
    return moved - moved.mean(axis=1, keepdims=True)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


# Where the search starts: alpha 0.2, beta 0.1 alpha, gamma 0.1 (1 - alpha), phi 0.9.
START = {ALPHA: _logit(0.2), BETA: _logit(0.1), GAMMA: _logit(0.1),
         PHI: _logit((0.9 - PHI_RANGE[0]) / (PHI_RANGE[1] - PHI_RANGE[0])), LEVEL: 0.0,
         SLOPE: 0.0}
STEP = {ALPHA: 1.0, BETA: 1.0, GAMMA: 1.0, PHI: 1.0, LEVEL: 0.5, SLOPE: 0.5}


@dataclass
class SpecFit:
    params: np.ndarray  # (rows, N_SLOTS)
    season0: np.ndarray  # (rows, m)
    lik: np.ndarray
    aicc: np.ndarray
    converged: np.ndarray  # the search stopped on its tolerance, not on max_iter


def fit_spec(spec: Spec, values: np.ndarray, n: np.ndarray, m: int,
             max_iter: int = 200) -> SpecFit:
    """Estimate ``spec`` on every row; rows it cannot fit get an infinite AICc."""
    level, slope, season0, scale = initial_states(values, n, m, spec.season, spec.trend)
    start = {"level": level, "slope": slope, "scale": scale}
    rows = len(n)
    mul_e = np.full(rows, spec.error == "mul")
    mul_s = np.full(rows, spec.season == "mul")

    def objective(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        part = {k: v[idx] for k, v in start.items()}
        params = decode(spec, x, part)
        filtered = run_filter(values[idx], n[idx], params,
                              moved_season(spec, x, season0[idx], part["scale"]), mul_e[idx],
                              mul_s[idx])
        return criterion(filtered, n[idx], mul_e[idx])

    extra = spec.dims(m) - len(spec.slots)
    x0 = np.tile([START[s] for s in spec.slots] + [0.0] * extra, (rows, 1))
    steps = np.array([STEP[s] for s in spec.slots] + [0.5] * extra)
    x, lik, converged = nelder_mead(objective, x0, steps, max_iter)
    params = decode(spec, x, start)
    return SpecFit(params, moved_season(spec, x, season0, scale), lik,
                   aicc(lik, n, spec.n_params(m)), converged)


# Choosing per series, and forecasting ------------------------------------------------------

@dataclass(frozen=True)
class Fitted:
    """The chosen model of every row and its state at the end of the row's series."""

    spec: np.ndarray  # (rows,) index into ``specs``
    params: np.ndarray  # (rows, N_SLOTS)
    season0: np.ndarray  # (rows, m): initial seasonal states
    mul_error: np.ndarray
    mul_season: np.ndarray
    aicc: np.ndarray
    sigma: np.ndarray  # one-step error sd (relative for multiplicative error)
    fallback: np.ndarray  # rows no specification could be fitted for
    level: np.ndarray  # the states at the end of each row's series
    slope: np.ndarray
    season: np.ndarray
    n: np.ndarray
    # Rows whose chosen specification's search stopped on its tolerance (None: pickled
    # before this was recorded).
    converged: np.ndarray | None = None

    def moved(self, values: np.ndarray, n: np.ndarray) -> Fitted:
        """The state at the end of ``values`` (same parameters and starting states)."""
        f = run_filter(values, n, self.params, self.season0, self.mul_error, self.mul_season)
        return replace(self, level=f.level, slope=f.slope, season=f.season, n=n)


def fit_auto(values: np.ndarray, n: np.ndarray, m: int, candidates: list[Spec],
             max_iter: int = 200) -> Fitted:
    """Fit every candidate on the rows it suits; keep each row's lowest AICc."""
    positive = np.nanmin(values, axis=1) > 0
    seasonal_ok = n >= 2 * m + 2 if m > 1 else np.zeros(len(n), dtype=bool)
    rows = len(n)
    best = np.full(rows, np.inf)
    chosen = np.full(rows, -1)
    params = np.zeros((rows, N_SLOTS))
    season0 = np.zeros((rows, max(m, 1)))
    converged = np.ones(rows, dtype=bool)
    for i, spec in enumerate(candidates):
        ok = np.ones(rows, dtype=bool)
        if spec.error == "mul" or spec.season == "mul":
            ok &= positive
        if spec.season:
            ok &= seasonal_ok
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        fit = fit_spec(spec, values[idx], n[idx], m, max_iter)
        better = fit.aicc < best[idx]
        at = idx[better]
        best[at], chosen[at] = fit.aicc[better], i
        params[at], season0[at] = fit.params[better], fit.season0[better]
        converged[at] = fit.converged[better]
    fallback = chosen < 0  # nothing could be fitted (too short, say): a random walk
    if fallback.any():
        chosen[fallback] = next(i for i, s in enumerate(candidates)
                                if s.error == "add" and not s.trend and not s.season)
        params[fallback] = 0.0
        params[fallback, ALPHA], params[fallback, PHI] = 1.0 - SMALL, 1.0
        params[fallback, LEVEL] = values[fallback, 0]
        season0[fallback] = 0.0
    mul_error = np.array([candidates[c].error == "mul" for c in chosen])
    mul_season = np.array([candidates[c].season == "mul" for c in chosen])
    f = run_filter(values, n, params, season0, mul_error, mul_season)
    return Fitted(chosen, params, season0, mul_error, mul_season, best,
                  sigma=np.sqrt(f.sse / np.maximum(n - 1, 1)), fallback=fallback,
                  level=f.level, slope=f.slope, season=f.season, n=n, converged=converged)


def forecast(fitted: Fitted, horizon: int, z: float) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """Point forecasts and ``z``-sd bounds, (rows, horizon). The variance is the additive
    models' closed form ``sigma^2 (1 + sum_{j<h} c_j^2)``, ``c_j = alpha + beta (phi + ... +
    phi^j) + gamma [j = 0 mod m]``, taken relative to the forecast for multiplicative
    errors (an approximation there, as the multiplicative models have no closed form)."""
    p = fitted.params
    m = fitted.season.shape[1]
    h = np.arange(1, horizon + 1)
    phi = p[:, PHI][:, None]
    damp = np.cumsum(phi ** h[None, :], axis=1)  # phi + ... + phi^h
    base = fitted.level[:, None] + damp * fitted.slope[:, None]
    phase = (fitted.n[:, None] + h[None, :] - 1) % m
    s = np.take_along_axis(fitted.season, phase, axis=1)
    mean = np.where(fitted.mul_season[:, None], base * s, base + s)
    c = p[:, ALPHA][:, None] + p[:, BETA][:, None] * damp + p[:, GAMMA][:, None] * (
        (h[None, :] % m) == 0)
    var = np.concatenate([np.ones((len(p), 1)), 1.0 + np.cumsum(c[:, :-1] ** 2, axis=1)],
                         axis=1)
    sd = fitted.sigma[:, None] * np.sqrt(var)
    sd = np.where(fitted.mul_error[:, None], sd * np.abs(mean), sd)
    return mean, mean - z * sd, mean + z * sd
