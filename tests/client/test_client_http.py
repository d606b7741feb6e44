"""Retries and errors of the client, against scripted answers (httpx.MockTransport): which
failures are repeated, how long it waits, and the exception and code a caller gets."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from taskqueue_client import (
    ApiError,
    Client,
    Conflict,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    ValidationFailed,
)
from taskqueue_client._http import retry_after_seconds
from taskqueue_client.errors import api_error
from tests.client.support import VIEW

Answer = httpx.Response | Exception


class Script:
    """Answers requests in order from a list; records what was sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def error(status: int, code: str, message: str = "", **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message or code, "details": None}}
    return httpx.Response(status, json=body, headers=headers)


def client_for(script: Script, sleeps: list[float], **policy: Any) -> Client:
    client = Client(
        "https://api.tasks.test",
        "token-1",
        transport=httpx.MockTransport(script),
        retry=RetryPolicy(**{"attempts": 4, "base_delay": 0.5, **policy}),
        sleep=sleeps.append,
    )
    client._sender.jitter = lambda: 1.0  # the upper bound of full jitter: exact waits
    return client


def test_submit_retried_after_503_sends_the_same_idempotency_key_each_time() -> None:
    # Given an API that fails twice with 503, then creates the task
    script = Script(
        error(503, "unavailable"), error(503, "unavailable"), httpx.Response(201, json=VIEW)
    )
    sleeps: list[float] = []
    # When a task is submitted
    task = client_for(script, sleeps).submit("DATA_PROCESSING", {"rows": 10})
    # Then it is the created task, after backing off 0.5 s then 1 s
    assert task.id == VIEW["id"]
    assert sleeps == [0.5, 1.0]
    # And the three attempts carried one key and the same body
    keys = {request.headers["idempotency-key"] for request in script.sent}
    assert len(script.sent) == 3 and len(keys) == 1
    assert [json.loads(r.content) for r in script.sent] == [
        {"type": "DATA_PROCESSING", "params": {"rows": 10}, "priority": "normal"}
    ] * 3
    assert script.sent[0].headers["authorization"] == "Bearer token-1"


def test_each_submit_gets_a_fresh_idempotency_key_unless_one_is_given() -> None:
    script = Script(*[httpx.Response(201, json=VIEW)] * 3)
    client = client_for(script, [])
    client.submit("EMAIL", {})
    client.submit("EMAIL", {})
    client.submit("EMAIL", {}, idempotency_key="order-42")
    keys = [request.headers["idempotency-key"] for request in script.sent]
    assert keys[0] != keys[1] and len(keys[0]) == 32
    assert keys[2] == "order-42"


def test_429_waits_exactly_what_retry_after_says() -> None:
    script = Script(
        error(429, "too_many_requests", **{"Retry-After": "3"}), httpx.Response(200, json=VIEW)
    )
    sleeps: list[float] = []
    client_for(script, sleeps).cancel(VIEW["id"])
    assert sleeps == [3.0]


def test_retry_after_as_an_http_date_is_the_time_until_then() -> None:
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds(later, now=now.timestamp) == 42.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") == 0.0


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once() -> None:
    script = Script(error(429, "too_many_requests", **{"Retry-After": "600"}))
    sleeps: list[float] = []
    with pytest.raises(RateLimited) as raised:
        client_for(script, sleeps, max_retry_after=120).stats()
    assert raised.value.retry_after == 600.0
    assert sleeps == [] and len(script.sent) == 1


def test_429_is_retried_even_for_a_route_that_is_not_repeatable() -> None:
    # API Gateway throttles before the function runs: nothing was done, so cancel is repeated.
    script = Script(
        httpx.Response(429, json={"message": "Too Many Requests"}), httpx.Response(200, json=VIEW)
    )
    assert client_for(script, []).cancel(VIEW["id"]).id == VIEW["id"]
    assert len(script.sent) == 2


def test_a_5xx_on_a_route_that_is_not_repeatable_is_raised_at_once() -> None:
    # A 502 may hide a cancel that happened; repeating it would answer 409 for our own cancel.
    script = Script(httpx.Response(502, json={"message": "Internal Server Error"}))
    with pytest.raises(ServerError) as raised:
        client_for(script, []).cancel(VIEW["id"])
    assert (raised.value.status, raised.value.code) == (502, "http_502")
    assert raised.value.message == "Internal Server Error"
    assert len(script.sent) == 1


def test_a_read_timeout_is_retried_only_on_repeatable_routes() -> None:
    timeout = httpx.ReadTimeout("slow")
    script = Script(timeout, httpx.Response(200, json={"items": []}))
    assert client_for(script, []).dead_letters().items == []
    with pytest.raises(TransportError, match="ReadTimeout"):
        client_for(Script(timeout), []).redrive()


def test_a_refused_connection_is_retried_on_any_route() -> None:
    refused = httpx.ConnectError("refused")
    script = Script(refused, httpx.Response(200, json={"redriven": 1, "skipped": 0}))
    assert client_for(script, []).redrive().redriven == 1


def test_after_the_last_attempt_the_last_error_is_raised() -> None:
    script = Script(*[error(503, "unavailable", "the task queue is unavailable")] * 4)
    sleeps: list[float] = []
    with pytest.raises(ServiceUnavailable) as raised:
        client_for(script, sleeps).get(VIEW["id"])
    assert raised.value.code == "unavailable"
    assert sleeps == [0.5, 1.0, 2.0]  # attempts=4: three waits, doubling


def test_backoff_is_capped_at_max_delay() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=5)
    assert [policy.backoff(n, lambda: 1.0) for n in range(5)] == [1, 2, 4, 5, 5]
    assert policy.backoff(2, lambda: 0.25) == 1.0  # full jitter: a fraction of the cap


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "message"),
    [
        (404, {"error": {"code": "not_found", "message": "task x not found"}}, NotFound, "not_found", "task x not found"),
        (409, {"error": {"code": "conflict", "message": "finished"}}, Conflict, "conflict", "finished"),
        (401, {"message": "Unauthorized"}, Unauthorized, "unauthorized", "Unauthorized"),
        (418, {"message": "teapot"}, ApiError, "http_418", "teapot"),
    ],
)  # fmt: skip
def test_error_answers_become_the_exception_of_their_status_with_the_code(
    status: int, body: dict[str, Any], cls: type[ApiError], code: str, message: str
) -> None:
    raised = api_error(status, json.dumps(body).encode(), method="GET", url="https://x/tasks")
    assert type(raised) is cls
    assert (raised.status, raised.code, raised.message) == (status, code, message)


def test_a_validation_error_carries_the_apis_details() -> None:
    details = [{"loc": ["body", "params", "rows"], "msg": "too big", "type": "less_than_equal"}]
    body = {
        "error": {"code": "validation_error", "message": "request is not valid", "details": details}
    }
    raised = api_error(422, json.dumps(body).encode())
    assert isinstance(raised, ValidationFailed)
    assert raised.details == details


def test_an_s3_error_of_a_presigned_url_gets_its_xml_code() -> None:
    xml = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    raised = api_error(403, xml)
    assert (raised.code, raised.message) == ("AccessDenied", "Request has expired")


def test_no_token_sends_no_authorization_header() -> None:
    script = Script(httpx.Response(200, json={"ok": True}))
    client = Client("https://api.tasks.test/", transport=httpx.MockTransport(script))
    assert client.health() == {"ok": True}
    assert "authorization" not in script.sent[0].headers
    assert str(script.sent[0].url) == "https://api.tasks.test/health"


def test_a_token_function_is_asked_for_every_request() -> None:
    tokens = iter(["t1", "t2"])
    script = Script(
        httpx.Response(200, json={"items": []}), httpx.Response(200, json={"items": []})
    )
    token: Callable[[], str | None] = lambda: next(tokens)  # noqa: E731
    client = Client("https://api.tasks.test", token, transport=httpx.MockTransport(script))
    client.dead_letters()
    client.dead_letters()
    assert [r.headers["authorization"] for r in script.sent] == ["Bearer t1", "Bearer t2"]


def test_a_task_id_is_escaped_in_the_path() -> None:
    script = Script(httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}}))
    with pytest.raises(NotFound):
        client_for(script, []).get("../stats")
    assert script.sent[0].url.raw_path == b"/tasks/..%2Fstats"
