"""Objects in S3 (or an S3-compatible store) through boto3: clients, listing, reading, errors.

Credentials come from boto3's standard chain (environment, shared files, instance roles), or
from an Airflow-style connection (``aws_conn_id``: login = access key id, password = secret,
extras ``endpoint_url`` / ``region_name``). The endpoint is ``endpoint_url`` if given, else
boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``. Errors name the ``s3://`` URI.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from forecastflow.data.sources import (
    SourceError,
    SourceOptions,
    SourceUnavailableError,
    file_format,
    parse_table,
)

log = logging.getLogger(__name__)

GLOB_CHARS = "*?["
# Bad input (never retried): the message says what to fix.
_CODES = {
    "NoSuchBucket": "bucket does not exist",
    "NoSuchKey": "no such object",
    "404": "no such object",
    "NotFound": "no such object",
    "AccessDenied": "access denied (check the credentials' permissions on this bucket)",
    "403": "access denied (check the credentials' permissions on this bucket)",
    "Forbidden": "access denied (check the credentials' permissions on this bucket)",
    "InvalidAccessKeyId": "the access key id is not known to this endpoint",
    "SignatureDoesNotMatch": "the secret access key is wrong",
    "InvalidBucketName": "invalid bucket name",
    "PreconditionFailed": "the object changed while it was being read",
}


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise SourceError(f"{uri!r} names no bucket (s3://bucket/key)")
    return bucket, key


def client(endpoint_url: str | None = None, aws_conn_id: str | None = None) -> Any:
    """A boto3 S3 client with short connect timeouts and few retries (a wrong endpoint fails
    in seconds, not minutes); one per settings and AWS environment, reused (creating one
    costs tens of milliseconds)."""
    aws_env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    return _client(endpoint_url, aws_conn_id, aws_env)


@functools.lru_cache(maxsize=32)
def _client(endpoint_url: str | None, aws_conn_id: str | None,
            aws_env: tuple[tuple[str, str], ...]) -> Any:
    import boto3
    from botocore.config import Config

    settings: dict[str, Any] = {}
    if aws_conn_id:
        from forecastflow.connections import get_connection

        conn = get_connection(aws_conn_id)
        settings = {"aws_access_key_id": conn.login, "aws_secret_access_key": conn.password,
                    "region_name": conn.extra.get("region_name"),
                    "endpoint_url": conn.extra.get("endpoint_url") or conn.host or None}
        if conn.extra.get("aws_session_token"):
            settings["aws_session_token"] = conn.extra["aws_session_token"]
    if endpoint_url:
        settings["endpoint_url"] = endpoint_url
    config = Config(connect_timeout=5, read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"})
    return boto3.session.Session().client(
        "s3", config=config, **{k: v for k, v in settings.items() if v is not None})


def endpoint_of(s3: Any) -> str:
    return str(s3.meta.endpoint_url)


@contextmanager
def translated(uri: str, s3: Any) -> Iterator[None]:
    """boto3/botocore errors as ``SourceError`` (bad input) or ``SourceUnavailableError``
    (the endpoint cannot be reached), naming ``uri`` and the endpoint."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    try:
        yield
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _CODES:
            raise SourceError(f"{uri}: {_CODES[code]} ({code})") from None
        if status and int(status) >= 500:
            raise SourceUnavailableError(f"{uri}: the S3 endpoint {endpoint_of(s3)} answered "
                                         f"{status} {code}") from None
        raise SourceError(f"{uri}: S3 error {code or status}: {err}") from None
    except NoCredentialsError:
        raise SourceError(f"{uri}: no AWS credentials found (set AWS_ACCESS_KEY_ID/"
                          "AWS_SECRET_ACCESS_KEY, a profile, or aws_conn_id)") from None
    except EndpointConnectionError as err:
        raise SourceUnavailableError(f"{uri}: cannot reach the S3 endpoint "
                                     f"{endpoint_of(s3)} ({err})") from None
    except BotoCoreError as err:  # timeouts, bad endpoint URLs, malformed responses
        raise SourceUnavailableError(f"{uri}: S3 endpoint {endpoint_of(s3)}: {err}") from None


def list_objects(s3: Any, uri: str) -> list[dict[str, Any]]:
    """Objects named by ``uri``, in key order: one key, every object under a prefix
    (``s3://b/sales/``, ``s3://b``) or the keys matching a glob (``s3://b/crm/*.csv``)."""
    bucket, key = split_uri(uri)
    glob = any(ch in key for ch in GLOB_CHARS)
    if key and not key.endswith("/") and not glob:
        with translated(uri, s3):
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
                return [{"Key": key, "ETag": head.get("ETag"), "Size": head["ContentLength"]}]
            except s3.exceptions.ClientError as err:
                if str(err.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey"):
                    raise
        key += "/"  # not an object: maybe a "folder"
    prefix = key[: min((key.find(ch) for ch in GLOB_CHARS if ch in key), default=len(key))]
    found = []
    with translated(uri, s3):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [obj for obj in page.get("Contents", [])
                      if not obj["Key"].endswith("/")
                      and (not glob or fnmatch.fnmatchcase(obj["Key"], key))]
    if not found:
        raise SourceError(f"{uri}: no objects match (empty prefix or no such key) in bucket "
                          f"{bucket!r} at {endpoint_of(s3)}")
    return sorted(found, key=lambda obj: obj["Key"])


def read_objects(uri: str, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The CSV/Parquet objects named by ``uri`` concatenated in key order, and their lineage
    (endpoint, bucket, and each key with its ETag, version and size)."""
    s3 = client(options.endpoint_url, options.aws_conn_id)
    bucket, _ = split_uri(uri)
    objects = list_objects(s3, uri)
    readable = [obj for obj in objects if file_format(obj["Key"])]
    skipped = [obj["Key"] for obj in objects if not file_format(obj["Key"])]
    if skipped:
        if not readable:
            raise SourceError(f"{uri}: no CSV or Parquet objects (found {skipped[:5]})")
        log.warning("%s: skipping %d object(s) that are not CSV/Parquet: %s", uri,
                    len(skipped), skipped[:5])
    _check_total(uri, bucket, readable)
    frames, keys = [], []
    for number, obj in enumerate(readable, 1):
        frame, record = _read_object(s3, bucket, obj, options)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise SourceError(f"s3://{bucket}/{obj['Key']}: columns {list(frame.columns)} differ "
                              f"from s3://{bucket}/{keys[0]['key']}'s {list(frames[0].columns)}")
        frames.append(frame)
        keys.append(record)
        if len(readable) > 1:
            log.info("%s: object %d/%d %s, %d rows", uri, number, len(readable), obj["Key"],
                     len(frame))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return frame, {"kind": "s3", "endpoint": endpoint_of(s3), "bucket": bucket, "objects": keys}


def _check_total(uri: str, bucket: str, objects: list[dict[str, Any]]) -> None:
    """Refuse objects whose sizes (as listed, before any is read) add up to more than the
    memory limit; the message names the object, or the URI and how many objects match."""
    from forecastflow.data.files import check_size

    where = (f"s3://{bucket}/{objects[0]['Key']}" if len(objects) == 1
             else f"{uri} ({len(objects)} objects, together)")
    check_size(where, sum(int(obj.get("Size") or 0) for obj in objects),
               compressed=any(file_format(obj["Key"]) == "csv.gz" for obj in objects))


def _read_object(s3: Any, bucket: str, obj: dict[str, Any], options: SourceOptions,
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One object's rows, read at the ETag it was listed with."""
    where = f"s3://{bucket}/{obj['Key']}"
    with translated(where, s3):
        extra = {"IfMatch": obj["ETag"]} if obj.get("ETag") else {}
        response = s3.get_object(Bucket=bucket, Key=obj["Key"], **extra)
        body = response["Body"].read()
    frame = parse_table(io.BytesIO(body), file_format(obj["Key"]) or "csv", where,
                        options.text_columns, options.columns, options.encoding)
    return frame, {"key": obj["Key"], "etag": str(response.get("ETag", "")).strip('"'),
                   "version_id": response.get("VersionId"), "bytes": len(body)}
