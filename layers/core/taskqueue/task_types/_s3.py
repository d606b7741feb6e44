"""S3 helpers shared by the task types: owner-prefix checks, byte ranges, JSON and listings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskqueue.errors import InputNotFound, InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# What S3 answers for an object that does not exist (GetObject, HeadObject).
MISSING_CODES = ("404", "NoSuchKey", "NotFound")


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def uploads_prefix(owner: str) -> str:
    """The owner's own upload area: every input a task reads is under it."""
    return f"uploads/{owner}/"


def require_under(key: str, prefix: str, what: str) -> None:
    """Refuse input outside the caller's own upload area, so no one reads another's files:
    InvalidInput, permanent (no attempt could read it)."""
    if not key.startswith(prefix) or ".." in key.split("/"):
        raise InvalidInput(f"{what} must be under your upload prefix {prefix!r}, got {key!r}")


def delete_under(s3: S3Client, bucket: str, prefix: str, keep: Iterable[str] = ()) -> int:
    """Delete every object whose key starts with `prefix` (but those in `keep`): one listing
    a thousand keys, one DeleteObjects request per page. Returns how many were deleted."""
    kept = set(keep)
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [item["Key"] for item in page.get("Contents", []) if item["Key"] not in kept]
        if keys:
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
            )
            deleted += len(keys)
    return deleted


def object_size(s3: S3Client, bucket: str, key: str) -> int:
    """Size in bytes; a missing object is InputNotFound (permanent: no retry), naming it."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            raise InputNotFound(f"s3://{bucket}/{key} does not exist") from exc
        raise


def metadata(s3: S3Client, bucket: str, key: str) -> dict[str, str]:
    """The user metadata of an object; empty when there is no such object."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            return {}
        raise


def read_range(s3: S3Client, bucket: str, key: str, start: int, end: int) -> bytes:
    """Bytes start..end inclusive, as an HTTP Range request."""
    response = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
    return response["Body"].read()


def read_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def put_json(s3: S3Client, bucket: str, key: str, document: Any) -> None:
    body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(s3: S3Client, bucket: str, key: str) -> Any:
    return json.loads(read_bytes(s3, bucket, key))


def get_json_or_none(s3: S3Client, bucket: str, key: str) -> Any:
    """The JSON document at key; None when there is no such object."""
    try:
        return get_json(s3, bucket, key)
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            return None
        raise


def put_csv(
    s3: S3Client,
    bucket: str,
    key: str,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
) -> None:
    """Rows as one CSV object with a header line (built in memory: callers keep it small)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    body = text.getvalue().encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv; charset=utf-8")


def iter_keys(s3: S3Client, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under prefix, in key order, across all pages."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"], item["Size"]


def list_parts(s3: S3Client, bucket: str, key: str, upload_id: str) -> list[dict[str, Any]]:
    """The parts uploaded so far, as CompleteMultipartUpload wants them.

    Asking S3 rather than carrying every ETag in the checkpoint keeps the task state small.
    """
    parts: list[dict[str, Any]] = []
    marker = 0
    while True:
        page = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker)
        parts.extend(
            {"PartNumber": part["PartNumber"], "ETag": part["ETag"]}
            for part in page.get("Parts", [])
        )
        if not page.get("IsTruncated"):
            return parts
        marker = page["NextPartNumberMarker"]
