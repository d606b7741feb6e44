"""The API handler end to end: HTTP API v2 events in, JSON answers out, moto behind it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import boto3
import pytest

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
    """Message bodies now visible on a queue (receiving hides them for the test's rest)."""
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in received.get("Messages", [])]


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
    assert set(queues) == {"tasks-normal", "tasks-high", "dlq-normal", "dlq-high"}
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
