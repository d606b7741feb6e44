"""Isolation: for every route, another user can neither see nor change a user's data.

Alice owns one task in each state that matters (pending, succeeded with a result file,
cancelled, dead-lettered and failed), an upload and a dead letter. Bob, and Alice's prefix
sibling (`user-alice-000`, whose id is a prefix of hers), then try every route on them:
every answer about Alice's task is the 404 of a task that does not exist (so existence does
not leak), lists and stats leave her out, and nothing of hers changes. Presigned URLs stay
under the caller's own prefix and expire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

from devstack.resources import LocalResources
from taskqueue import wiring
from taskqueue.models import TaskStatus
from taskqueue.store import Store
from tests.helpers import (
    ApiResponse,
    CounterStream,
    FakeLambdaContext,
    load_function,
    sqs_event,
    sqs_record,
)
from tests.security.support import (
    ALICE,
    BOB,
    DOWNLOAD_URL_MAX_SECONDS,
    UPLOAD_URL_MAX_SECONDS,
    World,
    api,
    assert_error_shape,
    moto_world,
    presigned_expiry,
    presigned_key,
    recorded_aws_calls,
)

SIBLING = ALICE[:-1]  # "user-alice-000": a prefix of Alice's id
MALLORY = "user-mallory-0004"  # submits tasks that try to read Alice's files
CAROL, DAVE = "user-carol-0005", "user-dave-0006"  # write freely without touching the others
OTHERS = [BOB, SIBLING]
EMAIL: dict[str, Any] = {
    "type": "EMAIL",
    "params": {"recipient_count": 2, "subject": "Hi", "body": "Hello"},
}
DATA = {"type": "DATA_PROCESSING", "params": {"rows": 50, "columns": 3}}
UPLOAD = {"filename": "sales.csv", "content_type": "text/csv", "size": 64}
MISSING_ID = "0123456789abcdef0123456789abcdef"


@dataclass
class Scenario:
    world: World
    store: Store
    tasks: dict[str, str]  # Alice's: pending, succeeded, cancelled, dead
    upload: dict[str, Any]  # Alice's upload ticket
    own: str  # Bob's one task

    @property
    def aws(self) -> LocalResources:
        aws: LocalResources = self.world.aws
        return aws

    def snapshot(self) -> dict[str, Any]:
        """Everything of Alice's that a write could change."""
        return {
            name: self.store.tasks.get(task_id).model_dump() for name, task_id in self.tasks.items()
        } | {"dead_letters": self.store.dead_letters.list(ALICE)}

    def queued(self) -> int:
        total = 0
        for url in self.world.task_queues:
            attributes = self.world.sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            total += sum(int(v) for v in attributes.values())
        return total


@pytest.fixture(scope="module")
def scenario(transformed_template: dict[str, Any]) -> Iterator[Scenario]:
    """Built once per module; tests that write use users of their own."""
    with moto_world(transformed_template) as world:
        env = world.as_function("ApiFunction")
        store = wiring.new_store(wiring.settings())
        # A DATA_PROCESSING task run to SUCCESS: a result file under results/<alice>/.
        succeeded = api("POST", "/tasks", body=DATA).body["id"]
        world.drain()
        assert store.tasks.get(succeeded).status == TaskStatus.SUCCESS
        # A pending one, a cancelled one, and one whose message died (FAILED + a dead letter).
        pending = api("POST", "/tasks", body=EMAIL).body["id"]
        cancelled = api("POST", "/tasks", body=EMAIL).body["id"]
        assert api("DELETE", f"/tasks/{cancelled}").status == 200
        dead = api("POST", "/tasks", body=EMAIL).body["id"]
        world.as_function("DlqFunction")
        load_function("dlq").lambda_handler(
            sqs_event([sqs_record(json.dumps({"task_id": dead}), receive_count=5)]),
            FakeLambdaContext(),
        )
        world.as_function("ApiFunction")
        assert store.tasks.get(dead).status == TaskStatus.FAILED
        assert len(store.dead_letters.list(ALICE)) == 1
        upload = api("POST", "/uploads", body=UPLOAD).body
        boto3.client("s3", region_name="us-east-1").put_object(
            Bucket=world.aws.buckets["DataBucket"], Key=upload["key"], Body=b"a,b\n1,2\n"
        )
        own = api("POST", "/tasks", sub=BOB, body=EMAIL).body["id"]
        # Nothing of Alice's or Bob's may run later: their messages go.
        world.purge()
        CounterStream.of(env["TABLE_NAME"]).drain()
        tasks = {"pending": pending, "succeeded": succeeded, "cancelled": cancelled, "dead": dead}
        yield Scenario(world, store, tasks, upload, own)


def assert_same_as_missing(response: ApiResponse, task_id: str, method: str, path: str) -> None:
    """The answer about another's task is byte-for-byte the answer about no task at all."""
    missing = api(method, path.replace(task_id, MISSING_ID), sub=BOB)
    assert_error_shape(response, 404)
    assert response.body["error"]["code"] == missing.body["error"]["code"]
    assert response.body["error"]["message"] == missing.body["error"]["message"].replace(
        MISSING_ID, task_id
    )
    assert response.headers == missing.headers


# ------------------------------------------------------------------ single-task routes

TASK_ROUTES = [
    ("GET", "/tasks/{}", None),
    ("DELETE", "/tasks/{}", None),
    ("POST", "/tasks/{}/retry", None),
    ("POST", "/tasks/{}/retry", {"restart": True}),
]


@pytest.mark.parametrize("who", OTHERS)
@pytest.mark.parametrize(("method", "path", "body"), TASK_ROUTES)
def test_another_users_task_is_404_on_every_task_route_and_unchanged(
    scenario: Scenario, who: str, method: str, path: str, body: Any
) -> None:
    before, queued = scenario.snapshot(), scenario.queued()
    for task_id in scenario.tasks.values():
        url = path.format(task_id)
        response = api(method, url, sub=who, body=body)
        assert_same_as_missing(response, task_id, method, url)
    assert scenario.snapshot() == before
    assert scenario.queued() == queued  # no retry message was sent for Alice


def test_owners_reach_their_own_tasks_on_the_same_routes(scenario: Scenario) -> None:
    """The control: owners get answers where others get 404, so the 404s are isolation."""
    for task_id in scenario.tasks.values():
        assert api("GET", f"/tasks/{task_id}").status == 200
    first = api("POST", "/tasks", sub=CAROL, body=EMAIL).body["id"]
    assert api("DELETE", f"/tasks/{first}", sub=CAROL).status == 200
    assert api("POST", f"/tasks/{first}/retry", sub=CAROL).status == 200
    assert api("DELETE", f"/tasks/{first}", sub=CAROL).status == 200
    scenario.world.purge()


# ------------------------------------------------------------------ lists and stats

FILTERS: list[dict[str, str]] = [
    {},
    *({"status": status.value} for status in TaskStatus),
    *({"type": name} for name in ("EMAIL", "DATA_PROCESSING", "IMAGE_PROCESSING")),
    *(
        {"status": status.value, "type": name}
        for status in TaskStatus
        for name in ("EMAIL", "DATA_PROCESSING")
    ),
    {"created_after": "2000-01-01T00:00:00Z"},
    {"created_before": "2999-01-01T00:00:00Z"},
    {"created_after": "2000-01-01T00:00:00Z", "created_before": "2999-01-01T00:00:00Z"},
    {"status": "FAILED", "created_after": "2000-01-01T00:00:00Z"},
]


def list_all(sub: str, query: dict[str, str]) -> list[str]:
    """Every page of a list (limit 1, so every cursor is exercised)."""
    ids: list[str] = []
    cursor = None
    for _ in range(50):
        page = api(
            "GET",
            "/tasks",
            sub=sub,
            query={**query, "limit": "1"} | ({"cursor": cursor} if cursor else {}),
        )
        assert page.status == 200, page.body
        ids += [item["id"] for item in page.body["items"]]
        cursor = page.body["next_cursor"]
        if not cursor:
            return ids
    raise AssertionError("list did not end")


@pytest.mark.parametrize(
    "query", FILTERS, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()) or "all"
)
def test_lists_with_every_filter_show_only_the_callers_tasks(
    scenario: Scenario, query: dict[str, str]
) -> None:
    alice = set(scenario.tasks.values())
    bob = list_all(BOB, query)
    assert not alice & set(bob)
    assert set(bob) <= {scenario.own}
    assert list_all(SIBLING, query) == []
    # the control: Alice's own list with the same filter finds hers
    if not query:
        assert set(list_all(ALICE, query)) == alice


def test_stats_count_only_the_callers_tasks(scenario: Scenario) -> None:
    bob = api("GET", "/stats", sub=BOB).body
    assert sum(bob["counts"]["by_status"].values()) == 1
    assert bob["counts"]["by_status"]["PENDING"] == 1
    assert bob["counts"]["by_status_type"] == {"PENDING": {"EMAIL": 1}}
    assert all(point["succeeded"] == point["failed"] == 0 for point in bob["throughput"])
    sibling = api("GET", "/stats", sub=SIBLING).body
    assert sum(sibling["counts"]["by_status"].values()) == 0
    alice = api("GET", "/stats", sub=ALICE).body
    assert sum(alice["counts"]["by_status"].values()) == 4


# ------------------------------------------------------------------ dead letters


@pytest.mark.parametrize("who", OTHERS)
def test_dead_letters_of_another_user_are_neither_listed_nor_redriven(
    scenario: Scenario, who: str
) -> None:
    before, queued = scenario.snapshot(), scenario.queued()
    assert api("GET", "/dead-letters", sub=who).body == {"items": []}
    assert api("POST", "/dead-letters/redrive", sub=who).body == {"redriven": 0, "skipped": 0}
    assert scenario.snapshot() == before
    assert scenario.queued() == queued
    mine = api("GET", "/dead-letters").body["items"]
    assert [letter["task_id"] for letter in mine] == [scenario.tasks["dead"]]


# ------------------------------------------------------------------ uploads


def test_upload_url_is_under_the_callers_prefix_and_expires(scenario: Scenario) -> None:
    bucket = scenario.aws.buckets["DataBucket"]
    for who in (ALICE, BOB):
        ticket = api("POST", "/uploads", sub=who, body=UPLOAD)
        assert ticket.status == 201, ticket.body
        body = ticket.body
        assert body["key"].startswith(f"uploads/{who}/")
        assert body["prefix"].startswith(f"uploads/{who}/")
        assert presigned_key(body["url"], bucket) == body["key"]
        assert 0 < presigned_expiry(body["url"]) <= UPLOAD_URL_MAX_SECONDS
        assert body["expires_in"] <= UPLOAD_URL_MAX_SECONDS
        query = parse_qs(urlparse(body["url"]).query)
        signed = query.get("X-Amz-SignedHeaders", [""])[0].split(";")
        # The size and type are signed: the URL cannot carry a bigger or other file.
        assert {"content-length", "content-type"} <= set(signed), signed


@pytest.mark.parametrize("who", OTHERS)
def test_upload_into_another_users_folder_is_refused(scenario: Scenario, who: str) -> None:
    response = api(
        "POST", "/uploads", sub=who, body={**UPLOAD, "prefix": scenario.upload["prefix"]}
    )
    assert_error_shape(response)
    assert response.status in (400, 422)


def test_upload_into_own_earlier_folder_is_allowed(scenario: Scenario) -> None:
    response = api("POST", "/uploads", body={**UPLOAD, "prefix": scenario.upload["prefix"]})
    assert response.status == 201
    assert response.body["key"] == scenario.upload["prefix"] + UPLOAD["filename"]


FOREIGN_INPUTS = [
    ("DATA_PROCESSING", "input_key", "{upload_key}"),
    ("DATA_PROCESSING", "input_key", "uploads/{bob}/../{alice}/x.csv"),
    ("DATA_PROCESSING", "input_key", "results/{alice}/x.csv"),
    ("IMAGE_PROCESSING", "input_prefix", "{upload_prefix}"),
    ("IMAGE_PROCESSING", "input_prefix", "uploads/{alice}/"),
    ("IMAGE_PROCESSING", "input_prefix", "uploads/{bob}/../{alice}/"),
]


@pytest.mark.parametrize(("task_type", "field", "template"), FOREIGN_INPUTS)
def test_task_reading_another_users_upload_fails_without_reading_it(
    scenario: Scenario, task_type: str, field: str, template: str
) -> None:
    value = template.format(
        upload_key=scenario.upload["key"],
        upload_prefix=scenario.upload["prefix"],
        alice=ALICE,
        bob=MALLORY,
    )
    submitted = api(
        "POST",
        "/tasks",
        sub=MALLORY,
        body={"type": task_type, "params": {field: value}, "max_attempts": 1},
    )
    if submitted.status != 201:  # refused at submit already: fine, nothing ran
        assert_error_shape(submitted)
        return
    with recorded_aws_calls() as calls:
        scenario.world.drain()
    task = api("GET", f"/tasks/{submitted.body['id']}", sub=MALLORY).body
    assert task["status"] == "FAILED", task
    touched = [
        (operation, params.get("Key") or params.get("Prefix"))
        for service, operation, params in calls
        if service == "s3"
    ]
    foreign = [t for t in touched if t[1] and not str(t[1]).startswith(f"results/{MALLORY}/")]
    assert foreign == [], f"read outside Mallory's own area: {foreign}"


# ------------------------------------------------------------------ results and downloads


def test_download_links_are_the_owners_only_and_expire(scenario: Scenario) -> None:
    bucket = scenario.aws.buckets["DataBucket"]
    task_id = scenario.tasks["succeeded"]
    detail = api("GET", f"/tasks/{task_id}").body
    assert detail["downloads"], detail
    for link in detail["downloads"]:
        assert link["key"].startswith(f"results/{ALICE}/{task_id}/")
        assert presigned_key(link["url"], bucket) == link["key"]
        assert 0 < presigned_expiry(link["url"]) <= DOWNLOAD_URL_MAX_SECONDS
    assert_same_as_missing(
        api("GET", f"/tasks/{task_id}", sub=BOB), task_id, "GET", f"/tasks/{task_id}"
    )


def test_download_links_are_made_only_for_keys_under_the_owners_results(
    scenario: Scenario,
) -> None:
    """Whatever keys a task lists as outputs, only results/<owner>/ ones get a URL."""
    task_id = scenario.tasks["succeeded"]
    own = scenario.store.tasks.get(task_id).outputs
    foreign = [
        f"results/{BOB}/x.json",
        f"uploads/{ALICE}/x.csv",
        f"results/{SIBLING}/x.json",
        f"results/{ALICE}x/y.json",
        "results/x.json",
        f"/results/{ALICE}/x.json",
    ]
    scenario.store.table.client.update_item(
        TableName=scenario.store.table.name,
        Key={"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "META"}},
        UpdateExpression="SET outputs = :o",
        ExpressionAttributeValues={":o": {"L": [{"S": k} for k in [*own, *foreign]]}},
    )
    try:
        detail = api("GET", f"/tasks/{task_id}").body
    finally:
        scenario.store.table.client.update_item(
            TableName=scenario.store.table.name,
            Key={"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "META"}},
            UpdateExpression="SET outputs = :o",
            ExpressionAttributeValues={":o": {"L": [{"S": k} for k in own]}},
        )
    assert [link["key"] for link in detail["downloads"]] == own


def test_result_location_is_shown_only_to_its_owner(scenario: Scenario) -> None:
    task_id = scenario.tasks["succeeded"]
    mine = api("GET", f"/tasks/{task_id}").body
    assert mine["result_location"].startswith("s3://")
    assert f"/results/{ALICE}/" in mine["result_location"]
    for who in OTHERS:
        listed = list_all(who, {"status": "SUCCESS"})
        assert task_id not in listed


# ------------------------------------------------------------------ idempotency keys


def test_same_idempotency_key_of_another_user_never_returns_the_first_users_task(
    scenario: Scenario,
) -> None:
    headers = {"idempotency-key": "shared-key-1"}
    first = api("POST", "/tasks", sub=CAROL, body=EMAIL, headers=headers)
    assert first.status == 201
    api("POST", "/tasks", sub=CAROL, body=EMAIL, headers={"idempotency-key": "shared-key-2"})
    for who in (DAVE,):
        second = api("POST", "/tasks", sub=who, body=EMAIL, headers=headers)
        assert second.status == 201, second.body
        assert second.body["id"] != first.body["id"]
        # and with another body it is not a 409 that would reveal Alice used the key
        third = api(
            "POST",
            "/tasks",
            sub=who,
            body={**EMAIL, "priority": "high"},
            headers={"idempotency-key": "shared-key-2"},
        )
        assert third.status == 201
    scenario.world.purge()


def test_request_without_identity_is_401_on_every_protected_route(scenario: Scenario) -> None:
    task_id = scenario.tasks["pending"]
    routes = [
        ("GET", "/tasks"),
        ("POST", "/tasks"),
        ("GET", f"/tasks/{task_id}"),
        ("DELETE", f"/tasks/{task_id}"),
        ("POST", f"/tasks/{task_id}/retry"),
        ("GET", "/stats"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/redrive"),
        ("GET", "/task-types"),
        ("POST", "/uploads"),
    ]
    before = scenario.snapshot()
    for method, path in routes:
        body = EMAIL if path == "/tasks" and method == "POST" else None
        body = UPLOAD if path == "/uploads" else body
        response = api(method, path, sub=None, body=body)
        assert_error_shape(response, 401)
    assert scenario.snapshot() == before
