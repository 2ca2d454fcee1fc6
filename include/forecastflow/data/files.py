"""What a source file's bytes are before pandas sees them: its size against the memory limit,
its text encoding (byte order marks, a declared ``encoding``), binary files renamed ``.csv``,
and where exactly a file stops decoding.

Errors are :class:`~forecastflow.data.sources.SourceError` naming the file, the offending
bytes and the fix.
"""

from __future__ import annotations

import codecs
import gzip
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from forecastflow.data.sources import SourceError

MAX_BYTES_ENV = "FORECASTFLOW_MAX_SOURCE_BYTES"
DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: a CSV of that size takes a few GiB as a frame
_UNITS = {"": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SNIFF = 64 * 1024  # bytes looked at for byte order marks, magic numbers and NUL bytes
# Byte order marks, longest first (a UTF-32 LE mark starts like a UTF-16 LE one).
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
         (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
# Files that are often renamed .csv by mistake, by their first bytes.
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx?)"),
          (b"\xd0\xcf\x11\xe0", "an OLE file (an Excel .xls?)"),
          (b"\x1f\x8b", "gzip-compressed: name it .csv.gz"),
          (b"PAR1", "a Parquet file: name it .parquet"))


def max_source_bytes() -> int:
    """The largest source read into memory: ``FORECASTFLOW_MAX_SOURCE_BYTES`` (bytes, or with
    a KiB/MiB/GiB/TiB suffix), 2 GiB when unset."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    match = re.fullmatch(r"(\d+)\s*([KMGT]iB)?", text, flags=re.IGNORECASE)
    if match is None or int(match[1]) == 0:
        raise SourceError(f"{MAX_BYTES_ENV}={text!r} is not a size: write a positive number "
                          "of bytes, optionally with a KiB, MiB, GiB or TiB suffix (8GiB)")
    return int(match[1]) * _UNITS[(match[2] or "").lower()]


def human(size: int) -> str:
    """``size`` bytes in the largest binary unit that keeps it at or above 1 (``2.5 GiB``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = _UNITS[unit.lower()]
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def check_size(where: str, size: int, compressed: bool = False) -> None:
    """Refuse a source larger than :func:`max_source_bytes` before reading a byte of it
    (gzip: the compressed size is checked; its rows take several times that)."""
    limit = max_source_bytes()
    if size <= limit:
        return
    note = " gzip-compressed (its rows take several times that)" if compressed else ""
    wanted = f"{math.ceil(size / 1024**3)}GiB"
    raise SourceError(
        f"source {where} is {human(size)} ({size} bytes){note}, over the limit of "
        f"{human(limit)} ({limit} bytes) set by {MAX_BYTES_ENV}: raise it on workers with the "
        f"memory for it ({MAX_BYTES_ENV}={wanted}), or read the data from a database "
        "(sql://), which streams only the needed columns and rows")


@contextmanager
def opened(data: Any, compressed: bool) -> Iterator[IO[bytes]]:
    """``data`` (a path or a seekable binary file object) as a binary stream from its current
    position, decompressed; a file object is put back at that position afterwards."""
    if not hasattr(data, "seek"):
        with (gzip.open(data, "rb") if compressed else open(data, "rb")) as handle:
            yield handle
        return
    start = data.tell()
    try:
        yield gzip.GzipFile(fileobj=data, mode="rb") if compressed else data
    finally:
        data.seek(start)


def text_encoding(data: Any, compressed: bool, where: str, declared: str | None) -> str:
    """The codec to read a CSV with: ``declared``, else the one its byte order mark names, else
    UTF-8. Refuses binary content (an image, a spreadsheet, NUL bytes) by what it looks like."""
    with opened(data, compressed) as handle:
        head = handle.read(_SNIFF)
    for magic, what in _MAGIC:
        if head.startswith(magic) and not _text_like(head[:16]):
            raise SourceError(f"source {where} is not a CSV text file: it is {what} (it starts "
                              f"with {head[:8]!r})")
    if declared:
        return declared
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    nul = head.find(b"\x00")
    if nul >= 0:
        raise SourceError(f"source {where} is not a CSV text file: it holds NUL bytes (the "
                          f"first at byte offset {nul}), so it is binary, or "
                          "UTF-16/32 text without a byte order mark: then declare its "
                          "`encoding` (utf-16-le, ...) in the problem")
    return "utf-8"


def _text_like(start: bytes) -> bool:
    """Whether a file's first bytes could begin a CSV (a header named ``PAR1`` can)."""
    if any(byte < 0x20 and byte not in b"\t\r\n" for byte in start):
        return False
    try:
        start.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.reason == "unexpected end of data"  # a character cut at the 16th byte
    return True


def undecodable(data: Any, compressed: bool, where: str, codec: str) -> str | None:
    """Why ``data`` is not ``codec`` text: the first offending byte's offset, its line and
    that line's bytes, and the likely fix; None when it decodes (streamed, 1 MiB at a time)."""
    decoder = codecs.getincrementaldecoder("utf-8" if codec == "utf-8-sig" else codec)()
    offset = lines = 0
    with opened(data, compressed) as handle:
        while chunk := handle.read(1024 * 1024):
            pending = len(decoder.getstate()[0])  # an unfinished character's first bytes
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                seen = err.object  # the pending bytes, then this chunk
                at = offset - pending + err.start
                line = lines + seen[:err.start].count(b"\n") - seen[:pending].count(b"\n") + 1
                first = seen.rfind(b"\n", 0, err.start) + 1
                end = seen.find(b"\n", err.start)
                text = seen[max(first, err.start - 40):end if end >= 0 else err.start + 40]
                return _decode_message(where, codec, seen[err.start], at, line, text,
                                       compressed)
            offset += len(chunk)
            lines += chunk.count(b"\n")
    return None


def _decode_message(where: str, codec: str, byte: int, at: int, line: int, text: bytes,
                    compressed: bool) -> str:
    label = "UTF-8" if codec in ("utf-8", "utf-8-sig") else codec
    fix = ("a file written by Excel or another Windows program is usually cp1252 (latin-1 "
           "for older ones): declare `encoding: cp1252` in the problem" if label == "UTF-8"
           else f"check the problem's `encoding: {codec}`")
    return (f"source {where} is not {label} text: byte 0x{byte:02x} at byte offset {at}"
            f"{' of the uncompressed content' if compressed else ''} (line {line}: "
            f"{text[:80]!r}) cannot be decoded; {fix}")
