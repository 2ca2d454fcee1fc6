"""The data contract: check a raw table against its problem before anything is fitted.

:func:`validate` returns clean :class:`~forecastflow.data.series.SeriesData` or raises
:class:`DataValidationError`, whose message names the column, the series and the offending
timestamps or values of every problem found (not just the first).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastflow.data.panel_checks import clean_series
from forecastflow.data.problem import ProblemConfig
from forecastflow.data.series import DATE, SERIES, SeriesData
from forecastflow.errors import UserInputError

log = logging.getLogger(__name__)

_SHOW = 5  # offending values shown per issue


@dataclass(frozen=True)
class Issue:
    """One broken rule: ``kind`` is a stable key (tests and alerts match on it)."""

    kind: str
    message: str
    column: str | None = None
    series: str | None = None

    def __str__(self) -> str:
        where = []
        if self.series is not None:
            where.append(f"series {self.series!r}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = f"[{self.kind}] " + (", ".join(where) + ": " if where else "")
        return prefix + self.message


class DataValidationError(UserInputError):
    """The data break the problem's contract; ``issues`` lists every broken rule."""

    def __init__(self, problem: str, issues: list[Issue]) -> None:
        self.problem = problem
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues[:20])
        more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        super().__init__(f"problem {problem!r}: {len(issues)} data issue(s)\n{lines}{more}")

    @property
    def kinds(self) -> set[str]:
        return {issue.kind for issue in self.issues}


def _show(values: object) -> str:
    items = [str(v.date() if isinstance(v, pd.Timestamp) and v == v.normalize() else v)
             for v in list(values)[:_SHOW]]
    extra = len(list(values)) - _SHOW
    return ", ".join(items) + (f" (+{extra} more)" if extra > 0 else "")


def _check_columns(raw: pd.DataFrame, problem: ProblemConfig) -> list[Issue]:
    wanted = [problem.time_column, *problem.target, *problem.exog]
    if problem.id_column:
        wanted.append(problem.id_column)
    missing = [c for c in wanted if c not in raw.columns]
    return [
        Issue("missing_column", f"not in the source; available: {list(raw.columns)}", column=c)
        for c in missing
    ]


def _parse_time(raw: pd.DataFrame, column: str) -> tuple[pd.Series, list[Issue]]:
    values = raw[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # Numbers are not read as nanoseconds since 1970: whole years (2020) become year
        # starts, anything else is rejected.
        years = pd.to_numeric(values, errors="coerce")
        is_year = years.notna() & (years % 1 == 0) & years.between(1000, 9999)
        parsed = pd.to_datetime(years.where(is_year).astype("Int64").astype(str)
                                .where(is_year), format="%Y", errors="coerce")
    else:
        parsed, mixed = _parse_strings(values)
        if mixed is not None:
            return parsed, [Issue("mixed_time_format", mixed, column=column)]
    bad = values[parsed.isna()]
    if len(bad):
        rows = list(bad.index[:_SHOW])
        return parsed, [Issue("unparseable_time",
                              f"{len(bad)} value(s) are not timestamps, e.g. rows {rows}: "
                              f"{_show(bad.astype(str))}", column=column)]
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed, []


def _parse_strings(values: pd.Series) -> tuple[pd.Series, str | None]:
    """Time strings parsed in the first one's format; with why they are not all in it, when
    some others parse in another (``2020-01-02`` and ``01/02/2020`` in one column leave a
    reader guessing which is the day). Offsets are converted to UTC (``utc=True``)."""
    from pandas.tseries.api import guess_datetime_format

    text = values.dropna().astype(str)
    first = guess_datetime_format(text.iloc[0]) if len(text) else None
    iso = first is not None and first.startswith("%Y-%m")
    if first is not None:
        parsed = pd.to_datetime(values, errors="coerce", utc=True,
                                format="ISO8601" if iso else first)
        if parsed.notna().all():
            return parsed, None  # the usual case: one format, one pass
    loose = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    if first is None:
        return loose, None
    other = values[parsed.isna() & loose.notna()]
    if other.empty:
        return loose, None  # only unparseable values: reported as such
    return loose, (f"{len(other)} value(s) are written in another format than the first "
                   f"row's {text.iloc[0]!r} ({'ISO 8601' if iso else first}), e.g. rows "
                   f"{list(other.index[:_SHOW])}: {_show(other)}; write every date in one "
                   "format")


def _numeric(raw: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, list[Issue]]:
    out, issues = {}, []
    for col in columns:
        values = raw[col]
        if pd.api.types.is_bool_dtype(values):
            values = values.astype(float)
        converted = pd.to_numeric(values, errors="coerce")
        bad = values[converted.isna() & values.notna()]
        if len(bad):
            issues.append(Issue("non_numeric", f"{len(bad)} non-numeric value(s): "
                                f"{_show(bad.astype(str).unique())}", column=col))
        out[col] = converted.astype(float)
    return pd.DataFrame(out, index=raw.index), issues


def _pandas_freq(dates: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as a string (pandas 3.1 warns it will return an offset)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infer_freq.*")
        freq = pd.infer_freq(dates)
    return getattr(freq, "freqstr", freq)


def _infer_frequency(dates: pd.DatetimeIndex) -> str | None:
    if len(dates) < 3:
        return None
    freq = _pandas_freq(dates)
    if freq is None:
        # Gaps defeat infer_freq: take the most common frequency of runs of three consecutive
        # timestamps (calendar-aware, unlike a fixed spacing: months are not 31 days) and
        # accept it only if every timestamp lies on its grid.
        starts = np.unique(np.linspace(0, len(dates) - 3, min(len(dates) - 2, 200)).astype(int))
        found = [_pandas_freq(dates[i:i + 3]) for i in starts]
        found = pd.Series([f for f in found if f is not None])
        if found.empty:
            return None
        freq = found.mode().iloc[0]
        if len(dates.difference(pd.date_range(dates[0], dates[-1], freq=freq))):
            return None
    return freq


def _regularize(
    sid: str | None, frame: pd.DataFrame, freq: str, problem: ProblemConfig, end: pd.Timestamp
) -> tuple[pd.DataFrame, list[Issue]]:
    """Put one series on its regular grid and apply the gap policy."""
    issues: list[Issue] = []
    dates = frame.index
    dup = dates[dates.duplicated()]
    if len(dup):
        return frame, [Issue("duplicate_timestamp", f"{len(dup)} duplicated timestamp(s): "
                             f"{_show(dup.unique())}", column=problem.time_column, series=sid)]
    # Trim leading rows where every target is missing (a series that starts late).
    first_valid = frame[problem.target].dropna(how="all").index.min()
    if pd.isna(first_valid):
        return frame, [Issue("empty_series", "every target value is missing", series=sid)]
    frame = frame.loc[first_valid:]
    grid = pd.date_range(frame.index[0], end, freq=freq)
    off_grid = frame.index.difference(grid)
    if len(off_grid):
        return frame, [Issue("irregular_timestamps",
                             f"{len(off_grid)} timestamp(s) off the {freq!r} grid: "
                             f"{_show(off_grid)}", column=problem.time_column, series=sid)]
    frame = frame.reindex(grid)
    frame.index.name = DATE
    columns = [*problem.target, *problem.exog]
    for col in columns:
        missing = frame.index[frame[col].isna()]
        if not len(missing):
            continue
        if problem.gaps == "reject":
            issues.append(Issue("gap", f"{len(missing)} missing value(s) (gap policy 'reject') "
                                f"at {_show(missing)}", column=col, series=sid))
            continue
        present = frame[col].notna()
        outside = ~(present.cummax() & present.iloc[::-1].cummax().iloc[::-1])
        leading = ~present.cummax()
        if problem.gaps == "interpolate" and outside.any():
            edge = frame.index[outside.to_numpy()]
            issues.append(Issue("gap", f"{len(edge)} missing value(s) at the start or end "
                                f"cannot be interpolated: {_show(edge)}", column=col, series=sid))
            continue
        if problem.gaps == "ffill" and leading.any():
            # Back-filling would copy a later value into the past.
            edge = frame.index[leading.to_numpy()]
            issues.append(Issue("gap", f"{len(edge)} missing value(s) at the start have no "
                                f"earlier value to carry forward: {_show(edge)}",
                                column=col, series=sid))
            continue
        start, run = _longest_run(frame[col].isna().to_numpy())
        if problem.max_gap is not None and run > problem.max_gap:
            span = frame.index[start:start + run]
            issues.append(Issue("gap", f"{run} consecutive missing periods exceed max_gap="
                                f"{problem.max_gap}: {span[0].date()} to {span[-1].date()}",
                                column=col, series=sid))
            continue
        log.info("series %s column %s: filled %d gap(s) by %s", sid, col, len(missing),
                 problem.gaps)
        if problem.gaps == "interpolate":
            frame[col] = frame[col].interpolate(method="linear", limit_area="inside")
        elif problem.gaps == "ffill":
            frame[col] = frame[col].ffill()
        else:
            frame[col] = frame[col].fillna(0.0)
    return frame, issues


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """Start position and length of the longest run of True in ``mask``."""
    best_start = best = run = 0
    for pos, value in enumerate(mask):
        run = run + 1 if value else 0
        if run > best:
            best, best_start = run, pos - run + 1
    return best_start, best


def _check_values(sid: str | None, frame: pd.DataFrame, problem: ProblemConfig,
                  season: int) -> list[Issue]:
    issues = []
    for col in [*problem.target, *problem.exog]:
        values = frame[col]
        inf = values.index[np.isinf(values.to_numpy())]
        if len(inf):
            issues.append(Issue("infinite", f"{len(inf)} infinite value(s) at {_show(inf)}",
                                column=col, series=sid))
    for col in problem.target:
        values = frame[col].dropna()
        if len(values) and values.nunique() == 1:
            issues.append(Issue("constant", f"constant at {values.iloc[0]!r}: no variance to "
                                "model", column=col, series=sid))
        if _needs_positive(problem):
            bad = values[values <= 0]
            if len(bad):
                issues.append(Issue("non_positive", f"log transform needs values > 0; "
                                    f"{len(bad)} value(s) <= 0 at {_show(bad.index)}",
                                    column=col, series=sid))
    need = problem.required_history(season)
    if len(frame) < need:
        issues.append(Issue("too_short", f"{len(frame)} observations; horizon {problem.horizon} "
                            f"with {problem.backtest.windows} backtest window(s) needs at least "
                            f"{need}", series=sid))
    return issues


def validate(
    raw: pd.DataFrame, problem: ProblemConfig, cutoff: pd.Timestamp | None = None
) -> SeriesData:
    """Check ``raw`` against ``problem`` and return regular, gap-free data up to ``cutoff``."""
    issues = _check_columns(raw, problem)
    if issues:
        raise DataValidationError(problem.name, issues)
    dates, issues = _parse_time(raw, problem.time_column)
    if issues:
        raise DataValidationError(problem.name, issues)
    values, issues = _numeric(raw, [*problem.target, *problem.exog])
    if issues:
        raise DataValidationError(problem.name, issues)
    values.index = pd.DatetimeIndex(dates, name=DATE)
    if problem.id_column:
        ids = raw[problem.id_column]
        if ids.isna().any():
            rows = list(raw.index[ids.isna()][:_SHOW])
            raise DataValidationError(problem.name, [Issue(
                "missing_id", f"{int(ids.isna().sum())} row(s) without an id, e.g. rows {rows}",
                column=problem.id_column)])
        values[SERIES] = (ids if pd.api.types.is_string_dtype(ids) else ids.astype(str)).array
    else:
        values[SERIES] = "__single__"
    if cutoff is not None:
        cutoff = pd.Timestamp(cutoff)
        if cutoff.tz is not None:  # timestamps are naive UTC (see _parse_time)
            cutoff = cutoff.tz_convert("UTC").tz_localize(None)
        values = values[values.index <= cutoff]
        if values.empty:
            raise DataValidationError(problem.name, [Issue(
                "empty", f"no rows at or before the cutoff {cutoff}", column=problem.time_column)])
    values = values.sort_index(kind="stable")
    freq = problem.frequency or _inferred_frequency(values, problem)
    season = problem.seasonality(freq)
    end = values.index.max()
    fast, slow = None, values
    if problem.id_column:  # clean series in one pass; the rest one by one, with messages
        fast, others = clean_series(values, [*problem.target, *problem.exog],
                                    len(problem.target), freq, end,
                                    problem.required_history(season), _needs_positive(problem),
                                    own_end=problem.ragged_ends == "own_origin")
        slow = values[values[SERIES].isin(others)]
    clean, dropped = _checked_series(slow, problem, freq, season, end)
    n_series = int(values[SERIES].nunique())
    if not clean and (fast is None or fast.empty):
        raise DataValidationError(problem.name, [Issue(
            "no_valid_series", f"all {n_series} series were dropped as invalid")])
    if problem.id_column:
        frame = fast if not clean else pd.concat(
            [fast, pd.concat(clean, names=[SERIES, DATE])]).sort_index(level=SERIES,
                                                                       sort_remaining=False)
        frame = _first_series(frame, problem.series_limit)
    else:
        frame = clean["__single__"]
        frame.index = pd.DatetimeIndex(frame.index, freq=freq, name=DATE)
    y = frame[problem.target]
    X = frame[problem.exog] if problem.exog else None
    data = SeriesData(y, X, freq, season, dropped)
    n_valid = len(frame.index.levels[0]) if problem.id_column else 1
    log.info("problem %s: validated %d series, %d rows, freq %s, season %d%s", problem.name,
             n_valid, len(frame), freq, season,
             f", dropped {len(dropped)}" if dropped else "")
    return data


def _inferred_frequency(values: pd.DataFrame, problem: ProblemConfig) -> str:
    """The frequency of the first series' timestamps, or a clear error."""
    first = values[values[SERIES] == values[SERIES].min()]
    freq = _infer_frequency(first.index.unique())
    if freq is None:
        raise DataValidationError(problem.name, [Issue(
            "unknown_frequency", "cannot infer a regular frequency from the timestamps "
            f"{_show(first.index[:_SHOW])}; declare `frequency` in the problem",
            column=problem.time_column)])
    log.info("problem %s: inferred frequency %s", problem.name, freq)
    return freq


def _needs_positive(problem: ProblemConfig) -> bool:
    return problem.transform in ("log", "log-diff") or any(
        spec.transform in ("log", "log-diff") for spec in problem.models or [])


def _first_series(frame: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """The first ``limit`` series (in id order) of a panel frame."""
    ids = frame.index.get_level_values(SERIES)
    if not limit or ids.nunique() <= limit:
        return frame
    return frame[ids.isin(ids.unique()[:limit])]


def _checked_series(values: pd.DataFrame, problem: ProblemConfig, freq: str, season: int,
                    end: pd.Timestamp) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Series checked one by one (regularized, gaps filled by the policy); raises with every
    issue, or drops the invalid series when the problem says so."""
    clean, dropped, all_issues = {}, {}, []
    for sid, frame in values.groupby(SERIES, sort=True):
        frame = frame.drop(columns=SERIES)
        if problem.id_column and frame.index.max() < end and (
                problem.ragged_ends == "drop"):
            issue = Issue("stale_series", f"ends at {frame.index.max().date()} while the panel "
                          f"ends at {end.date()}", series=sid)
            series_issues = [issue]
        else:
            # A ragged series (ragged_ends: own_origin) keeps its own last date.
            frame, series_issues = _regularize(
                sid if problem.id_column else None, frame, freq, problem,
                frame.index.max() if problem.id_column else end)
            # Unfilled gaps leave the series on its grid, so its values are still checked.
            if all(issue.kind == "gap" for issue in series_issues):
                series_issues += _check_values(
                    sid if problem.id_column else None, frame, problem, season)
        if series_issues and problem.drop_invalid_series and problem.id_column:
            dropped[sid] = "; ".join(str(i) for i in series_issues)
            log.warning("problem %s: dropping series %s: %s", problem.name, sid, dropped[sid])
            continue
        all_issues.extend(series_issues)
        clean[sid] = frame
    if all_issues:
        raise DataValidationError(problem.name, all_issues)
    return clean, dropped


def load_data(problem: ProblemConfig, cutoff: pd.Timestamp | None = None) -> SeriesData:
    """Read the problem's source and validate it, keeping data at or before ``cutoff`` (a
    database source filters those rows itself)."""
    from forecastflow.data.sources import read_problem

    return validate(read_problem(problem, cutoff).frame, problem, cutoff=cutoff)
