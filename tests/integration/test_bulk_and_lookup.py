"""GET /tasks?id_prefix= (a short id finds its task through a small index, no Scan, no reading
of the owner's other tasks) and POST /tasks/bulk (cancel or retry many, one result each)."""

from __future__ import annotations

from typing import Any

import pytest

from taskqueue.aws import client
from tests.helpers import ApiResponse, call_api, http_event, reset_function_caches

ALICE = "user-123"  # http_event's default JWT sub
BOB = "user-456"
EMAIL = {"type": "EMAIL", "params": {"recipient_count": 1, "subject": "s", "body": "b"}}
LATER = {**EMAIL, "run_at": "2099-01-01T00:00:00Z"}


@pytest.fixture
def api(settings_env: dict[str, str]) -> dict[str, str]:
    reset_function_caches()
    return settings_env


def submit(body: dict[str, Any], sub: str = ALICE) -> str:
    response = call_api(http_event("POST", "/tasks", body=body, sub=sub))
    assert response.status == 201, response.body
    task_id: str = response.body["id"]
    return task_id


def lookup(prefix: str, sub: str = ALICE, **query: str) -> ApiResponse:
    return call_api(http_event("GET", "/tasks", query={"id_prefix": prefix, **query}, sub=sub))


def bulk(body: dict[str, Any], sub: str = ALICE) -> ApiResponse:
    return call_api(http_event("POST", "/tasks/bulk", body=body, sub=sub))


def count_queries(calls: list[str]) -> Any:
    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append(f"{model.name}:{params.get('IndexName', '')}")

    return record


# ------------------------------------------------------------------ look-up by short id


def test_a_short_id_finds_its_task_with_one_query_of_the_id_index(api: dict[str, str]) -> None:
    task_id = submit(LATER)
    for _ in range(3):
        submit(LATER)
    calls: list[str] = []
    client("dynamodb").meta.events.register(
        "provide-client-params.dynamodb.*", count_queries(calls)
    )

    response = lookup(task_id[:8])

    assert response.status == 200
    assert [t["id"] for t in response.body["items"]] == [task_id]
    assert response.body["next_cursor"] is None
    assert calls == ["Query:by_owner_id", "BatchGetItem:"]


def test_a_longer_prefix_narrows_and_the_full_id_matches(api: dict[str, str]) -> None:
    task_id = submit(LATER)

    assert [t["id"] for t in lookup(task_id).body["items"]] == [task_id]
    assert [t["id"] for t in lookup(task_id[:20]).body["items"]] == [task_id]
    wrong = task_id[:19] + ("0" if task_id[19] != "0" else "1")
    assert lookup(wrong).body["items"] == []


def test_another_owners_short_id_finds_nothing(api: dict[str, str]) -> None:
    task_id = submit(LATER, sub=BOB)

    response = lookup(task_id[:8])

    assert response.status == 200
    assert response.body["items"] == []


@pytest.mark.parametrize("prefix", ["abc", "ABCDEF12", "abcdefgh", "a" * 33])
def test_a_prefix_that_is_not_8_to_32_hex_characters_is_422(
    api: dict[str, str], prefix: str
) -> None:
    response = lookup(prefix)

    assert response.status == 422
    assert [d["loc"] for d in response.body["error"]["details"]] == [["query", "id_prefix"]]


def test_id_prefix_with_another_filter_is_422(api: dict[str, str]) -> None:
    response = lookup("0123abcd", status="PENDING")

    assert response.status == 422
    assert response.body["error"]["details"][0]["loc"] == ["query"]
    assert "without other filters" in response.body["error"]["details"][0]["msg"]


# ------------------------------------------------------------------ bulk


def test_bulk_cancel_answers_one_result_per_task_in_order(api: dict[str, str]) -> None:
    pending = [submit(LATER) for _ in range(2)]
    finished = submit(LATER)
    call_api(http_event("DELETE", f"/tasks/{finished}"))
    missing = "0" * 32

    response = bulk({"action": "cancel", "ids": [pending[0], finished, missing, pending[1]]})

    assert response.status == 200
    assert [(r["id"], r["ok"], r["status"]) for r in response.body["results"]] == [
        (pending[0], True, "CANCELLED"),
        (finished, False, None),
        (missing, False, None),
        (pending[1], True, "CANCELLED"),
    ]
    errors = [r["error"] for r in response.body["results"]]
    assert errors[0] is None and errors[3] is None
    assert errors[1]["code"] == "conflict" and "CANCELLED" in errors[1]["message"]
    assert errors[2]["code"] == "not_found"
    for task_id in pending:
        assert call_api(http_event("GET", f"/tasks/{task_id}")).body["status"] == "CANCELLED"


def test_bulk_retry_queues_cancelled_tasks_again(api: dict[str, str]) -> None:
    cancelled = submit(LATER)
    call_api(http_event("DELETE", f"/tasks/{cancelled}"))
    waiting = submit(LATER)

    response = bulk({"action": "retry", "ids": [cancelled, waiting]})

    assert [(r["ok"], r["status"]) for r in response.body["results"]] == [
        (True, "PENDING"),
        (False, None),
    ]
    assert call_api(http_event("GET", f"/tasks/{cancelled}")).body["status"] == "PENDING"


def test_bulk_touches_only_the_callers_tasks(api: dict[str, str]) -> None:
    bobs = submit(LATER, sub=BOB)

    response = bulk({"action": "cancel", "ids": [bobs]})

    assert response.body["results"][0]["ok"] is False
    assert response.body["results"][0]["error"]["code"] == "not_found"
    assert call_api(http_event("GET", f"/tasks/{bobs}", sub=BOB)).body["status"] == "PENDING"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"action": "delete", "ids": ["a" * 32]}, ["body", "action"]),
        ({"action": "cancel", "ids": []}, ["body", "ids"]),
        ({"action": "cancel", "ids": ["a" * 32] * 2}, ["body"]),
        ({"action": "cancel", "ids": ["x"]}, ["body", "ids", 0]),
        ({"action": "cancel", "ids": [f"{n:032x}" for n in range(51)]}, ["body", "ids"]),
    ],
)
def test_a_bad_bulk_request_is_422_and_changes_nothing(
    api: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    task_id = submit(LATER)
    if body["ids"] == ["a" * 32] * 2:
        body = {**body, "ids": [task_id, task_id]}

    response = bulk(body)

    assert response.status == 422
    assert response.body["error"]["details"][0]["loc"] == loc
    assert call_api(http_event("GET", f"/tasks/{task_id}")).body["status"] == "PENDING"


def test_restart_must_be_a_real_boolean(api: dict[str, str]) -> None:
    task_id = submit(LATER)

    response = bulk({"action": "retry", "ids": [task_id], "restart": 0})

    assert response.status == 422
    assert response.body["error"]["details"][0]["loc"] == ["body", "restart"]
