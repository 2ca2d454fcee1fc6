"""The data contract: every issue kind validate() emits, and what clean data look like."""

from __future__ import annotations

import inspect
import io
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecastflow.data import validation as validate_module
from forecastflow.data.problem import ProblemConfig, parse_problem
from forecastflow.data.series import DATE, SERIES
from forecastflow.data.validation import DataValidationError, Issue, validate

N = 14  # rows per series; make_problem() needs 12 (min_train 10 + horizon 2)
START = "2020-01-01"


def make_problem(**overrides: Any) -> ProblemConfig:
    """A daily single-series problem on column ``y`` whose backtest needs 12 observations."""
    data: dict[str, Any] = {
        "name": "demo",
        "source": "data.csv",
        "time_column": "date",
        "target": "y",
        "frequency": "D",
        "season_length": 1,
        "horizon": 2,
        "models": [{"family": "seasonal_naive"}],
        "backtest": {"windows": 1},
    }
    data.update(overrides)
    return parse_problem(data)


PANEL = {"id_column": "series_id"}


def frame(n: int = N, start: str = START, freq: str = "D", **columns: Any) -> pd.DataFrame:
    """One series: ``date`` plus ``y`` = 1..n (distinct, positive) and extra ``columns``."""
    data: dict[str, Any] = {
        "date": pd.date_range(start, periods=n, freq=freq),
        "y": np.arange(1.0, n + 1.0),
    }
    data.update(columns)
    return pd.DataFrame(data)


def panel(*parts: tuple[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack single-series frames into a long panel with a ``series_id`` column."""
    return pd.concat([part.assign(series_id=sid) for sid, part in parts], ignore_index=True)


def csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(textwrap.dedent(text).strip()))


def daily_csv(rows: dict[int, str] | None = None, n: int = N, header: str = "date,y") -> str:
    """CSV text of a daily series; ``rows`` replaces whole data lines by position."""
    lines = [header]
    for i, day in enumerate(pd.date_range(START, periods=n, freq="D")):
        lines.append((rows or {}).get(i, f"{day.date()},{i + 1}"))
    return "\n".join(lines)


def with_value(df: pd.DataFrame, row: int, column: str, value: Any) -> pd.DataFrame:
    df = df.copy()
    if column in df and not isinstance(value, float | int):
        df[column] = df[column].astype(object)
    df.loc[row, column] = value
    return df


@dataclass
class Case:
    """A bad input: ``build()`` makes the raw frame, ``problem`` overrides make_problem()."""

    id: str
    build: Callable[[], pd.DataFrame]
    kind: str
    expected: list[str]
    problem: dict[str, Any] = field(default_factory=dict)
    cutoff: str | None = None
    column: str | None = None
    series: str | None = None


CASES = [
    # Columns and parsing -----------------------------------------------------------------
    Case("missing_target_column", lambda: frame().rename(columns={"y": "sales"}),
         "missing_column", ["'y'", "'sales'"], column="y"),
    Case("missing_exog_column", frame, "missing_column", ["'temp'"],
         problem={"exog": ["temp"]}, column="temp"),
    Case("missing_id_column", frame, "missing_column", ["'store'"],
         problem={"id_column": "store"}, column="store"),
    Case("missing_time_column", lambda: frame().rename(columns={"date": "day"}),
         "missing_column", ["'date'", "'day'"], column="date"),
    Case("mixed_time_format", lambda: csv(daily_csv({4: "01/05/2020,5", 6: "Jan 7 2020,7"})),
         "mixed_time_format", ["'date'", "2 value(s)", "'2020-01-01' (ISO 8601)", "rows [4, 6]",
                               "01/05/2020"], column="date"),
    Case("mixed_time_format_us_first",
         lambda: csv(daily_csv({0: "01/01/2020,1", 1: "01/02/2020,2"})),
         "mixed_time_format", ["'date'", "'01/01/2020' (%m/%d/%Y)", "2020-01-03"],
         column="date"),
    Case("unparseable_time", lambda: csv(daily_csv({3: "not-a-date,4"})),
         "unparseable_time", ["'date'", "not-a-date", "rows [3]"], column="date"),
    Case("numeric_time_not_years", lambda: frame().assign(date=np.arange(1.5, N + 1.5)),
         "unparseable_time", ["'date'", "1.5"], column="date"),
    Case("missing_time", lambda: csv(daily_csv({5: ",6"})),
         "unparseable_time", ["'date'", "rows [5]"], column="date"),
    Case("non_numeric_target", lambda: csv(daily_csv({4: "2020-01-05,abc"})),
         "non_numeric", ["'y'", "abc"], column="y"),
    Case("non_numeric_exog", lambda: frame(x=["high"] * 2 + [1.0] * (N - 2)),
         "non_numeric", ["'x'", "high"], problem={"exog": ["x"]}, column="x"),
    Case("missing_id", lambda: with_value(panel(("a", frame()), ("b", frame())), 20,
                                          "series_id", None),
         "missing_id", ["'series_id'", "rows [20]"], problem=PANEL, column="series_id"),
    # Timestamps --------------------------------------------------------------------------
    Case("duplicate_timestamp", lambda: pd.concat([frame(), frame().iloc[[4]]]),
         "duplicate_timestamp", ["'date'", "2020-01-05"], column="date"),
    Case("duplicate_timestamp_in_panel_series",
         lambda: panel(("a", frame()), ("b", pd.concat([frame(), frame().iloc[[6]]]))),
         "duplicate_timestamp", ["series 'b'", "2020-01-07"], problem=PANEL,
         column="date", series="b"),
    Case("irregular_timestamp", lambda: with_value(frame(), 5, "date",
                                                   pd.Timestamp("2020-01-06 12:00")),
         "irregular_timestamps", ["'date'", "2020-01-06 12:00:00", "'D'"], column="date"),
    Case("off_grid_month", lambda: with_value(frame(freq="MS"), 2, "date",
                                              pd.Timestamp("2020-03-15")),
         "irregular_timestamps", ["2020-03-15", "'MS'"], problem={"frequency": "MS"},
         column="date"),
    Case("unknown_frequency",
         lambda: pd.DataFrame({"date": pd.to_datetime(
             ["2020-01-01", "2020-01-03", "2020-01-08", "2020-01-09", "2020-01-15 12:00",
              "2020-02-01", "2020-02-02", "2020-02-20", "2020-03-04", "2020-03-05",
              "2020-03-31", "2020-04-11", "2020-04-12", "2020-05-01"], format="ISO8601"),
             "y": np.arange(1.0, N + 1.0)}),
         "unknown_frequency", ["'date'", "2020-01-03", "declare `frequency`"],
         problem={"frequency": None}, column="date"),
    Case("unknown_frequency_two_rows", lambda: frame(n=2), "unknown_frequency",
         ["2020-01-01, 2020-01-02"], problem={"frequency": None}, column="date"),
    # Gaps --------------------------------------------------------------------------------
    Case("gap_rejected", lambda: frame().drop(index=[5, 6]), "gap",
         ["'y'", "2 missing", "'reject'", "2020-01-06, 2020-01-07"], column="y"),
    Case("gap_nan_value_rejected", lambda: with_value(frame(), 8, "y", np.nan), "gap",
         ["'y'", "2020-01-09"], column="y"),
    Case("gap_in_exog_rejected", lambda: with_value(frame(x=np.arange(N) % 5 + 0.5), 3, "x",
                                                    np.nan),
         "gap", ["'x'", "2020-01-04"], problem={"exog": ["x"]}, column="x"),
    Case("gap_in_panel_series", lambda: panel(("a", frame()), ("b", frame().drop(index=[7]))),
         "gap", ["series 'b'", "'y'", "2020-01-08"], problem=PANEL, column="y", series="b"),
    Case("trailing_gap_not_interpolated", lambda: with_value(frame(), N - 1, "y", np.nan),
         "gap", ["'y'", "end", "2020-01-14"], problem={"gaps": "interpolate"}, column="y"),
    Case("leading_exog_gap_not_interpolated",
         lambda: with_value(frame(x=np.arange(N) % 5 + 0.5), 0, "x", np.nan),
         "gap", ["'x'", "start", "2020-01-01"],
         problem={"gaps": "interpolate", "exog": ["x"]}, column="x"),
    Case("gap_longer_than_max_gap", lambda: frame(n=N + 5).drop(index=[1, 4, 5, 6]), "gap",
         ["'y'", "3 consecutive", "max_gap=2", "2020-01-05 to 2020-01-07"],
         problem={"gaps": "interpolate", "max_gap": 2}, column="y"),
    Case("ffill_gap_longer_than_max_gap", lambda: frame(n=N + 4).drop(index=[4, 5, 6, 7]),
         "gap", ["'y'", "4 consecutive", "max_gap=3"],
         problem={"gaps": "ffill", "max_gap": 3}, column="y"),
    # Values ------------------------------------------------------------------------------
    Case("infinite", lambda: csv(daily_csv({3: "2020-01-04,inf"})), "infinite",
         ["'y'", "2020-01-04"], column="y"),
    Case("negative_infinite_exog",
         lambda: with_value(frame(x=np.arange(N) % 5 + 0.5), 9, "x", -np.inf),
         "infinite", ["'x'", "2020-01-10"], problem={"exog": ["x"]}, column="x"),
    Case("constant", lambda: frame(y=[5.0] * N), "constant", ["'y'", "5.0"], column="y"),
    Case("non_positive_problem_log", lambda: with_value(frame(), 2, "y", 0.0), "non_positive",
         ["'y'", "2020-01-03", "> 0"], problem={"transform": "log"}, column="y"),
    Case("non_positive_model_log_diff", lambda: with_value(frame(), 6, "y", -3.0),
         "non_positive", ["'y'", "2020-01-07"],
         problem={"models": [{"family": "naive", "transform": "log-diff"}]}, column="y"),
    Case("too_short", lambda: frame(n=8), "too_short", ["8 observations", "at least 12"]),
    Case("too_short_panel_series", lambda: panel(("a", frame()), ("b", frame().iloc[6:])),
         "too_short", ["series 'b'", "8 observations"], problem=PANEL, series="b"),
    Case("too_short_after_cutoff", frame, "too_short", ["10 observations"],
         cutoff="2020-01-10"),
    # Panels and cutoffs ------------------------------------------------------------------
    Case("stale_series", lambda: panel(("a", frame()), ("b", frame().iloc[:-3])),
         "stale_series", ["series 'b'", "2020-01-11", "2020-01-14"],
         problem={**PANEL, "ragged_ends": "drop"}, series="b"),
    Case("empty_series", lambda: panel(("a", frame()), ("b", frame(y=[np.nan] * N))),
         "empty_series", ["series 'b'", "missing"], problem=PANEL, series="b"),
    Case("empty_after_cutoff", frame, "empty", ["'date'", "2019-12-31"],
         cutoff="2019-12-31", column="date"),
    Case("no_valid_series",
         lambda: panel(("a", frame(n=5)), ("b", frame(y=[2.0] * N)),
                       ("c", frame().drop(index=[3]))),
         "no_valid_series", ["all 3 series"], problem={**PANEL, "drop_invalid_series": True}),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_data_is_rejected(case: Case):
    problem = make_problem(**case.problem)
    with pytest.raises(DataValidationError) as info:
        validate(case.build(), problem, cutoff=case.cutoff)
    err = info.value
    assert case.kind in err.kinds, str(err)
    assert err.problem == "demo"
    message = str(err)
    assert message.startswith("problem 'demo': ")
    for text in case.expected:
        assert text in message, f"{text!r} not in {message!r}"
    issue = next(i for i in err.issues if i.kind == case.kind)
    assert issue.column == case.column
    assert issue.series == case.series
    assert f"[{case.kind}]" in message


def test_every_issue_kind_is_covered():
    emitted = set(re.findall(r'Issue\(\s*"(\w+)"', inspect.getsource(validate_module)))
    assert len(emitted) >= 15
    assert emitted <= {case.kind for case in CASES}


def test_issue_and_error_formatting():
    issue = Issue("gap", "3 missing", column="y", series="b")
    assert str(issue) == "[gap] series 'b', column 'y': 3 missing"
    assert str(Issue("no_valid_series", "none left")) == "[no_valid_series] none left"
    err = DataValidationError("p", [Issue("constant", f"n{i}", series=str(i)) for i in range(25)])
    assert err.kinds == {"constant"}
    assert isinstance(err, ValueError)
    message = str(err)
    assert message.startswith("problem 'p': 25 data issue(s)")
    assert "series '19'" in message and "series '20'" not in message
    assert "... and 5 more" in message


def test_every_broken_series_is_reported_not_just_the_first():
    raw = panel(("a", frame().drop(index=[4])), ("b", frame(y=[1.0] * N)), ("c", frame()),
                ("d", frame().iloc[:-1]))
    with pytest.raises(DataValidationError) as info:
        validate(raw, make_problem(**PANEL, ragged_ends="drop"))
    err = info.value
    assert err.kinds == {"gap", "constant", "stale_series"}
    assert {i.series for i in err.issues} == {"a", "b", "d"}


def test_same_date_in_two_series_is_not_a_duplicate():
    data = validate(panel(("a", frame()), ("b", frame())), make_problem(**PANEL))
    assert data.series_ids == ["a", "b"]
    assert len(data.y) == 2 * N


# Clean data -------------------------------------------------------------------------------


def test_single_series_output():
    raw = frame(x=np.arange(N) % 3 + 0.5, unused=["z"] * N)
    data = validate(raw, make_problem(exog=["x"]))
    assert not data.is_panel
    assert isinstance(data.y.index, pd.DatetimeIndex)
    assert data.y.index.name == DATE
    assert data.y.index.freqstr == "D"
    assert data.freq == "D" and data.season == 1
    assert list(data.y.columns) == ["y"] and list(data.X.columns) == ["x"]
    assert data.y.index.equals(data.X.index)
    assert data.y["y"].tolist() == list(np.arange(1.0, N + 1.0))
    assert data.X["x"].tolist() == list(np.arange(N) % 3 + 0.5)
    assert data.dropped == {}
    assert validate(frame(), make_problem()).X is None


def test_panel_output_has_series_date_multiindex():
    raw = panel(("b", frame(x=np.arange(N) + 0.5)), ("a", frame(x=np.arange(N) + 1.5)))
    data = validate(raw, make_problem(exog=["x"], **PANEL))
    assert data.is_panel
    assert isinstance(data.y.index, pd.MultiIndex)
    assert list(data.y.index.names) == [SERIES, DATE]
    assert data.series_ids == ["a", "b"]
    assert data.y.index.is_monotonic_increasing
    assert data.X.index.equals(data.y.index)
    assert data.y.loc["a", "y"].tolist() == list(np.arange(1.0, N + 1.0))
    assert data.X.loc["a", "x"].tolist() == list(np.arange(N) + 1.5)
    one = data.series("b")
    assert one.y.index.freqstr == "D" and len(one.y) == N


def test_numeric_ids_become_strings():
    raw = panel(("1", frame()), ("2", frame()))
    raw["series_id"] = raw["series_id"].astype(int)
    assert validate(raw, make_problem(**PANEL)).series_ids == ["1", "2"]


def test_unsorted_input_is_sorted():
    raw = frame(x=np.arange(N) * 10.0)
    shuffled = raw.iloc[np.random.default_rng(0).permutation(N)].reset_index(drop=True)
    assert not shuffled["date"].is_monotonic_increasing
    data = validate(shuffled, make_problem(exog=["x"]))
    assert data.y.index.is_monotonic_increasing
    expected = raw.set_index("date")
    assert data.y["y"].to_numpy().tolist() == expected["y"].tolist()
    assert data.X["x"].to_numpy().tolist() == expected["x"].tolist()
    assert data.y.index.freqstr == "D"


def test_unsorted_panel_is_sorted():
    raw = panel(("b", frame()), ("a", frame()))
    shuffled = raw.iloc[np.random.default_rng(1).permutation(len(raw))]
    data = validate(shuffled, make_problem(**PANEL))
    assert data.y.index.is_monotonic_increasing
    for sid in ("a", "b"):
        assert data.y.loc[sid, "y"].tolist() == list(np.arange(1.0, N + 1.0))


def test_interpolate_fills_inner_gaps_linearly():
    raw = frame(y=np.arange(N) * 2.0 + 1.0, x=np.arange(N) * 3.0)
    raw = raw.drop(index=[4, 5])  # two missing rows
    raw.loc[9, "x"] = np.nan  # and one missing value
    data = validate(raw, make_problem(gaps="interpolate", exog=["x"]))
    assert len(data.y) == N
    assert data.y.index.equals(pd.date_range(START, periods=N, freq="D"))
    np.testing.assert_allclose(data.y["y"].to_numpy(), np.arange(N) * 2.0 + 1.0)
    np.testing.assert_allclose(data.X["x"].to_numpy(), np.arange(N) * 3.0)
    assert not data.y.isna().any().any() and not data.X.isna().any().any()


def test_interpolate_within_max_gap():
    raw = frame(y=np.arange(N) ** 2.0).drop(index=[3, 4])
    data = validate(raw, make_problem(gaps="interpolate", max_gap=2))
    # Linear between day 2 (4.0) and day 5 (25.0).
    assert data.y["y"].iloc[3] == pytest.approx(11.0)
    assert data.y["y"].iloc[4] == pytest.approx(18.0)


def test_ffill_carries_last_value_forward():
    raw = frame(y=np.arange(N) * 2.0 + 1.0).drop(index=[4, 5])
    data = validate(raw, make_problem(gaps="ffill"))
    assert data.y["y"].iloc[3:7].tolist() == [7.0, 7.0, 7.0, 13.0]
    trailing = with_value(frame(), N - 1, "y", np.nan)
    assert validate(trailing, make_problem(gaps="ffill")).y["y"].iloc[-1] == N - 1


def test_zero_fills_with_zero():
    raw = frame().drop(index=[4, 5])
    raw.loc[N - 1, "y"] = np.nan  # trailing values are filled too
    data = validate(raw, make_problem(gaps="zero"))
    assert len(data.y) == N
    assert data.y["y"].iloc[4:6].tolist() == [0.0, 0.0]
    assert data.y["y"].iloc[-1] == 0.0
    assert data.y["y"].iloc[3] == 4.0


def test_leading_missing_targets_are_trimmed():
    late = frame(n=N + 3)
    late.loc[:2, "y"] = np.nan
    data = validate(panel(("a", frame(n=N + 3)), ("b", late)), make_problem(**PANEL))
    assert len(data.y.loc["a"]) == N + 3
    assert len(data.y.loc["b"]) == N
    assert data.y.loc["b"].index[0] == pd.Timestamp("2020-01-04")


def test_drop_invalid_series_records_reasons():
    raw = panel(("a", frame()), ("b", frame(y=[3.0] * N)), ("c", frame().iloc[:-2]),
                ("d", frame().drop(index=[6])))
    data = validate(raw, make_problem(drop_invalid_series=True, ragged_ends="drop", **PANEL))
    assert data.series_ids == ["a"]
    assert set(data.dropped) == {"b", "c", "d"}
    assert data.dropped["b"].startswith("[constant]") and "3.0" in data.dropped["b"]
    assert data.dropped["c"].startswith("[stale_series]") and "2020-01-12" in data.dropped["c"]
    assert data.dropped["d"].startswith("[gap]") and "2020-01-07" in data.dropped["d"]
    assert data.y.loc["a", "y"].tolist() == list(np.arange(1.0, N + 1.0))


def test_drop_invalid_series_needs_a_panel():
    with pytest.raises(DataValidationError) as info:
        validate(frame(y=[1.0] * N), make_problem(drop_invalid_series=True))
    assert info.value.kinds == {"constant"}


def test_series_limit_keeps_first_series():
    raw = panel(*[(sid, frame()) for sid in ("c", "a", "b")])
    data = validate(raw, make_problem(series_limit=2, **PANEL))
    assert data.series_ids == ["a", "b"]


def test_cutoff_excludes_later_rows():
    raw = frame(n=N + 6)
    data = validate(raw, make_problem(), cutoff=pd.Timestamp("2020-01-15"))
    assert data.end == pd.Timestamp("2020-01-15")
    assert len(data.y) == 15
    assert data.y["y"].iloc[-1] == 15.0
    # A string cutoff and a bad row after the cutoff: the bad row is never looked at.
    raw.loc[N + 5, "y"] = np.inf
    assert validate(raw, make_problem(), cutoff="2020-01-15").end == pd.Timestamp("2020-01-15")


def test_cutoff_in_panel_applies_to_every_series():
    raw = panel(("a", frame(n=N + 4)), ("b", frame(n=N + 4)))
    data = validate(raw, make_problem(**PANEL), cutoff=pd.Timestamp("2020-01-14"))
    assert data.end == pd.Timestamp("2020-01-14")
    assert len(data.y) == 2 * N


def test_timezone_aware_cutoff_is_compared_in_utc():
    # Naive timestamps are UTC; 22:00 at UTC-5 on Jan 13 is 03:00 UTC on Jan 14.
    data = validate(frame(n=N + 4), make_problem(),
                    cutoff=pd.Timestamp("2020-01-13 22:00", tz="America/New_York"))
    assert data.end == pd.Timestamp("2020-01-14")


def test_timezone_aware_timestamps_become_naive_utc():
    raw = frame()
    raw["date"] = pd.date_range("2020-01-01 01:00", periods=N, freq="D", tz="Europe/Paris")
    data = validate(raw, make_problem())
    assert data.y.index.tz is None
    assert data.y.index[0] == pd.Timestamp("2020-01-01 00:00")
    text = csv(daily_csv({i: f"2020-01-{i + 1:02d}T02:00+02:00,{i + 1}" for i in range(N)}))
    assert validate(text, make_problem()).y.index[0] == pd.Timestamp("2020-01-01 00:00")


def test_mixed_utc_offsets_are_parsed():
    rows = {i: f"2020-01-{i + 1:02d}T{'01:00+01:00' if i % 2 else '02:00+02:00'},{i + 1}"
            for i in range(N)}
    data = validate(csv(daily_csv(rows)), make_problem())
    assert data.y.index.equals(pd.date_range(START, periods=N, freq="D"))


def test_csv_strings_and_booleans_are_converted():
    raw = csv(daily_csv(header="date,y", rows={0: "2020-01-01,1.5"}))
    raw["flag"] = [True, False] * (N // 2)
    data = validate(raw, make_problem(exog=["flag"]))
    assert data.y["y"].iloc[0] == 1.5
    assert data.X["flag"].dtype == float
    assert data.X["flag"].tolist()[:2] == [1.0, 0.0]


def test_frequency_is_inferred_when_not_declared():
    # Season 7 needs 2 * 7 + 2 + horizon 2 = 18 observations.
    data = validate(frame(n=20), make_problem(frequency=None, season_length=None))
    assert data.freq == "D" and data.season == 7
    assert data.y.index.freqstr == "D"
    weekly = validate(frame(n=110, freq="W-SUN", start="2020-01-05"),
                      make_problem(frequency=None, season_length=None))
    assert weekly.freq == "W-SUN" and weekly.season == 52


def test_monthly_frequency_is_inferred_despite_a_gap():
    raw = frame(n=30, freq="MS").drop(index=[10])
    data = validate(raw, make_problem(frequency=None, season_length=None, gaps="interpolate"))
    assert data.freq == "MS" and data.season == 12
    assert len(data.y) == 30
    assert data.y["y"].iloc[10] == pytest.approx(11.0)
    with pytest.raises(DataValidationError) as info:
        validate(raw, make_problem(frequency=None, season_length=None))
    assert info.value.kinds == {"gap"}
    assert "2020-11-01" in str(info.value)


def test_quarterly_frequency_is_inferred():
    data = validate(frame(n=20, freq="QS"), make_problem(frequency=None, season_length=None))
    assert data.season == 4
    assert data.y.index.freqstr.startswith("QS")


def test_panel_frequency_inferred_from_first_series():
    raw = panel(("a", frame()), ("b", frame().drop(index=[3])))
    data = validate(raw, make_problem(frequency=None, gaps="ffill", **PANEL))
    assert data.freq == "D"
    assert len(data.y.loc["b"]) == N


def test_integer_years_become_year_starts():
    raw = pd.DataFrame({"date": np.arange(2000, 2000 + N), "y": np.arange(1.0, N + 1.0)})
    data = validate(raw, make_problem(frequency="YS"))
    assert data.y.index[0] == pd.Timestamp("2000-01-01")
    assert data.y.index[-1] == pd.Timestamp(f"{2000 + N - 1}-01-01")


def test_ffill_never_copies_a_later_value_backwards():
    raw = frame(x=[np.nan, np.nan] + [5.0] * (N - 2))
    with pytest.raises(DataValidationError) as info:
        validate(raw, make_problem(gaps="ffill", exog=["x"]))
    assert "gap" in info.value.kinds
    assert "no earlier value to carry forward" in str(info.value)


def test_a_series_with_a_gap_still_reports_its_other_issues():
    raw = frame().drop(index=[5]).assign(y=3.0)
    with pytest.raises(DataValidationError) as info:
        validate(raw, make_problem())
    assert {"gap", "constant"} <= info.value.kinds


# The panel fast path ----------------------------------------------------------------------

DEFECTS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "clean": lambda f: f,
    "exog_gap": lambda f: f.assign(x=f["x"].mask(f.index.isin([4, 5]))),
    "target_gap": lambda f: f.assign(y=f["y"].mask(f.index == 6)),
    "both_gaps": lambda f: f.assign(y=f["y"].mask(f.index == 3), x=f["x"].mask(f.index == 8)),
    "missing_row": lambda f: f.drop(index=7),
    "duplicate": lambda f: pd.concat([f, f.iloc[[2]]]),
    "late_start": lambda f: f.iloc[3:],
    "stale": lambda f: f.iloc[:-2],
    "leading_nan": lambda f: f.assign(y=f["y"].mask(f.index < 2)),
    "edge_gap": lambda f: f.assign(x=f["x"].mask(f.index == len(f) - 1)),
    "infinite": lambda f: f.assign(x=f["x"].where(f.index != 5, np.inf)),
    "constant": lambda f: f.assign(y=5.0),
    "non_positive": lambda f: f.assign(y=f["y"] - 3.0),
    "short": lambda f: f.iloc[-8:],
    "off_grid": lambda f: f.assign(date=f["date"].where(
        f.index != 4, f["date"] + pd.Timedelta(hours=6))),
}


@pytest.mark.parametrize("gaps", ["reject", "interpolate", "ffill", "zero"])
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_the_panel_fast_path_agrees_with_checking_every_series(defect, gaps, monkeypatch):
    """Validation takes clean series in one array pass and checks the rest one by one: on a
    panel with one defective series among clean ones, the data (or the error) must be what
    checking every series one by one gives."""
    rng = np.random.default_rng(len(defect))
    parts = []
    for sid in ("a", "b", "c"):
        one = frame(n=20, x=rng.normal(10.0, 1.0, 20))
        parts.append((sid, DEFECTS[defect](one) if sid == "b" else one))
    raw = panel(*parts)
    problem = make_problem(**PANEL, exog=["x"], gaps=gaps, max_gap=3, transform="log",
                           drop_invalid_series=gaps == "zero")

    def outcome() -> Any:
        try:
            data = validate(raw.copy(), problem)
        except DataValidationError as err:
            return sorted(str(issue) for issue in err.issues)
        return data.y, data.X, sorted(data.dropped)

    fast = outcome()
    monkeypatch.setattr(validate_module, "clean_series", lambda values, *a, **k: (
        values.iloc[:0].drop(columns=SERIES).set_index(
            pd.MultiIndex.from_arrays([[], pd.DatetimeIndex([])], names=[SERIES, DATE])),
        sorted(values[SERIES].unique())))
    slow = outcome()
    if isinstance(slow, list):
        assert fast == slow
        return
    for got, want in zip(fast[:2], slow[:2], strict=True):
        pd.testing.assert_frame_equal(got, want, check_index_type=False)
    assert fast[2] == slow[2]


# Ragged panels ----------------------------------------------------------------------------


@pytest.mark.parametrize("gaps", ["reject", "interpolate"])
def test_ragged_series_keep_their_own_end_by_default(gaps):
    """A series that ends early (late reporting) is kept with its own last date, on the
    fast path (clean) and on the one-by-one path (with a gap to fill) alike."""
    late = frame(n=20).iloc[:-3]
    if gaps == "interpolate":
        late = late.assign(y=late["y"].mask(late.index == 4))
    data = validate(panel(("a", frame(n=20)), ("b", late)), make_problem(**PANEL, gaps=gaps))
    assert data.series_ids == ["a", "b"] and not data.dropped
    assert data.y.loc["b"].index[-1] == pd.Timestamp("2020-01-17")
    assert data.y.loc["a"].index[-1] == pd.Timestamp("2020-01-20")
    assert data.y.loc["b"].isna().sum().sum() == 0


def test_ragged_ends_drop_keeps_the_old_rule():
    raw = panel(("a", frame()), ("b", frame().iloc[:-3]))
    data = validate(raw, make_problem(**PANEL, ragged_ends="drop", drop_invalid_series=True))
    assert data.series_ids == ["a"] and data.dropped["b"].startswith("[stale_series]")
