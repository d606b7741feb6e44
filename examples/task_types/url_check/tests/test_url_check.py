"""URL_CHECK's start, run_chunk and finish on moto's S3, called as the engine calls them:
params, the checkpointed state, exact results under repeated chunks, pacing, uploaded lists
and the errors that fail a task at once."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from taskqueue.errors import InputNotFound, InvalidInput, PermanentError, UnreadableInput
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import TaskContext

from url_check.settings import ALLOW_LOOPBACK, loopback_allowed
from url_check.task import UrlCheck, UrlCheckParams

from .support import Web

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LOCAL_CHECK = UrlCheck(allow_loopback=lambda: True, clock=lambda: NOW)
METADATA = "http://169.254.169.254/latest/meta-data/"


def params(**values: Any) -> UrlCheckParams:
    return UrlCheckParams.model_validate({"timeout_seconds": 2, **values})


def run(
    check: UrlCheck, task_params: UrlCheckParams, ctx: TaskContext
) -> tuple[list[ChunkState], TaskResult]:
    """start, chunks until done, finish: the engine's loop without the engine."""
    states = [check.start(task_params, ctx)]
    while not states[-1].done:
        states.append(check.run_chunk(task_params, states[-1], ctx))
    return states, check.finish(task_params, states[-1], ctx)


def csv_rows(ctx: TaskContext, key: str) -> list[dict[str, str]]:
    body = ctx.s3.get_object(Bucket=ctx.bucket, Key=key)["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(body)))


def upload(ctx: TaskContext, name: str, body: bytes) -> str:
    key = f"{ctx.uploads_prefix}{name}"
    ctx.s3.put_object(Bucket=ctx.bucket, Key=key, Body=body)
    return key


# ---------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("values", "location"),
    [
        ({}, ()),
        ({"urls": ["https://example.com/"], "input_key": "uploads/alice/a.csv"}, ()),
        ({"urls": []}, ("urls",)),
        ({"urls": ["https://example.com/"] * 101}, ("urls",)),
        ({"urls": ["https://example.com/", "ftp://example.com/"]}, ("urls", 1)),
        ({"urls": ["https://example.com/"], "timeout_seconds": 31}, ("timeout_seconds",)),
        ({"urls": ["https://example.com/"], "max_bytes": 10 * 1024 * 1024 + 1}, ("max_bytes",)),
        ({"urls": ["https://example.com/"], "method": "POST"}, ("method",)),
        ({"urls": ["https://example.com/"], "urls_per_chunk": 51}, ("urls_per_chunk",)),
        ({"urls": ["https://example.com/"], "extra": 1}, ("extra",)),
    ],
)
def test_params_out_of_bounds_are_refused_at_the_field(
    values: dict[str, Any], location: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as refused:
        UrlCheckParams.model_validate(values)
    assert refused.value.errors()[0]["loc"][: len(location)] == location


def test_the_params_schema_carries_its_bounds_and_form_hints() -> None:
    schema = UrlCheckParams.model_json_schema()
    urls = schema["properties"]["urls"]["anyOf"][0]
    assert (urls["maxItems"], urls["items"]["maxLength"], urls["items"]["format"]) == (
        100,
        2048,
        "uri",
    )
    assert [s["fields"] for s in schema["x-sources"]] == [["urls"], ["input_key"]]
    assert schema["properties"]["input_key"]["x-upload"] == {
        "accept": ["text/csv"],
        "target": "key",
    }
    assert schema["properties"]["urls_per_chunk"]["x-advanced"] is True


# ---------------------------------------------------------------- a run


def test_a_run_checks_every_url_and_reports_each_exactly(s3_context: TaskContext, web: Web) -> None:
    # Given three URLs, two a chunk: one fine, one missing page, one at the metadata service
    urls = [web.url("/ok"), web.url("/status/404"), METADATA]
    task_params = params(urls=urls, urls_per_chunk=2)
    # When the task runs
    states, result = run(LOCAL_CHECK, task_params, s3_context)
    # Then two chunks ran, each checkpointing its cursor and counts only
    assert [(s.units_done, s.cursor, s.done) for s in states] == [
        (0, {"index": 0}, False),
        (2, {"index": 2}, False),
        (3, {"index": 3}, True),
    ]
    assert states[-1].data == {"ok": 1, "failed": 2}
    # And the result counts the failed items and names them
    assert (result.total_items, result.failed_items) == (3, 2)
    summary = result.summary
    assert (summary["urls"], summary["ok"], summary["failed"], summary["bytes"]) == (3, 1, 2, 16)
    assert summary["by_status"] == {"200": 1, "404": 1}
    assert summary["failure_codes"] == {"blocked_address": 1, "http_error": 1}
    assert [(f["index"], f["code"]) for f in summary["failures"]] == [
        (1, "http_error"),
        (2, "blocked_address"),
    ]
    # And every URL is a row of the downloadable CSV, in order
    csv_key = f"{s3_context.results_prefix}url-check.csv"
    assert (result.outputs, result.location) == ([csv_key], f"s3://data/{csv_key}")
    rows = csv_rows(s3_context, csv_key)
    assert [(r["index"], r["url"], r["status"], r["ok"], r["error_code"]) for r in rows] == [
        ("0", urls[0], "200", "True", ""),
        ("1", urls[1], "404", "False", "http_error"),
        ("2", METADATA, "", "False", "blocked_address"),
    ]


def test_a_chunk_run_twice_writes_the_same_results_once(s3_context: TaskContext, web: Web) -> None:
    # Given a task whose second chunk ran, crashed before its checkpoint and ran again
    task_params = params(
        urls=[web.url("/ok"), web.url("/bytes/7"), web.url("/ok")], urls_per_chunk=2
    )
    first = LOCAL_CHECK.start(task_params, s3_context)
    LOCAL_CHECK.run_chunk(task_params, first, s3_context)  # lost: no checkpoint followed
    again = LOCAL_CHECK.run_chunk(task_params, first, s3_context)
    last = LOCAL_CHECK.run_chunk(task_params, again, s3_context)
    # When it finishes
    result = LOCAL_CHECK.finish(task_params, last, s3_context)
    # Then each URL counts once
    assert (result.summary["urls"], result.summary["ok"], result.summary["bytes"]) == (3, 3, 17)
    listed = s3_context.s3.list_objects_v2(Bucket="data", Prefix=s3_context.results_prefix)
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == [
        "00000.json",
        "00002.json",
        "url-check.csv",
    ]


def test_a_paced_task_asks_to_resume_after_its_interval(s3_context: TaskContext, web: Web) -> None:
    task_params = params(urls=[web.url("/ok")] * 3, urls_per_chunk=2, chunk_interval_seconds=60)
    states, _ = run(LOCAL_CHECK, task_params, s3_context)
    assert [s.resume_at for s in states[1:]] == [NOW + timedelta(seconds=60), None]


def test_results_missing_a_chunk_fail_the_finish(s3_context: TaskContext, web: Web) -> None:
    task_params = params(urls=[web.url("/ok")] * 3, urls_per_chunk=2)
    states, _ = run(LOCAL_CHECK, task_params, s3_context)
    s3_context.s3.delete_object(Bucket="data", Key=f"{s3_context.results_prefix}checks/00002.json")
    with pytest.raises(PermanentError, match="2 checks of 3 URLs"):
        LOCAL_CHECK.finish(task_params, states[-1], s3_context)


# ---------------------------------------------------------------- uploaded lists


def test_an_uploaded_list_is_read_a_batch_at_a_time_by_byte_range(
    s3_context: TaskContext, web: Web
) -> None:
    # Given a list with a BOM and header, comments, blank lines, a quoted URL and a bad line
    lines = [
        "\ufeffurl,note",
        "# checked nightly",
        f"{web.url('/ok')},home",
        "",
        f'"{web.url("/bytes/3?a=1,2")}",quoted because of the comma',
        "not a url",
        f"{web.url('/status/500')}",
    ]
    key = upload(s3_context, "links.csv", "\r\n".join(lines).encode())
    task_params = params(input_key=key, urls_per_chunk=2)
    # When the task runs
    states, result = run(LOCAL_CHECK, task_params, s3_context)
    # Then it found the four URL lines and went through them two at a time
    assert states[0].units_total == 4
    assert [s.cursor["index"] for s in states] == [0, 2, 4]
    rows = csv_rows(s3_context, result.summary["results_csv"])
    assert [(r["url"], r["status"], r["error_code"]) for r in rows] == [
        (web.url("/ok"), "200", ""),
        (web.url("/bytes/3?a=1,2"), "200", ""),
        ("not a url", "", "invalid_url"),
        (web.url("/status/500"), "500", "http_error"),
    ]
    assert (result.total_items, result.failed_items) == (4, 2)


def test_list_lines_that_look_like_formulas_reach_the_csv_as_text(
    s3_context: TaskContext,
) -> None:
    key = upload(s3_context, "links.csv", b'=HYPERLINK("http://evil.example")\n@SUM(A1)\n')
    _, result = run(LOCAL_CHECK, params(input_key=key), s3_context)
    rows = csv_rows(s3_context, result.summary["results_csv"])
    assert [(r["url"], r["error_code"]) for r in rows] == [
        ('\'=HYPERLINK("http://evil.example")', "invalid_url"),
        ("'@SUM(A1)", "invalid_url"),
    ]


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"", InvalidInput, "holds no URL"),
        (b"# only a comment\n\n", InvalidInput, "holds no URL"),
        (b"https://example.com/\n" + b"x" * 5000 + b"\n", InvalidInput, "line 2 is longer"),
        (b"https://example.com/\xff\xfe\n", UnreadableInput, "not UTF-8"),
        (b"https://example.com/\n" * 10_001, InvalidInput, "10,001 URLs, more than 10,000"),
        (b"x" * (2 * 1024 * 1024 + 1), InvalidInput, "more than 2,097,152"),
    ],
)
def test_a_list_that_cannot_be_checked_fails_at_the_start(
    s3_context: TaskContext, body: bytes, error: type[Exception], message: str
) -> None:
    key = upload(s3_context, "bad.csv", body)
    with pytest.raises(error, match=message):
        LOCAL_CHECK.start(params(input_key=key), s3_context)


def test_a_list_outside_your_uploads_or_missing_fails_at_once(s3_context: TaskContext) -> None:
    with pytest.raises(InvalidInput, match="under your uploads"):
        LOCAL_CHECK.start(params(input_key="uploads/bob/links.csv"), s3_context)
    with pytest.raises(InvalidInput, match="under your uploads"):
        LOCAL_CHECK.start(params(input_key="uploads/alice/../bob/links.csv"), s3_context)
    with pytest.raises(InputNotFound):
        LOCAL_CHECK.start(params(input_key="uploads/alice/none.csv"), s3_context)


def test_a_list_replaced_while_the_task_runs_fails_it(s3_context: TaskContext, web: Web) -> None:
    key = upload(s3_context, "links.csv", f"{web.url('/ok')}\n{web.url('/ok')}\n".encode())
    task_params = params(input_key=key, urls_per_chunk=1)
    started = LOCAL_CHECK.start(task_params, s3_context)
    state = LOCAL_CHECK.run_chunk(task_params, started, s3_context)
    upload(s3_context, "links.csv", b"https://example.com/other\n")
    with pytest.raises(PermanentError) as failed:
        LOCAL_CHECK.run_chunk(task_params, state, s3_context)
    assert failed.value.code == "input_changed"


# ---------------------------------------------------------------- the loopback setting


def test_the_loopback_setting_is_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("", False), ("no", False), ("true", True), ("1", True)]:
        monkeypatch.setenv(ALLOW_LOOPBACK, value)
        loopback_allowed.cache_clear()
        assert loopback_allowed() is expected
    loopback_allowed.cache_clear()


def test_the_loopback_setting_fails_every_task_on_lambda(
    monkeypatch: pytest.MonkeyPatch, s3_context: TaskContext
) -> None:
    # Given the setting in a Lambda function's environment (loopback is its runtime API there)
    monkeypatch.setenv(ALLOW_LOOPBACK, "true")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    loopback_allowed.cache_clear()
    check = UrlCheck()
    task_params = params(urls=["https://example.com/"])
    # When a chunk runs, it fails the task at once, saying why
    with pytest.raises(PermanentError) as failed:
        check.run_chunk(task_params, check.start(task_params, s3_context), s3_context)
    assert failed.value.code == "misconfigured"
    loopback_allowed.cache_clear()


def test_result_rows_are_json_that_the_chunk_objects_hold(
    s3_context: TaskContext, web: Web
) -> None:
    task_params = params(urls=[web.url("/ok")])
    state = LOCAL_CHECK.start(task_params, s3_context)
    LOCAL_CHECK.run_chunk(task_params, state, s3_context)
    body = s3_context.s3.get_object(
        Bucket="data", Key=f"{s3_context.results_prefix}checks/00000.json"
    )
    (row,) = json.loads(body["Body"].read())
    assert {k: row[k] for k in ("index", "status", "ok", "bytes", "redirects", "error_code")} == {
        "index": 0,
        "status": 200,
        "ok": True,
        "bytes": 5,
        "redirects": 0,
        "error_code": None,
    }
