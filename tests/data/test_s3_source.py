"""s3:// sources against a real S3 server on loopback (moto's threaded server): one object,
prefixes and globs read in key order, lineage with ETags, ids as text, and every bad input
as a clear error naming the URI."""

from __future__ import annotations

import gzip
import io
import json
import re
from typing import Any

import pandas as pd
import pytest

from forecastflow.data.sources import (
    SourceError,
    SourceOptions,
    SourceUnavailableError,
    read,
    read_source,
)
from tests.conftest import free_port


def month(start: str, store: list[str], sales: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"date": [start] * len(store), "store": store, "sales": sales})


def put_csv(s3: Any, key: str, frame: pd.DataFrame, gz: bool = False) -> None:
    body = frame.to_csv(index=False).encode()
    s3.put_object(Bucket=s3.bucket, Key=key, Body=gzip.compress(body) if gz else body)


def put_parquet(s3: Any, key: str, frame: pd.DataFrame) -> None:
    s3.put_object(Bucket=s3.bucket, Key=key, Body=frame.to_parquet(index=False))


def test_one_csv_object_with_lineage(s3: Any):
    frame = month("2024-01-01", ["01", "1"], [1.0, 2.0])
    put_csv(s3, "sales.csv", frame)
    got = read(f"s3://{s3.bucket}/sales.csv", SourceOptions(text_columns=("store",)))
    pd.testing.assert_frame_equal(got.frame, frame)
    assert got.lineage["kind"] == "s3" and got.lineage["rows"] == 2
    [obj] = got.lineage["objects"]
    head = s3.head_object(Bucket=s3.bucket, Key="sales.csv")
    assert obj["key"] == "sales.csv" and obj["etag"] == head["ETag"].strip('"')
    assert got.lineage["endpoint"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("suffix", ["", "/", "/*.csv*", "/2024-*"])
def test_monthly_drops_concatenate_in_key_order(s3: Any, suffix: str):
    """Monthly exports under a prefix (or a glob) are read in key order, whatever order they
    were uploaded in; gzip and plain CSV mix; objects that are no table are skipped."""
    put_csv(s3, "crm/2024-03.csv", month("2024-03-01", ["a"], [3.0]))
    put_csv(s3, "crm/2024-01.csv.gz", month("2024-01-01", ["a"], [1.0]), gz=True)
    put_csv(s3, "crm/2024-02.csv", month("2024-02-01", ["a"], [2.0]))
    if suffix != "/2024-*":
        s3.put_object(Bucket=s3.bucket, Key="crm/_SUCCESS", Body=b"")
    got = read(f"s3://{s3.bucket}/crm{suffix}")
    assert got.frame["sales"].tolist() == [1.0, 2.0, 3.0]
    assert [o["key"] for o in got.lineage["objects"]] == [
        "crm/2024-01.csv.gz", "crm/2024-02.csv", "crm/2024-03.csv"]


def test_parquet_objects_and_numeric_ids_as_text(s3: Any):
    put_parquet(s3, "p/part-0.parquet", pd.DataFrame({
        "date": pd.to_datetime(["2024-01-01"]), "store": [7], "sales": [1.5]}))
    frame = read_source(f"s3://{s3.bucket}/p/", text_columns=["store"])
    assert frame["store"].tolist() == ["7"]
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])


def test_endpoint_and_credentials_from_an_airflow_connection(
        s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    put_csv(s3, "x.csv", month("2024-01-01", ["a"], [1.0]))
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_S3", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))
    got = read(f"s3://{s3.bucket}/x.csv", SourceOptions(aws_conn_id="crm_s3"))
    assert len(got.frame) == 1 and got.lineage["endpoint"] == s3_endpoint


@pytest.mark.parametrize(("key", "message"), [
    ("missing.csv", "no objects match"),
    ("empty/", "no objects match"),
    ("*.parquet", "no objects match"),
])
def test_missing_key_and_empty_prefix(s3: Any, key: str, message: str):
    put_csv(s3, "other.csv", month("2024-01-01", ["a"], [1.0]))
    uri = f"s3://{s3.bucket}/{key}"
    with pytest.raises(SourceError, match=message) as info:
        read(uri)
    assert uri in str(info.value)


def test_missing_bucket(s3: Any):
    with pytest.raises(SourceError, match="bucket does not exist") as info:
        read("s3://no-such-bucket-ff/sales.csv")
    assert "s3://no-such-bucket-ff/sales.csv" in str(info.value)


@pytest.mark.parametrize(("body", "name", "message"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "sales.parquet", "could not be read as parquet"),
    (b"date,sales\n2024-01-01,1\n2024-02-01,2,3,4\n", "sales.csv", "not a readable CSV"),
    (b"not gzip", "sales.csv.gz", "could not be read as csv.gz"),
])
def test_object_that_is_not_a_table(s3: Any, body: bytes, name: str, message: str):
    s3.put_object(Bucket=s3.bucket, Key=name, Body=body)
    with pytest.raises(SourceError, match=message) as info:
        read(f"s3://{s3.bucket}/{name}")
    assert f"s3://{s3.bucket}/{name}" in str(info.value)


def test_object_of_an_unknown_format(s3: Any):
    s3.put_object(Bucket=s3.bucket, Key="sales.json", Body=b"{}")
    with pytest.raises(SourceError, match="no CSV or Parquet objects"):
        read(f"s3://{s3.bucket}/sales.json")


def test_drops_with_different_columns_are_named(s3: Any):
    put_csv(s3, "d/1.csv", month("2024-01-01", ["a"], [1.0]))
    put_csv(s3, "d/2.csv", month("2024-02-01", ["a"], [2.0]).rename(columns={"sales": "qty"}))
    with pytest.raises(SourceError, match=r"d/2.csv: columns .* differ"):
        read(f"s3://{s3.bucket}/d/")


def test_wrong_credentials(s3: Any, monkeypatch: pytest.MonkeyPatch):
    """moto accepts any key unless told otherwise: a bucket policy denying everyone stands in
    for missing permissions."""
    put_csv(s3, "secret.csv", month("2024-01-01", ["a"], [1.0]))
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{s3.bucket}", f"arn:aws:s3:::{s3.bucket}/*"]}]})
    s3.put_bucket_policy(Bucket=s3.bucket, Policy=policy)
    try:
        with pytest.raises(SourceError, match="access denied") as info:
            read(f"s3://{s3.bucket}/secret.csv")
        assert s3.bucket in str(info.value)
    finally:
        s3.delete_bucket_policy(Bucket=s3.bucket)


def test_wrong_endpoint_is_unavailable_not_bad_input(s3: Any, monkeypatch: pytest.MonkeyPatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(SourceUnavailableError, match="cannot reach the S3 endpoint") as info:
        read(f"s3://{s3.bucket}/sales.csv")
    assert endpoint in str(info.value) and s3.bucket in str(info.value)


def test_an_object_replaced_while_listing_is_read_at_the_listed_etag(s3: Any):
    """Objects are read with If-Match on the ETag seen when listing, so the lineage never
    names one version and the frame holds another."""
    from forecastflow.data import s3 as s3_source

    put_csv(s3, "race.csv", month("2024-01-01", ["a"], [1.0]))
    client = s3_source.client()
    [obj] = s3_source.list_objects(client, f"s3://{s3.bucket}/race.csv")
    put_csv(s3, "race.csv", month("2024-01-01", ["a"], [9.0]))
    with pytest.raises(SourceError, match="changed while it was being read"):
        s3_source._read_object(client, s3.bucket, obj, SourceOptions())
    frame = pd.read_csv(io.BytesIO(s3.get_object(Bucket=s3.bucket, Key="race.csv")["Body"]
                                   .read()))
    assert frame["sales"].tolist() == [9.0]


@pytest.mark.parametrize(("keys", "tail", "expected"), [
    (["big.csv"], "big.csv", ["s3://{bucket}/big.csv is "]),
    (["m/1.csv", "m/2.csv.gz"], "m/", ["s3://{bucket}/m/ (2 objects, together) is ",
                                       "gzip-compressed"]),
], ids=["one_object", "a_prefix_together"])
def test_objects_over_the_size_limit_are_refused_before_reading(
        s3: Any, monkeypatch: pytest.MonkeyPatch, keys: list[str], tail: str,
        expected: list[str]):
    """The listed sizes of every matching object add up against
    FORECASTFLOW_MAX_SOURCE_BYTES before any is downloaded."""
    for number, key in enumerate(keys):
        put_csv(s3, key, month("2024-01-01", ["a"] * 20, [float(number)] * 20),
                gz=key.endswith(".gz"))
    total = sum(s3.head_object(Bucket=s3.bucket, Key=key)["ContentLength"] for key in keys)
    monkeypatch.setenv("FORECASTFLOW_MAX_SOURCE_BYTES", str(total - 1))
    with pytest.raises(SourceError, match="FORECASTFLOW_MAX_SOURCE_BYTES") as info:
        read(f"s3://{s3.bucket}/{tail}")
    message = str(info.value)
    assert f"({total} bytes)" in message and f"({total - 1} bytes)" in message
    for text in expected:
        assert text.format(bucket=s3.bucket) in message, message
    monkeypatch.setenv("FORECASTFLOW_MAX_SOURCE_BYTES", str(total))
    assert len(read(f"s3://{s3.bucket}/{tail}").frame) == 20 * len(keys)


@pytest.mark.parametrize(("body", "encoding", "expected"), [
    ("\ufeffdate,store,sales\n2024-01-01,Café,1\n".encode(), None, None),
    ("date,store,sales\n2024-01-01,Café,1\n".encode("utf-16"), None, None),
    ("date,store,sales\n2024-01-01,Café,1\n".encode("cp1252"), "cp1252", None),
    ("date,store,sales\n2024-01-01,Café,1\n".encode("cp1252"), None,
     "is not UTF-8 text: byte 0xe9 at byte offset 31 (line 2"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), None, "it is a PNG image"),
], ids=["utf8_bom", "utf16_bom", "cp1252_declared", "cp1252_undeclared", "png"])
def test_object_text_encodings(s3: Any, body: bytes, encoding: str | None,
                               expected: str | None):
    s3.put_object(Bucket=s3.bucket, Key="enc.csv", Body=body)
    uri = f"s3://{s3.bucket}/enc.csv"
    if expected is None:
        frame = read(uri, SourceOptions(encoding=encoding)).frame
        assert list(frame.columns) == ["date", "store", "sales"]
        assert frame["store"].tolist() == ["Café"]
        return
    with pytest.raises(SourceError, match=re.escape(expected)) as info:
        read(uri, SourceOptions(encoding=encoding))
    assert uri in str(info.value)
