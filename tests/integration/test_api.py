"""The API handler end to end: HTTP API v2 events in, JSON answers out, moto behind it."""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.resources import LocalResources
from taskqueue import wiring
from taskqueue.models import ChunkState, TaskStatus
from taskqueue.store import Store
from tests.helpers import (
    ApiResponse,
    CounterStream,
    call_api,
    claim_as_worker,
    finish_as_worker,
    http_event,
    reset_function_caches,
)

ALICE = "user-123"  # http_event's default JWT sub
BOB = "user-456"
EMAIL_PARAMS: dict[str, Any] = {"recipient_count": 3, "subject": "Hi {name}", "body": "Hello"}
EMAIL: dict[str, Any] = {"type": "EMAIL", "params": EMAIL_PARAMS}
DATA = {"type": "DATA_PROCESSING", "params": {"rows": 100}}
IMAGE = {"type": "IMAGE_PROCESSING", "params": {"generate_count": 2}}
UPLOAD = {"filename": "sales.csv", "content_type": "text/csv", "size": 1024}


@pytest.fixture
def api(settings_env: dict[str, str]) -> dict[str, str]:
    """The ApiFunction environment, with the handler's cached settings and clients forgotten."""
    reset_function_caches()
    return settings_env


@pytest.fixture
def counters(api: dict[str, str]) -> CounterStream:
    """The counters function fed from the table's stream (stats follow it in batches)."""
    return CounterStream.of(api["TABLE_NAME"])


@pytest.fixture
def sqs(api: dict[str, str]) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def store(api: dict[str, str]) -> Store:
    return wiring.new_store(wiring.settings())


# ------------------------------------------------------------------ helpers


def submit(body: Any, *, sub: str | None = ALICE, key: str | None = None) -> ApiResponse:
    headers = {"idempotency-key": key} if key else None
    return call_api(http_event("POST", "/tasks", body=body, sub=sub, headers=headers))


def messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Message bodies now visible on a queue (receiving hides them for the test's rest),
    each checked to carry its task's current generation, which is then left out."""
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    bodies = [json.loads(m["Body"]) for m in received.get("Messages", [])]
    store = wiring.service().store
    for body in bodies:
        assert body.pop("generation") == store.tasks.get(body["task_id"]).generation
    return bodies


def list_ids(sub: str, **query: str) -> list[str]:
    response = call_api(http_event("GET", "/tasks", query=query or None, sub=sub))
    assert response.status == 200
    return [item["id"] for item in response.body["items"]]


def assert_error(response: ApiResponse, status: int, code: str, message: str) -> Any:
    """The error shape `{"error": {code, message, details}}`; returns the details."""
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.body) == {"error"}
    assert set(response.body["error"]) == {"code", "message", "details"}
    assert response.body["error"]["code"] == code
    assert response.body["error"]["message"] == message
    return response.body["error"]["details"]


def assert_nothing_written(sqs: Any, aws: LocalResources, owner: str = ALICE) -> None:
    assert messages(sqs, aws.queues["TaskQueue"]) == []
    assert messages(sqs, aws.queues["HighPriorityQueue"]) == []
    assert list_ids(owner) == []


def locs(details: list[dict[str, Any]]) -> list[list[Any]]:
    return [detail["loc"] for detail in details]


def run(store: Store, task_id: str) -> Any:
    """Make a PENDING task RUNNING the way a worker does: a claim under a lease."""
    return claim_as_worker(store, task_id)


# ------------------------------------------------------------------ POST /tasks


def test_submit_answers_201_with_the_pending_task(api: dict[str, str]) -> None:
    response = submit(EMAIL)

    assert response.status == 201
    task = response.body
    assert len(task["id"]) == 32
    assert task["type"] == "EMAIL"
    assert task["status"] == "PENDING"
    assert task["priority"] == "normal"
    assert task["params"]["recipient_count"] == 3
    assert task["params"]["subject"] == "Hi {name}"
    assert task["progress"] == 0
    assert task["attempts"] == 0
    assert task["max_attempts"] == int(api.get("DEFAULT_MAX_ATTEMPTS", "3"))
    assert task["cancel_requested"] is False
    assert task["created_at"] == task["updated_at"]
    assert task["started_at"] is None
    assert task["duration_seconds"] is None
    assert task["error"] is None
    assert task["outputs"] == []


def test_submit_sends_one_message_to_the_normal_queue(sqs: Any, aws: LocalResources) -> None:
    task_id = submit(EMAIL).body["id"]

    # Whose task and of which type: the worker claims it with one write, no read first
    assert messages(sqs, aws.queues["TaskQueue"]) == [
        {"task_id": task_id, "owner": ALICE, "task_type": "EMAIL"}
    ]
    assert messages(sqs, aws.queues["HighPriorityQueue"]) == []


def test_submit_with_high_priority_goes_to_the_high_priority_queue(
    sqs: Any, aws: LocalResources
) -> None:
    response = submit({**EMAIL, "priority": "high"})

    assert response.status == 201
    assert response.body["priority"] == "high"
    assert messages(sqs, aws.queues["HighPriorityQueue"]) == [
        {"task_id": response.body["id"], "owner": ALICE, "task_type": "EMAIL"}
    ]
    assert messages(sqs, aws.queues["TaskQueue"]) == []


# ------------------------------------------------------------------ GET /tasks, /tasks/{id}


def test_list_shows_the_callers_tasks_newest_first(api: dict[str, str]) -> None:
    first = submit(EMAIL).body["id"]
    second = submit(DATA).body["id"]

    response = call_api(http_event("GET", "/tasks"))

    assert response.status == 200
    assert [item["id"] for item in response.body["items"]] == [second, first]
    assert response.body["next_cursor"] is None


def test_get_task_returns_it_with_its_submitted_event(api: dict[str, str]) -> None:
    task_id = submit(EMAIL).body["id"]

    response = call_api(http_event("GET", f"/tasks/{task_id}"))

    assert response.status == 200
    assert response.body["id"] == task_id
    assert response.body["status"] == "PENDING"
    assert [event["message"] for event in response.body["events"]] == ["submitted"]
    assert response.body["events"][0]["level"] == "INFO"
    assert response.body["downloads"] == []


def dynamodb_item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills and limits it (400 KB): names plus values."""

    def value_size(value: dict[str, Any]) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return len(inner.lstrip("-").replace(".", "")) // 2 + 2
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "L":
            return 3 + sum(1 + value_size(element) for element in inner)
        if kind == "M":
            return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in inner.items())
        return len(json.dumps(inner))

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def test_cancel_retry_cycles_keep_the_item_small_and_every_event_readable(
    api: dict[str, str], store: Store
) -> None:
    # Given a task (scheduled ahead, so that no worker takes it between the user's requests)
    cycles = int(os.environ.get("EVENT_LOG_CYCLES", "200"))  # 1000: the figure
    task_id = submit({**EMAIL, "delay_seconds": 3600}).body["id"]
    service = wiring.service()

    # When its owner cancels and retries it again and again (EVENT_LOG_CYCLES, 200 by default)
    sizes = []
    for _ in range(cycles):
        service.cancel(ALICE, task_id)
        service.retry(ALICE, task_id, restart=False)
        sizes.append(
            dynamodb_item_size(
                store.table.get_item({"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "META"}}) or {}
            )
        )

    # Then the item stays under 4 KB all along (it grew ~120 B a cycle without a bound)
    print(f"task item after {cycles} cancel/retry cycles: {sizes[-1]} B, at most {max(sizes)} B")
    assert max(sizes) < 4096
    # And GET /tasks/{id} pages through every event, newest page first, none lost or repeated
    pages, before = [], None
    while True:
        query = {"events_before": before} if before else None
        page = call_api(http_event("GET", f"/tasks/{task_id}", query=query))
        assert page.status == 200
        assert len(page.body["events"]) <= 50
        pages.append([event["message"] for event in page.body["events"]])
        before = page.body["events_cursor"]
        if before is None:
            break
    messages = [message for page in reversed(pages) for message in page]
    assert (
        messages
        == ["submitted"] + ["cancelled before it started", "retry requested: resume"] * cycles
    )
    assert len(pages) == math.ceil((1 + 2 * cycles) / 50)
    # And the task still works: it is PENDING, as the last retry left it
    assert call_api(http_event("GET", f"/tasks/{task_id}")).body["status"] == "PENDING"


def test_a_move_of_event_lines_cut_short_shows_every_event_once_and_completes_later(
    api: dict[str, str],
) -> None:
    # Given a task, and the write that drops moved lines from its item failing once
    task_id = submit({**EMAIL, "delay_seconds": 3600}).body["id"]
    service = wiring.service()
    client = service.store.table.client
    failed: list[str] = []

    def fail_first_move(params: dict[str, Any], **_: Any) -> None:
        if "log_moved" in params.get("UpdateExpression", "") and not failed:
            failed.append(params["Key"]["pk"]["S"])
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "injected"}}, "UpdateItem"
            )

    client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", fail_first_move)
    try:
        # When it is cancelled and retried until its log passes the bound (the older lines
        # written out as EVENT# items, the item's write refused), and read right then
        done: list[str] = ["submitted"]
        while not failed:
            service.cancel(ALICE, task_id)
            done.append("cancelled before it started")
            if not failed:
                service.retry(ALICE, task_id, restart=False)
                done.append("retry requested: resume")
        cut_short = call_api(http_event("GET", f"/tasks/{task_id}"))
        # And it goes on, past the bound again
        for _ in range(40):
            service.cancel(ALICE, task_id)
            service.retry(ALICE, task_id, restart=False)
            done += ["cancelled before it started", "retry requested: resume"]
    finally:
        client.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", fail_first_move)

    # Then the read after the cut-short move showed each line once, the newest 41
    assert failed == [f"TASK#{task_id}"]
    cut = len(done) - 80
    assert [e["message"] for e in cut_short.body["events"]] == done[:cut][-50:]
    assert cut_short.body["events_cursor"] is None  # the written-out lines are not yet moved
    # And once the move is made again, every event is read once, in order
    events, before = [], None
    while True:
        page = call_api(
            http_event(
                "GET", f"/tasks/{task_id}", query={"events_before": before} if before else None
            )
        )
        events = [e["message"] for e in page.body["events"]] + events
        before = page.body["events_cursor"]
        if before is None:
            break
    assert events == done


def test_events_before_that_is_not_an_event_key_is_422(api: dict[str, str]) -> None:
    task_id = submit(EMAIL).body["id"]

    response = call_api(http_event("GET", f"/tasks/{task_id}", query={"events_before": "META"}))

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["query", "events_before"]]


def test_get_unknown_task_is_404(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", f"/tasks/{'0' * 32}"))

    assert_error(response, 404, "not_found", f"task {'0' * 32} not found")


# ------------------------------------------------------------------ DELETE /tasks/{id}


def test_cancel_pending_task_answers_200_cancelled(api: dict[str, str]) -> None:
    task_id = submit(EMAIL).body["id"]

    response = call_api(http_event("DELETE", f"/tasks/{task_id}"))

    assert response.status == 200
    assert response.body["status"] == "CANCELLED"
    assert response.body["finished_at"] is not None
    assert call_api(http_event("GET", f"/tasks/{task_id}")).body["status"] == "CANCELLED"


def test_cancel_running_task_answers_202_with_cancel_requested(store: Store) -> None:
    task_id = submit(EMAIL).body["id"]
    run(store, task_id)

    response = call_api(http_event("DELETE", f"/tasks/{task_id}"))

    assert response.status == 202
    assert response.body["status"] == "RUNNING"
    assert response.body["cancel_requested"] is True
    assert store.tasks.get(task_id).cancel_requested is True


def test_cancel_finished_task_is_409(store: Store) -> None:
    task_id = submit(EMAIL).body["id"]
    finish_as_worker(store, run(store, task_id), TaskStatus.SUCCESS, result={"sent": 3})

    response = call_api(http_event("DELETE", f"/tasks/{task_id}"))

    assert_error(response, 409, "conflict", f"task {task_id} is SUCCESS and cannot be cancelled")
    assert store.tasks.get(task_id).status == TaskStatus.SUCCESS


# ------------------------------------------------------------------ POST /tasks/{id}/retry


def test_retry_pending_task_is_409(sqs: Any, aws: LocalResources) -> None:
    task_id = submit(EMAIL).body["id"]
    messages(sqs, aws.queues["TaskQueue"])  # the submit's own message

    response = call_api(http_event("POST", f"/tasks/{task_id}/retry"))

    assert_error(
        response,
        409,
        "conflict",
        f"task {task_id} is PENDING; only FAILED or CANCELLED tasks can be retried",
    )
    assert messages(sqs, aws.queues["TaskQueue"]) == []


def test_retry_cancelled_task_makes_it_pending_and_sends_a_new_message(
    sqs: Any, aws: LocalResources
) -> None:
    task_id = submit(EMAIL).body["id"]
    call_api(http_event("DELETE", f"/tasks/{task_id}"))
    messages(sqs, aws.queues["TaskQueue"])  # the submit's own message

    response = call_api(http_event("POST", f"/tasks/{task_id}/retry"))

    assert response.status == 200
    assert response.body["status"] == "PENDING"
    assert response.body["finished_at"] is None
    assert messages(sqs, aws.queues["TaskQueue"]) == [
        {"task_id": task_id, "owner": ALICE, "task_type": "EMAIL"}
    ]


def test_retry_with_restart_clears_progress(store: Store) -> None:
    task_id = submit(EMAIL).body["id"]
    claimed = run(store, task_id)
    half = ChunkState(units_total=4, units_done=2, cursor=2)
    store.tasks.checkpoint(claimed, "lease-1", half, 300)
    finish_as_worker(store, claimed, TaskStatus.FAILED, state=half)

    response = call_api(http_event("POST", f"/tasks/{task_id}/retry", body={"restart": True}))

    assert response.status == 200
    assert response.body["status"] == "PENDING"
    assert response.body["progress"] == 0
    assert response.body["units_done"] == 0
    assert store.tasks.get(task_id).state is None


def test_retry_without_restart_keeps_progress(store: Store) -> None:
    task_id = submit(EMAIL).body["id"]
    claimed = run(store, task_id)
    half = ChunkState(units_total=4, units_done=2, cursor=2)
    store.tasks.checkpoint(claimed, "lease-1", half, 300)
    finish_as_worker(store, claimed, TaskStatus.FAILED, state=half)

    response = call_api(http_event("POST", f"/tasks/{task_id}/retry", body={"restart": False}))

    assert response.status == 200
    assert response.body["progress"] == 50
    assert response.body["units_done"] == 2
    assert store.tasks.get(task_id).state == half


# ------------------------------------------------------------------ other routes


def test_task_types_lists_three_types_with_a_params_schema(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/task-types"))

    assert response.status == 200
    assert [t["name"] for t in response.body] == ["DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"]
    for task_type in response.body:
        assert task_type["description"]
        assert task_type["params_schema"]["type"] == "object"
        assert task_type["params_schema"]["properties"]
    assert "recipient_count" in response.body[1]["params_schema"]["properties"]


def test_upload_answers_201_with_a_url_presigned_for_a_key_under_the_owner(
    api: dict[str, str], aws: LocalResources
) -> None:
    response = call_api(http_event("POST", "/uploads", body=UPLOAD))

    assert response.status == 201
    ticket = response.body
    assert ticket["key"].startswith(f"uploads/{ALICE}/")
    assert ticket["key"].endswith("/sales.csv")
    assert ticket["method"] == "PUT"
    assert ticket["headers"] == {"Content-Type": "text/csv"}
    url = urlparse(ticket["url"])
    assert url.scheme == "https"
    assert url.hostname == f"{aws.buckets['DataBucket']}.s3.amazonaws.com"
    assert unquote(url.path) == f"/{ticket['key']}"
    query = parse_qs(url.query)
    assert "Signature" in query or "X-Amz-Signature" in query


def test_upload_with_a_path_in_the_filename_is_422(api: dict[str, str]) -> None:
    response = call_api(
        http_event("POST", "/uploads", body={**UPLOAD, "filename": "../../etc/passwd"})
    )

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["body", "filename"]]


def test_upload_larger_than_the_limit_is_422(api: dict[str, str]) -> None:
    response = call_api(
        http_event("POST", "/uploads", body={**UPLOAD, "size": 100 * 1024 * 1024 + 1})
    )

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["body", "size"]]


def test_upload_of_an_unsupported_content_type_is_422(api: dict[str, str]) -> None:
    response = call_api(
        http_event("POST", "/uploads", body={**UPLOAD, "content_type": "application/x-sh"})
    )

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["body", "content_type"]]


def test_health_reports_ok(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/health"))

    assert response.status == 200
    assert response.body == {"table": "ok", "queue": "ok", "ok": True}


def test_openapi_json_lists_the_task_routes(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/openapi.json"))

    assert response.status == 200
    assert response.body["openapi"].startswith("3.")
    assert {"/tasks", "/tasks/{task_id}", "/tasks/{task_id}/retry"} <= set(response.body["paths"])
    assert set(response.body["paths"]["/tasks"]) >= {"get", "post"}


def test_docs_serves_the_swagger_ui_page(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/docs"))

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.body.lstrip().startswith("<!DOCTYPE html>")
    assert "swagger-ui" in response.body


def test_stats_count_the_callers_tasks_exactly(counters: CounterStream) -> None:
    submit(EMAIL)
    cancelled = submit(EMAIL).body["id"]
    submit(DATA)
    call_api(http_event("DELETE", f"/tasks/{cancelled}"))
    assert sum(call_api(http_event("GET", "/stats")).body["counts"]["by_status"].values()) == 0
    counters.drain()

    response = call_api(http_event("GET", "/stats"))

    assert response.status == 200
    counts = response.body["counts"]
    assert counts["by_status"] == {
        "PENDING": 2,
        "RUNNING": 0,
        "SUCCESS": 0,
        "FAILED": 0,
        "CANCELLED": 1,
    }
    assert counts["by_type"] == {"DATA_PROCESSING": 1, "EMAIL": 2, "IMAGE_PROCESSING": 0}
    assert counts["by_status_type"] == {
        "PENDING": {"EMAIL": 1, "DATA_PROCESSING": 1},
        "CANCELLED": {"EMAIL": 1},
    }
    assert sum(point["cancelled"] for point in response.body["throughput"]) == 1
    assert response.body["queues"] == {}  # the queues' depths are for operators only


def test_an_operator_sees_every_queues_depth_in_stats(counters: CounterStream) -> None:
    submit(EMAIL)
    submit(DATA)
    event = http_event("GET", "/stats")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[admin]"
    queues = call_api(event).body["queues"]
    assert queues["tasks-normal"]["visible"] == 2
    assert set(queues) == {"tasks-normal", "tasks-high", "tasks-parts", "dlq-normal", "dlq-high"}
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = '["ops", "admin"]'
    assert set(call_api(event).body["queues"]) == set(queues)  # a JSON list's text too
    # A group that merely contains the word is not the operators' group
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[admins]"
    assert call_api(event).body["queues"] == {}


def test_dead_letters_are_empty_without_failures(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/dead-letters"))

    assert response.status == 200
    assert response.body == {"items": []}


def test_unknown_route_is_a_404_json_error(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/nowhere"))

    assert_error(response, 404, "not_found", "no such route")


# ------------------------------------------------------------------ validation: nothing written


def test_malformed_json_is_400(sqs: Any, aws: LocalResources) -> None:
    response = call_api(http_event("POST", "/tasks", raw_body="{oops"))

    details = assert_error(response, 400, "malformed_json", "request body is not a JSON object")
    assert [d["type"] for d in details] == ["json_invalid"]
    assert_nothing_written(sqs, aws)


def test_body_that_is_a_json_string_is_400(sqs: Any, aws: LocalResources) -> None:
    response = submit("EMAIL")

    details = assert_error(response, 400, "malformed_json", "request body is not a JSON object")
    assert [d["type"] for d in details] == ["model_attributes_type"]
    assert_nothing_written(sqs, aws)


def test_body_that_is_a_json_array_is_400(sqs: Any, aws: LocalResources) -> None:
    response = submit([EMAIL])

    assert_error(response, 400, "malformed_json", "request body is not a JSON object")
    assert_nothing_written(sqs, aws)


def test_unknown_type_is_422_at_body_type(sqs: Any, aws: LocalResources) -> None:
    response = submit({"type": "MINING", "params": {}})

    details = assert_error(response, 422, "invalid_request", "unknown task type 'MINING'")
    assert locs(details) == [["body", "type"]]
    assert details[0]["msg"] == "must be one of ['DATA_PROCESSING', 'EMAIL', 'IMAGE_PROCESSING']"
    assert_nothing_written(sqs, aws)


def test_param_of_the_wrong_type_is_422_at_its_field(sqs: Any, aws: LocalResources) -> None:
    response = submit({"type": "EMAIL", "params": {**EMAIL_PARAMS, "recipient_count": "many"}})

    details = assert_error(response, 422, "invalid_request", "invalid params for EMAIL")
    assert locs(details) == [["body", "params", "recipient_count"]]
    assert details[0]["type"] == "int_parsing"
    assert_nothing_written(sqs, aws)


def test_an_email_template_that_would_render_unbounded_is_422_and_writes_nothing(
    sqs: Any, aws: LocalResources
) -> None:
    # Given a body whose one field would be padded to a billion characters
    hostile = {**EMAIL_PARAMS, "body": "{name:>999999999}"}

    # When it is submitted
    response = submit({"type": "EMAIL", "params": hostile})

    # Then the API refuses it before rendering anything, and nothing is stored or queued
    details = assert_error(response, 422, "invalid_request", "invalid params for EMAIL")
    assert "more than 1000 characters" in details[0]["msg"]
    assert_nothing_written(sqs, aws)


def put_upload(aws: LocalResources, key: str) -> None:
    boto3.client("s3").put_object(Bucket=aws.buckets["DataBucket"], Key=key, Body=b"a,b\n1,2\n")


@pytest.mark.parametrize(
    ("task", "param", "named", "problem", "message"),
    [
        (
            "DATA_PROCESSING",
            "input_key",
            f"uploads/{ALICE}/t/none.csv",
            "input_not_found",
            f"no upload at 'uploads/{ALICE}/t/none.csv'",
        ),
        # a longer key with the named one as its prefix is not that upload
        (
            "DATA_PROCESSING",
            "input_key",
            f"uploads/{ALICE}/t/sales",
            "input_not_found",
            f"no upload at 'uploads/{ALICE}/t/sales'",
        ),
        (
            "DATA_PROCESSING",
            "input_key",
            f"uploads/{BOB}/t/sales.csv",
            "value_error",
            f"input_key must be under your upload prefix 'uploads/{ALICE}/', "
            f"got 'uploads/{BOB}/t/sales.csv'",
        ),
        (
            "DATA_PROCESSING",
            "input_key",
            f"uploads/{ALICE}/../{BOB}/t/sales.csv",
            "value_error",
            f"input_key must be under your upload prefix 'uploads/{ALICE}/', "
            f"got 'uploads/{ALICE}/../{BOB}/t/sales.csv'",
        ),
        (
            "IMAGE_PROCESSING",
            "input_prefix",
            f"uploads/{ALICE}/empty/",
            "input_not_found",
            f"no uploads under 'uploads/{ALICE}/empty/'",
        ),
        (
            "IMAGE_PROCESSING",
            "input_prefix",
            f"uploads/{BOB}/t/",
            "value_error",
            f"input_prefix must be under your upload prefix 'uploads/{ALICE}/', "
            f"got 'uploads/{BOB}/t/'",
        ),
    ],
)
def test_a_submit_naming_an_upload_that_is_not_there_or_not_yours_is_422(
    task: str, param: str, named: str, problem: str, message: str, sqs: Any, aws: LocalResources
) -> None:
    # Given uploads of both users (Bob's under the very keys Alice names)
    for key in (f"uploads/{ALICE}/t/sales.csv", f"uploads/{BOB}/t/sales.csv"):
        put_upload(aws, key)

    # When Alice submits a task naming the upload
    response = submit({"type": task, "params": {param: named}})

    # Then the submit is a 422 at that param, and nothing is written or sent
    details = assert_error(response, 422, "invalid_request", f"invalid params for {task}")
    assert details == [{"loc": ["body", "params", param], "msg": message, "type": problem}]
    assert_nothing_written(sqs, aws)


def test_a_submit_naming_an_upload_that_is_there_is_accepted(
    api: dict[str, str], aws: LocalResources
) -> None:
    # Given Alice's CSV and a folder with one image
    put_upload(aws, f"uploads/{ALICE}/t/sales.csv")
    put_upload(aws, f"uploads/{ALICE}/photos/a.png")

    # When she submits tasks naming them
    data = submit(
        {"type": "DATA_PROCESSING", "params": {"input_key": f"uploads/{ALICE}/t/sales.csv"}}
    )
    images = submit(
        {"type": "IMAGE_PROCESSING", "params": {"input_prefix": f"uploads/{ALICE}/photos/"}}
    )

    # Then both are accepted
    assert (data.status, images.status) == (201, 201)
    assert sorted(list_ids(ALICE)) == sorted([data.body["id"], images.body["id"]])


def test_param_out_of_range_is_422_at_its_field(sqs: Any, aws: LocalResources) -> None:
    response = submit({"type": "IMAGE_PROCESSING", "params": {"generate_count": 2, "width": 0}})

    details = assert_error(response, 422, "invalid_request", "invalid params for IMAGE_PROCESSING")
    assert locs(details) == [["body", "params", "width"]]
    assert details[0]["type"] == "greater_than_equal"
    assert_nothing_written(sqs, aws)


def test_max_attempts_out_of_range_is_422(sqs: Any, aws: LocalResources) -> None:
    response = submit({**EMAIL, "max_attempts": 11})

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["body", "max_attempts"]]
    assert_nothing_written(sqs, aws)


def test_unknown_top_level_field_is_422(sqs: Any, aws: LocalResources) -> None:
    response = submit({**EMAIL, "owner": BOB})

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["body", "owner"]]
    assert details[0]["type"] == "extra_forbidden"
    assert_nothing_written(sqs, aws)
    assert list_ids(BOB) == []


def test_run_at_with_delay_seconds_is_422(sqs: Any, aws: LocalResources) -> None:
    response = submit({**EMAIL, "run_at": "2099-01-01T00:00:00Z", "delay_seconds": 60})

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert [d["msg"] for d in details] == ["Value error, give run_at or delay_seconds, not both"]
    assert_nothing_written(sqs, aws)


def test_run_at_without_a_time_zone_is_422(sqs: Any, aws: LocalResources) -> None:
    response = submit({**EMAIL, "run_at": "2099-01-01T00:00:00"})

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert [d["msg"] for d in details] == [
        "Value error, run_at needs a time zone, e.g. 2026-11-24T09:00:00Z"
    ]
    assert_nothing_written(sqs, aws)


# A date-time as typed, and the UTC moment it means (None: it has none, a 422).
DATE_TIME_EDGES: list[tuple[str, datetime | None]] = [
    ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ("0001-01-01T00:00:00", datetime(1, 1, 1, tzinfo=UTC)),  # naive: read as UTC
    ("0001-01-01T00:00:00+14:00", None),  # year 0 in UTC
    ("0001-01-01T13:59:59-12:00", datetime(1, 1, 2, 1, 59, 59, tzinfo=UTC)),
    ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("9999-12-31T23:59:59-12:00", None),  # year 10000 in UTC
    ("9999-12-31T10:00:00+14:00", datetime(9999, 12, 30, 20, 0, tzinfo=UTC)),
    ("2026-12-31T23:59:60Z", None),  # a leap second: Python has no such datetime
    ("2026-11-30T10:00:00.123456789Z", datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)),
    ("0999-06-01T00:00:00Z", datetime(999, 6, 1, tzinfo=UTC)),  # sorts before 2026 as text too
    ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
    ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    ("1700000000", None),  # a Unix time: the API promises ISO 8601
]


WIDEST = {
    "created_after": ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    "created_before": ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
}


def has_zone(typed: str) -> bool:
    return typed.endswith("Z") or re.search(r"[+-]\d\d:\d\d$", typed) is not None


@pytest.mark.parametrize(("typed", "moment"), DATE_TIME_EDGES)
@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_created_bounds_at_every_edge_answer_422_or_exactly_the_tasks_inside(
    name: str, typed: str, moment: datetime | None, api: dict[str, str]
) -> None:
    # Given two tasks
    created = {}
    for _ in range(2):
        body = submit(DATA).body
        created[body["id"]] = datetime.fromisoformat(body["created_at"])
    other = "created_before" if name == "created_after" else "created_after"
    other_typed, other_moment = WIDEST[other]

    # When the list is asked with the bound alone, and beside an aware other bound
    alone = call_api(http_event("GET", "/tasks", query={name: typed}))
    mixed = call_api(http_event("GET", "/tasks", query={name: typed, other: other_typed}))

    # Then each is a 422 naming the field, a 400 for an empty range, or exactly the tasks inside
    mixed_bounds = {name: moment, other: other_moment}
    for response, bounds in ((alone, {name: moment}), (mixed, mixed_bounds)):
        if moment is None:
            assert response.status == 422
            assert [d["loc"] for d in response.body["error"]["details"]] == [["query", name]]
            continue
        after, before = bounds.get("created_after"), bounds.get("created_before")
        if after is not None and before is not None and after >= before:
            assert response.status == 400
            continue
        inside = sorted(
            task_id
            for task_id, at in created.items()
            if (after is None or at >= after) and (before is None or at < before)
        )
        assert response.status == 200, response.body
        assert sorted(item["id"] for item in response.body["items"]) == inside


@pytest.mark.parametrize(("typed", "moment"), DATE_TIME_EDGES)
def test_run_at_at_every_edge_is_422_or_scheduled_exactly(
    typed: str, moment: datetime | None, sqs: Any, aws: LocalResources
) -> None:
    # When a task is submitted to run at the edge
    response = submit({**DATA, "run_at": typed})

    # Then it is refused (no time zone, no UTC moment, not ISO 8601, past the one-year cap),
    # or, in the past, starts now
    if moment is None or not has_zone(typed):
        assert response.status == 422
        assert_nothing_written(sqs, aws)
    elif moment > datetime.now(UTC) + timedelta(days=365):
        details = assert_error(response, 422, "invalid_request", "run_at is more than a year ahead")
        assert details[0]["loc"] == ["body", "run_at"]
        assert_nothing_written(sqs, aws)
    else:
        assert response.status == 201
        assert response.body["run_at"] is None  # already due


def test_run_at_is_capped_one_year_ahead_like_delay_seconds(sqs: Any, aws: LocalResources) -> None:
    # Given moments just inside and just past a year from now
    now = datetime.now(UTC)
    inside = (now + timedelta(days=364)).replace(microsecond=0)
    past_cap = now + timedelta(days=366)

    # When tasks are submitted for each
    refused = submit({**DATA, "run_at": past_cap.isoformat()})
    accepted = submit({**DATA, "run_at": inside.isoformat()})

    # Then the first is a 422 at run_at and the second is scheduled for exactly that moment
    details = assert_error(refused, 422, "invalid_request", "run_at is more than a year ahead")
    assert details == [
        {
            "loc": ["body", "run_at"],
            "msg": "must be at most 31536000 seconds from now",
            "type": "less_than_equal",
        }
    ]
    assert accepted.status == 201
    assert datetime.fromisoformat(accepted.body["run_at"]) == inside
    assert list_ids(ALICE) == [accepted.body["id"]]


def test_params_over_256_kib_are_422_even_when_the_body_limit_allows_them(
    api: dict[str, str], monkeypatch: pytest.MonkeyPatch, sqs: Any, aws: LocalResources
) -> None:
    # Given an API whose body limit was raised to 1 MiB
    monkeypatch.setenv("MAX_BODY_BYTES", str(1024 * 1024))
    reset_function_caches()
    recipients = [f"r{i}@example.com" for i in range(1000)]
    fields = {r: {"note": "x" * 400} for r in recipients}  # ~440 KB of params

    # When a task's params are larger than the cap
    response = submit(
        {
            "type": "EMAIL",
            "params": {
                **EMAIL_PARAMS,
                "recipient_count": None,
                "recipients": recipients,
                "fields": fields,
            },
        }
    )

    # Then it is a 422 at body.params, and nothing is written
    details = assert_error(response, 422, "invalid_request", "invalid params for EMAIL")
    assert [d["loc"] for d in details] == [["body", "params"]]
    assert details[0]["msg"].endswith("bytes as JSON; at most 262144")
    assert_nothing_written(sqs, aws)


def test_body_over_256_kib_is_413(api: dict[str, str], sqs: Any, aws: LocalResources) -> None:
    body = json.dumps({**EMAIL, "params": {**EMAIL_PARAMS, "body": "x" * 256 * 1024}})

    response = call_api(http_event("POST", "/tasks", raw_body=body))

    limit = int(api.get("MAX_BODY_BYTES", 256 * 1024))
    assert_error(response, 413, "payload_too_large", f"request body is larger than {limit} bytes")
    assert_nothing_written(sqs, aws)


def test_bad_cursor_is_400(sqs: Any, aws: LocalResources) -> None:
    response = call_api(http_event("GET", "/tasks", query={"cursor": "not-a-cursor"}))

    details = assert_error(response, 400, "invalid_request", "cursor is not valid")
    assert details == {"cursor": "not-a-cursor"}
    assert_nothing_written(sqs, aws)


@pytest.mark.parametrize("limit", ["0", "1000"])
def test_limit_outside_1_to_100_is_422(limit: str, sqs: Any, aws: LocalResources) -> None:
    response = call_api(http_event("GET", "/tasks", query={"limit": limit}))

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["query", "limit"]]
    assert_nothing_written(sqs, aws)


def test_unknown_status_filter_is_422(sqs: Any, aws: LocalResources) -> None:
    response = call_api(http_event("GET", "/tasks", query={"status": "NOPE"}))

    details = assert_error(response, 422, "validation_error", "request is not valid")
    assert locs(details) == [["query", "status"]]
    assert_nothing_written(sqs, aws)


def test_request_without_claims_is_401(sqs: Any, aws: LocalResources) -> None:
    response = submit(EMAIL, sub=None)

    assert_error(response, 401, "unauthorized", "authentication required")
    assert_nothing_written(sqs, aws)


def test_list_without_claims_is_401(api: dict[str, str]) -> None:
    response = call_api(http_event("GET", "/tasks", sub=None))

    assert_error(response, 401, "unauthorized", "authentication required")


def test_dev_auth_user_acts_for_requests_without_claims(
    api: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_AUTH_USER", "dev-user")
    reset_function_caches()

    response = submit(EMAIL, sub=None)

    assert response.status == 201
    assert list_ids("dev-user") == [response.body["id"]]
    assert list_ids(ALICE) == []


def test_jwt_claims_win_over_dev_auth_user(
    api: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_AUTH_USER", "dev-user")
    reset_function_caches()

    task_id = submit(EMAIL, sub=ALICE).body["id"]

    assert list_ids(ALICE) == [task_id]
    assert list_ids("dev-user") == []


# ------------------------------------------------------------------ owner isolation


def test_another_users_task_is_404_on_get(api: dict[str, str]) -> None:
    task_id = submit(EMAIL, sub=ALICE).body["id"]

    response = call_api(http_event("GET", f"/tasks/{task_id}", sub=BOB))

    assert_error(response, 404, "not_found", f"task {task_id} not found")


def test_another_users_task_is_404_on_cancel(store: Store) -> None:
    task_id = submit(EMAIL, sub=ALICE).body["id"]

    response = call_api(http_event("DELETE", f"/tasks/{task_id}", sub=BOB))

    assert_error(response, 404, "not_found", f"task {task_id} not found")
    assert store.tasks.get(task_id).status == TaskStatus.PENDING


def test_another_users_task_is_404_on_retry(store: Store) -> None:
    task_id = submit(EMAIL, sub=ALICE).body["id"]
    call_api(http_event("DELETE", f"/tasks/{task_id}", sub=ALICE))

    response = call_api(http_event("POST", f"/tasks/{task_id}/retry", sub=BOB))

    assert_error(response, 404, "not_found", f"task {task_id} not found")
    assert store.tasks.get(task_id).status == TaskStatus.CANCELLED


def test_another_users_tasks_are_absent_from_list_and_stats(counters: CounterStream) -> None:
    submit(EMAIL, sub=ALICE)
    submit(DATA, sub=ALICE)
    bobs = submit(IMAGE, sub=BOB).body["id"]
    counters.drain()

    listed = list_ids(BOB)
    stats = call_api(http_event("GET", "/stats", sub=BOB)).body["counts"]

    assert listed == [bobs]
    assert stats["by_status"]["PENDING"] == 1
    assert stats["by_type"] == {"DATA_PROCESSING": 0, "EMAIL": 0, "IMAGE_PROCESSING": 1}
    assert stats["by_status_type"] == {"PENDING": {"IMAGE_PROCESSING": 1}}


# ------------------------------------------------------------------ idempotent submit


def test_same_idempotency_key_and_body_make_one_task(sqs: Any, aws: LocalResources) -> None:
    first = submit(EMAIL, key="order-42")

    second = submit(EMAIL, key="order-42")

    assert first.status == 201
    assert second.status == 200
    assert second.body["id"] == first.body["id"]
    assert list_ids(ALICE) == [first.body["id"]]
    assert messages(sqs, aws.queues["TaskQueue"]) == [
        {"task_id": first.body["id"], "owner": ALICE, "task_type": "EMAIL"}
    ]


def test_same_idempotency_key_with_another_body_is_409(sqs: Any, aws: LocalResources) -> None:
    first = submit(EMAIL, key="order-42")

    second = submit(DATA, key="order-42")

    assert_error(
        second, 409, "conflict", "this Idempotency-Key was already used with a different request"
    )
    assert list_ids(ALICE) == [first.body["id"]]
    assert messages(sqs, aws.queues["TaskQueue"]) == [
        {"task_id": first.body["id"], "owner": ALICE, "task_type": "EMAIL"}
    ]


def test_same_idempotency_key_of_two_users_makes_two_tasks(sqs: Any, aws: LocalResources) -> None:
    alices = submit(EMAIL, sub=ALICE, key="order-42")

    bobs = submit(EMAIL, sub=BOB, key="order-42")

    assert (alices.status, bobs.status) == (201, 201)
    assert alices.body["id"] != bobs.body["id"]
    assert list_ids(ALICE) == [alices.body["id"]]
    assert list_ids(BOB) == [bobs.body["id"]]
    queued = messages(sqs, aws.queues["TaskQueue"])
    assert sorted(m["task_id"] for m in queued) == sorted([alices.body["id"], bobs.body["id"]])


def test_a_chain_step_with_invalid_params_is_422_at_its_field_and_writes_nothing(
    sqs: Any, aws: LocalResources
) -> None:
    # Given a chain whose second step's params break its type's schema
    body = {**DATA, "then": [DATA, {"type": "DATA_PROCESSING", "params": {"rows": -1}}]}
    # When it is submitted
    response = submit(body)
    # Then it is a 422 at that step's field, and nothing is written
    details = assert_error(response, 422, "invalid_request", "invalid params for DATA_PROCESSING")
    assert locs(details) == [["body", "then", "1", "params", "rows"]]
    assert_nothing_written(sqs, aws)


def test_a_chain_of_more_than_five_further_steps_is_422(sqs: Any, aws: LocalResources) -> None:
    # Given a chain of one task and six more
    response = submit({**DATA, "then": [DATA] * 6})
    # Then it is a 422 at body.then, and nothing is written
    assert response.status == 422
    assert locs(response.body["error"]["details"]) == [["body", "then"]]
    assert_nothing_written(sqs, aws)


def test_a_chain_is_answered_with_its_position(sqs: Any, aws: LocalResources) -> None:
    # Given a valid chain of two steps
    response = submit({**DATA, "then": [DATA]})
    # Then the first step is created as step 1 of 2, its own chain's id
    assert response.status == 201
    assert (
        response.body["chain_id"],
        response.body["chain_position"],
        response.body["chain_length"],
    ) == (response.body["id"], 1, 2)
