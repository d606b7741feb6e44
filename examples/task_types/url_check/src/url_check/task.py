"""URL_CHECK: fetch a list of URLs and report each one's status, bytes and timing.

The list is given inline (up to 100 URLs) or as an uploaded file (up to 10,000, one a line).
A chunk checks a batch of URLs side by side and writes their results to S3 under the index of
its first URL before the checkpoint, so a chunk run twice (after a crash) writes the same
object again; the checkpoint keeps only the cursor and two counts. ``finish`` reads the
chunks' objects back into one CSV and a summary. A URL that gets no answer, or one of 400 or
more, is a failed item: some failed is a SUCCESS with ``failed_items``; all failed is FAILED.
"""

from __future__ import annotations

import csv
import io
import json
import math
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from taskqueue.errors import InputNotFound, InvalidInput, PermanentError, UnreadableInput
from taskqueue.models import ChunkState, TaskResult, utcnow
from taskqueue.task_types.base import TaskContext

from url_check.addresses import AddressPolicy
from url_check.fetch import (
    MAX_URL_CHARS,
    Fetched,
    InvalidUrl,
    Limits,
    Resolver,
    fetch,
    parse_target,
)
from url_check.settings import loopback_allowed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KIB = 1024
MIB = 1024 * KIB
MAX_INLINE_URLS = 100  # params live on the task item, rewritten at every checkpoint
MAX_LISTED_URLS = 10_000
MAX_LIST_BYTES = 2 * MIB
MAX_LINE_BYTES = 4 * KIB
PARALLEL_CHECKS = 10
# A check that has not returned this long after its timeout is stuck resolving the host name
# (the resolver has no timeout of its own): it is reported as a timeout and left behind.
RESOLVE_GRACE_SECONDS = 5.0
SUMMARY_FAILURES = 20
SUMMARY_TEXT = 200
CSV_COLUMNS = (
    "index",
    "url",
    "final_url",
    "status",
    "ok",
    "bytes",
    "truncated",
    "content_length",
    "elapsed_ms",
    "redirects",
    "address",
    "error_code",
    "error",
)


def _checkable(url: str) -> str:
    try:
        parse_target(url)
    except InvalidUrl as exc:
        raise ValueError(f"not a URL to check: {exc}") from exc  # reported at the URL
    return url


CheckableUrl = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URL_CHARS, json_schema_extra={"format": "uri"}),
    AfterValidator(_checkable),
]


class UrlCheckParams(BaseModel):
    """Check `urls`, or the URLs of an uploaded list (`input_key`)."""

    model_config = ConfigDict(
        extra="forbid",
        title="URL_CHECK parameters",
        # The page's form offers the two ways of giving the URLs as a choice.
        json_schema_extra={
            "x-sources": [
                {"name": "list", "label": "Enter URLs", "fields": ["urls"]},
                {"name": "upload", "label": "Upload a list of URLs", "fields": ["input_key"]},
            ]
        },
    )

    urls: Annotated[list[CheckableUrl], Field(min_length=1, max_length=MAX_INLINE_URLS)] | None = (
        Field(
            default=None,
            description=f"http(s) URLs to check, at most {MAX_INLINE_URLS}. Give this or "
            "input_key.",
            examples=[["https://example.com/", "https://example.org/missing"]],
        )
    )
    input_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None,
        description=f"S3 key of an uploaded list (from POST /uploads, under uploads/<you>/): "
        f"one URL a line (the first CSV column), at most {MAX_LISTED_URLS:,} URLs and "
        f"{MAX_LIST_BYTES // MIB} MiB; blank lines, lines starting with # and a first line "
        "'url' are skipped. Give this or urls.",
        examples=["uploads/alice/links.csv"],
        json_schema_extra={"x-upload": {"accept": ["text/csv"], "target": "key"}},
    )
    method: Literal["GET", "HEAD"] = Field(
        default="GET", description="GET reads the body (up to max_bytes); HEAD asks for none."
    )
    timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=30,
        description="Seconds a URL may take, redirects and body included.",
    )
    max_bytes: int = Field(
        default=1 * MIB,
        ge=0,
        le=10 * MIB,
        description="Bytes of a body read at most; a longer body is reported truncated.",
    )
    follow_redirects: bool = Field(default=True, description="Follow 301/302/303/307/308.")
    max_redirects: int = Field(default=5, ge=0, le=10, description="Redirects followed at most.")
    urls_per_chunk: int = Field(
        default=10,
        ge=1,
        le=50,
        description=f"URLs per chunk, checked {PARALLEL_CHECKS} at a time (between checkpoints).",
        json_schema_extra={"x-advanced": True},
    )
    chunk_interval_seconds: int = Field(
        default=0,
        ge=0,
        le=900,
        description="Pause between chunks, to go easy on the sites checked (the task waits "
        "in the queue, not in a running function).",
        json_schema_extra={"x-advanced": True},
    )

    @model_validator(mode="after")
    def _one_source(self) -> UrlCheckParams:
        if (self.urls is None) == (self.input_key is None):
            raise ValueError("give exactly one of urls or input_key (an uploaded list)")
        return self

    @property
    def limits(self) -> Limits:
        return Limits(
            timeout_seconds=self.timeout_seconds,
            max_bytes=self.max_bytes,
            method=self.method,
            follow_redirects=self.follow_redirects,
            max_redirects=self.max_redirects,
        )


# ---------------------------------------------------------------- the uploaded list


def list_lines(data: bytes, start: int, at_eof: bool) -> Iterator[tuple[int, bytes]]:
    """(offset after the line, line) of each whole line of `data`, read from byte `start`;
    the rest after the last newline is a line only at the end of the object."""
    position = 0
    while position < len(data):
        newline = data.find(b"\n", position)
        if newline < 0:
            if at_eof:
                yield start + len(data), data[position:]
            return
        yield start + newline + 1, data[position : newline + 1]
        position = newline + 1


def list_item(line: bytes, first: bool) -> str | None:
    """The URL a line of the list holds, or None for a line that holds none."""
    text = line.decode("utf-8", errors="replace").strip()
    if first:
        text = text.removeprefix("\ufeff")
    if not text or text.startswith("#"):
        return None
    cell = next(csv.reader([text]), [""])
    url = cell[0].strip() if cell else ""
    if first and url.lower() == "url":
        return None  # a header line
    return url


def count_items(data: bytes) -> int:
    """How many URLs the whole list holds; a line too long or text not UTF-8 fails it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInput(f"the list is not UTF-8 text: {exc}") from exc
    count = 0
    begin = 0
    for number, (end, line) in enumerate(list_lines(data, 0, at_eof=True), start=1):
        if len(line) > MAX_LINE_BYTES:
            raise InvalidInput(f"line {number} is longer than {MAX_LINE_BYTES} bytes")
        count += list_item(line, first=begin == 0) is not None
        begin = end
    return count


def _read_list(s3: S3Client, bucket: str, key: str, etag: str, start: int, end: int) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}", IfMatch=etag)[
            "Body"
        ].read()
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
            raise PermanentError(
                f"{key} was replaced while the task ran", code="input_changed"
            ) from exc
        raise


# ---------------------------------------------------------------- checks and results


def check_all(
    batch: list[tuple[int, str]],
    limits: Limits,
    policy: AddressPolicy,
    resolve: Resolver = socket.getaddrinfo,
) -> list[dict[str, Any]]:
    """Each (index, URL) checked, PARALLEL_CHECKS at a time; results in the batch's order."""
    pool = ThreadPoolExecutor(max_workers=min(PARALLEL_CHECKS, len(batch)) or 1)
    try:
        futures = [pool.submit(fetch, url, limits, policy, resolve) for _, url in batch]
        waves = math.ceil(len(batch) / PARALLEL_CHECKS)
        wait(futures, timeout=waves * limits.timeout_seconds + RESOLVE_GRACE_SECONDS)
        results = []
        for (index, url), future in zip(batch, futures, strict=True):
            if future.done():
                fetched = future.result()
            else:
                fetched = Fetched.failure(
                    url,
                    "timeout",
                    "no answer from the host name's resolver within the timeout",
                    elapsed_ms=round(waves * limits.timeout_seconds * 1000),
                )
            results.append(result_row(index, fetched))
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def result_row(index: int, fetched: Fetched) -> dict[str, Any]:
    return {
        "index": index,
        "url": fetched.url,
        "final_url": fetched.final_url,
        "status": fetched.status,
        "ok": fetched.ok,
        "bytes": fetched.bytes,
        "truncated": fetched.truncated,
        "content_length": fetched.content_length,
        "elapsed_ms": fetched.elapsed_ms,
        "redirects": fetched.redirects,
        "address": fetched.address,
        "error_code": fetched.error_code or (None if fetched.ok else "http_error"),
        "error": fetched.error or (None if fetched.ok else f"answered {fetched.status}"),
    }


def nearest_rank(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarize(rows: list[dict[str, Any]], csv_key: str) -> dict[str, Any]:
    failed = [row for row in rows if not row["ok"]]
    elapsed = [row["elapsed_ms"] for row in rows]
    return {
        "urls": len(rows),
        "ok": len(rows) - len(failed),
        "failed": len(failed),
        "by_status": dict(
            sorted(Counter(str(r["status"]) for r in rows if r["status"] is not None).items())
        ),
        "failure_codes": dict(sorted(Counter(r["error_code"] for r in failed).items())),
        "bytes": sum(row["bytes"] for row in rows),
        "elapsed_ms": {
            "median": nearest_rank(elapsed, 0.5),
            "p90": nearest_rank(elapsed, 0.9),
            "max": max(elapsed, default=None),
        },
        "failures": [
            {
                "index": row["index"],
                "url": row["url"][:SUMMARY_TEXT],
                "code": row["error_code"],
                "message": (row["error"] or "")[:SUMMARY_TEXT],
            }
            for row in failed[:SUMMARY_FAILURES]
        ],
        "failures_truncated": len(failed) > SUMMARY_FAILURES,
        "results_csv": csv_key,
    }


# A cell starting with one of these is a formula to a spreadsheet; the text of a list line or
# of a server's malformed answer can start so, and is quoted with a leading "'" instead.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def rows_csv(rows: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    return text.getvalue().encode()


# ---------------------------------------------------------------- the task type


class UrlCheck:
    name = "URL_CHECK"
    description = (
        "Fetch a list of URLs (inline or uploaded) and report each one's HTTP status, bytes "
        "and timing; public addresses only, bounded in time and size."
    )
    progress_unit = "urls"
    params_model: type[BaseModel] = UrlCheckParams

    def __init__(
        self,
        allow_loopback: Callable[[], bool] = loopback_allowed,
        resolve: Resolver = socket.getaddrinfo,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.resolve = resolve
        self.clock = clock

    def start(self, params: UrlCheckParams, ctx: TaskContext) -> ChunkState:
        params = UrlCheckParams.model_validate(params)
        if params.urls is not None:
            return ChunkState(units_total=len(params.urls), cursor={"index": 0})
        key = params.input_key or ""
        if not key.startswith(ctx.uploads_prefix) or ".." in key.split("/"):
            raise InvalidInput(f"input_key must be under your uploads, {ctx.uploads_prefix}")
        try:
            found = ctx.s3.get_object(Bucket=ctx.bucket, Key=key)
        except ctx.s3.exceptions.NoSuchKey as exc:
            raise InputNotFound(f"{key} does not exist") from exc
        size = found["ContentLength"]
        if size > MAX_LIST_BYTES:
            found["Body"].close()
            raise InvalidInput(f"{key} is {size:,} bytes, more than {MAX_LIST_BYTES:,}")
        count = count_items(found["Body"].read())
        if count == 0:
            raise InvalidInput(f"{key} holds no URL")
        if count > MAX_LISTED_URLS:
            raise InvalidInput(f"{key} holds {count:,} URLs, more than {MAX_LISTED_URLS:,}")
        return ChunkState(
            units_total=count,
            cursor={"index": 0, "offset": 0},
            data={"etag": found["ETag"], "size": size},
        )

    def run_chunk(self, params: UrlCheckParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        params = UrlCheckParams.model_validate(params)
        policy = AddressPolicy(allow_loopback=self.allow_loopback())
        index = int(state.cursor["index"])
        batch, cursor = self._next_batch(params, state, ctx)
        rows = check_all(batch, params.limits, policy, self.resolve)
        if rows:
            # Written before the checkpoint, under the batch's first index: a repeated chunk
            # (a crash after this write) writes the same object with the same URLs again.
            ctx.s3.put_object(
                Bucket=ctx.bucket,
                Key=f"{ctx.results_prefix}checks/{index:05d}.json",
                Body=json.dumps(rows, separators=(",", ":")).encode(),
                ContentType="application/json",
            )
        ok = sum(row["ok"] for row in rows)
        done_count = index + len(rows)
        done = done_count >= state.units_total
        pause = params.chunk_interval_seconds
        return ChunkState(
            units_total=state.units_total,
            units_done=done_count,
            cursor=cursor,
            data={
                **state.data,
                "ok": state.data.get("ok", 0) + ok,
                "failed": state.data.get("failed", 0) + len(rows) - ok,
            },
            done=done,
            resume_at=self.clock() + timedelta(seconds=pause) if pause and not done else None,
        )

    def _next_batch(
        self, params: UrlCheckParams, state: ChunkState, ctx: TaskContext
    ) -> tuple[list[tuple[int, str]], dict[str, int]]:
        """The next URLs with their indexes, and the cursor after them."""
        index = int(state.cursor["index"])
        if params.urls is not None:
            urls = params.urls[index : index + params.urls_per_chunk]
            return list(enumerate(urls, start=index)), {"index": index + len(urls)}
        offset, size = int(state.cursor["offset"]), int(state.data["size"])
        if offset >= size:
            raise PermanentError(f"{params.input_key} ended early", code="input_changed")
        # Every line is at most MAX_LINE_BYTES (checked at the start), so this range holds at
        # least one whole line, and at least urls_per_chunk URLs unless lines without one
        # (blank, comments) come between them.
        end = min(size, offset + params.urls_per_chunk * (MAX_LINE_BYTES + 1))
        data = _read_list(
            ctx.s3, ctx.bucket, params.input_key or "", state.data["etag"], offset, end - 1
        )
        batch: list[tuple[int, str]] = []
        for line_end, line in list_lines(data, offset, at_eof=end >= size):
            url = list_item(line, first=offset == 0)
            offset = line_end
            if url is not None:
                batch.append((index + len(batch), url))
                if len(batch) == params.urls_per_chunk:
                    break
        return batch, {"index": index + len(batch), "offset": offset}

    def finish(self, params: UrlCheckParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        prefix = f"{ctx.results_prefix}checks/"
        pages = ctx.s3.get_paginator("list_objects_v2").paginate(Bucket=ctx.bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        with ThreadPoolExecutor(max_workers=8) as pool:
            parts = pool.map(
                lambda key: json.loads(
                    ctx.s3.get_object(Bucket=ctx.bucket, Key=key)["Body"].read()
                ),
                keys,
            )
            rows = sorted((row for part in parts for row in part), key=lambda r: r["index"])
        if [row["index"] for row in rows] != list(range(state.units_total)):
            raise PermanentError(
                f"the results hold {len(rows)} checks of {state.units_total} URLs",
                code="results_incomplete",
            )
        csv_key = f"{ctx.results_prefix}url-check.csv"
        ctx.s3.put_object(
            Bucket=ctx.bucket,
            Key=csv_key,
            Body=rows_csv(rows),
            ContentType="text/csv; charset=utf-8",
        )
        summary = summarize(rows, csv_key)
        return TaskResult(
            summary=summary,
            location=f"s3://{ctx.bucket}/{csv_key}",
            outputs=[csv_key],
            total_items=summary["urls"],
            failed_items=summary["failed"],
        )


URL_CHECK = UrlCheck()
