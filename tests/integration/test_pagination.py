"""GET /tasks pages through the sharded indexes: every filter, no gaps, no duplicates, bounded reads."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from devstack.harness import template_resources
from devstack.resources import function_environment
from taskqueue import aws as taskqueue_aws
from taskqueue import wiring
from taskqueue.lifecycle import Action, decide
from taskqueue.models import Task, TaskStatus, format_time, utcnow
from taskqueue.store import Store
from taskqueue.store.items import index_partition, shard_of, task_key
from taskqueue.store.listing import MAX_CANDIDATES_PER_TASK
from tests.conftest import FAKE_AWS_ENV
from tests.helpers import (
    ApiResponse,
    call_api,
    claim_as_worker,
    finish_as_worker,
    http_event,
    reset_function_caches,
)

OWNER = "user-123"
OTHER = "user-456"
TYPES = ("DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING")
TASK_COUNT = 45


class StepClock:
    """A clock that moves one second per reading, so every timestamp is distinct and known."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class Built:
    tasks: list[Task]  # as they are now (final status), in creation order
    shard_count: int
    other_tasks: list[Task] = field(default_factory=list)

    def expected(self, keep: Callable[[Task], bool]) -> list[str]:
        chosen = [t for t in self.tasks if keep(t)]
        return [t.task_id for t in sorted(chosen, key=lambda t: t.created_at, reverse=True)]


def status_for(index: int) -> TaskStatus:
    """A fixed mix: 18 PENDING, 9 RUNNING, 5 SUCCESS, 4 FAILED, 9 CANCELLED."""
    return {
        0: TaskStatus.PENDING,
        1: TaskStatus.PENDING,
        2: TaskStatus.RUNNING,
        3: TaskStatus.SUCCESS if index % 2 else TaskStatus.FAILED,
        4: TaskStatus.CANCELLED,
    }[index % 5]


def create(store: Store, owner: str, task_type: str) -> Task:
    now = store.table.clock()
    task = Task(
        task_id=uuid.uuid4().hex,
        owner=owner,
        task_type=task_type,
        params={},
        status=TaskStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    created, _ = store.tasks.create(task)
    return created


# Tasks written before PENDING and RUNNING shared the ACTIVE partition, by creation index:
# the old partition their status-index keys name (index 2 then runs: a claim keeps the keys).
OLD_KEYS = {0: "PENDING", 2: "PENDING", 7: "RUNNING"}


def use_old_status_keys(store: Store, task: Task, partition: str) -> None:
    """Give a task the status-index keys of the old PENDING or RUNNING partition."""
    shard = shard_of(task.task_id, store.table.shard_count)
    keys = {
        name: index_partition(name, task.owner, shard, partition, task.task_type)
        for name in ("gsi3pk", "gsi4pk")
    }
    store.table.client.update_item(
        TableName=store.table.name,
        Key=task_key(task.task_id),
        UpdateExpression="SET gsi3pk = :s, gsi4pk = :st",
        ExpressionAttributeValues={":s": {"S": keys["gsi3pk"]}, ":st": {"S": keys["gsi4pk"]}},
    )


def move_to(store: Store, task: Task, status: TaskStatus) -> None:
    if status == TaskStatus.PENDING:
        return
    if status == TaskStatus.CANCELLED:
        store.tasks.cancel(task, decide(task, Action.CANCEL, store.table.clock()))
        return
    claimed = claim_as_worker(store, task.task_id)
    if status != TaskStatus.RUNNING:
        finish_as_worker(store, claimed, status)


@pytest.fixture(scope="module")
def built(transformed_template: dict[str, Any]) -> Iterator[Built]:
    """45 tasks of one owner over the shards (mixed types and statuses), and 6 of another.

    Built once for the module (every test here only reads): moto copies the whole table on
    each TransactWriteItems, so building it per test would cost seconds each. Same resources
    and ApiFunction environment as the `settings_env` fixture, at module scope.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        with template_resources(transformed_template) as resources:
            environment = function_environment(transformed_template, "ApiFunction", resources)
            for name, value in environment.items():
                patch.setenv(name, value)
            reset_function_caches()
            shard_count = int(environment["SHARD_COUNT"])
            # An hour ago: near enough to now that finished tasks have not expired for the API.
            clock = StepClock(utcnow().replace(microsecond=0) - timedelta(hours=1))
            store = wiring.new_store(wiring.settings(), clock=clock)
            created = []
            for index in range(TASK_COUNT):
                task = create(store, OWNER, TYPES[index % 3])
                if OLD_KEYS.get(index) == "PENDING":
                    use_old_status_keys(store, task, "PENDING")
                move_to(store, task, status_for(index))
                if OLD_KEYS.get(index) == "RUNNING":
                    use_old_status_keys(store, task, "RUNNING")
                created.append(task.task_id)
            others = [create(store, OTHER, TYPES[i % 3]) for i in range(6)]
            yield Built([store.tasks.get(task_id) for task_id in created], shard_count, others)
    reset_function_caches()


@dataclass
class ReadCounter:
    """Counts DynamoDB requests and the items they read, per API call."""

    requests: int = 0
    items: int = 0

    def after_call(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.requests += 1
        if model.name == "Query":
            self.items += parsed.get("ScannedCount", parsed.get("Count", 0))
        elif model.name == "BatchGetItem":
            self.items += sum(len(items) for items in parsed.get("Responses", {}).values())
        elif model.name == "GetItem":
            self.items += 1 if "Item" in parsed else 0

    def reset(self) -> None:
        self.requests = self.items = 0


@pytest.fixture
def reads(built: Built) -> Iterator[ReadCounter]:
    """Hooks the very client the API's store uses (the cached `taskqueue.aws` client)."""
    counter = ReadCounter()
    client = taskqueue_aws.client("dynamodb")
    client.meta.events.register("after-call.dynamodb.*", counter.after_call)
    yield counter
    client.meta.events.unregister("after-call.dynamodb.*", counter.after_call)


def get_page(query: dict[str, str], sub: str = OWNER) -> ApiResponse:
    return call_api(http_event("GET", "/tasks", query=query, sub=sub))


def page_through(query: dict[str, str], sub: str = OWNER, max_pages: int = 50) -> list[list[str]]:
    """Every page's ids, following next_cursor until it is null."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while len(pages) < max_pages:
        response = get_page({**query, **({"cursor": cursor} if cursor else {})}, sub)
        assert response.status == 200, response.body
        pages.append([item["id"] for item in response.body["items"]])
        cursor = response.body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"still a next_cursor after {max_pages} pages")


def items_read_per_page(reads: ReadCounter, query: dict[str, str], limit: int) -> list[int]:
    """The items each page of the list reads, following next_cursor until it is null."""
    cursor: str | None = None
    per_page: list[int] = []
    while True:
        reads.reset()
        response = get_page(
            {**query, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        )
        assert response.status == 200
        per_page.append(reads.items)
        cursor = response.body["next_cursor"]
        if cursor is None:
            return per_page


def time_between(built: Built, low: int, high: int) -> tuple[datetime, datetime]:
    """Half a second around the creation of tasks `low` and `high` (by creation order)."""
    ordered = sorted(t.created_at for t in built.tasks)
    return ordered[low] - timedelta(milliseconds=500), ordered[high] + timedelta(milliseconds=500)


# name -> (query built from the data, predicate, page size)
FILTERS: dict[str, Callable[[Built], tuple[dict[str, str], Callable[[Task], bool], int]]] = {
    "none": lambda b: ({}, lambda t: True, 4),
    "status": lambda b: (
        {"status": "PENDING"},
        lambda t: t.status == TaskStatus.PENDING,
        4,
    ),
    "running": lambda b: (
        {"status": "RUNNING"},
        lambda t: t.status == TaskStatus.RUNNING,
        3,
    ),
    "type": lambda b: ({"type": "EMAIL"}, lambda t: t.task_type == "EMAIL", 4),
    "status_and_type": lambda b: (
        {"status": "PENDING", "type": "EMAIL"},
        lambda t: t.status == TaskStatus.PENDING and t.task_type == "EMAIL",
        2,
    ),
    "created_range": lambda b: (
        {
            "created_after": format_time(time_between(b, 10, 30)[0]),
            "created_before": format_time(time_between(b, 10, 30)[1]),
        },
        lambda t: time_between(b, 10, 30)[0] <= t.created_at < time_between(b, 10, 30)[1],
        4,
    ),
    "status_in_created_range": lambda b: (
        {
            "status": "CANCELLED",
            "created_after": format_time(time_between(b, 5, 40)[0]),
        },
        lambda t: t.status == TaskStatus.CANCELLED and t.created_at >= time_between(b, 5, 40)[0],
        2,
    ),
}


def test_tasks_spread_over_at_least_ten_shards(built: Built) -> None:
    shards = {shard_of(t.task_id, built.shard_count) for t in built.tasks}

    assert built.shard_count == 32
    assert len(shards) >= 10


@pytest.mark.parametrize("name", list(FILTERS))
def test_paging_returns_every_matching_task_once_newest_first(built: Built, name: str) -> None:
    query, keep, limit = FILTERS[name](built)
    expected = built.expected(keep)

    pages = page_through({**query, "limit": str(limit)})

    assert len(pages) >= 3
    full, rest = divmod(len(expected), limit)
    sizes = [len(page) for page in pages]
    if "status" in query and query["status"] in ("PENDING", "RUNNING") and sizes[-1] == 0:
        # The partition both share may hold entries of the other status past the last
        # match: the page that reads them is empty, and the last
        sizes.pop()
    assert sizes == [limit] * full + ([rest] if rest else [])
    flat = [task_id for page in pages for task_id in page]
    assert flat == expected
    assert len(set(flat)) == len(flat)


@pytest.mark.parametrize("name", ["none", "status_and_type", "created_range"])
def test_each_page_reads_at_most_three_page_sizes_plus_one_item_per_shard(
    built: Built, reads: ReadCounter, name: str
) -> None:
    query, _, limit = FILTERS[name](built)

    per_page = items_read_per_page(reads, query, limit)

    assert len(per_page) >= 3
    assert max(per_page) <= 3 * limit + built.shard_count


@pytest.mark.parametrize("name", ["status", "running"])
def test_a_page_of_an_active_status_reads_within_its_candidate_budget(
    built: Built, reads: ReadCounter, name: str
) -> None:
    # Given PENDING and RUNNING tasks sharing the ACTIVE partition (each task's status is
    # checked), and tasks still under the old PENDING and RUNNING keys
    query, _, limit = FILTERS[name](built)

    # When every page is read
    per_page = items_read_per_page(reads, query, limit)

    # Then no page reads more than its candidates twice (entry and item) and a shard's worth
    assert len(per_page) >= 3
    assert max(per_page) <= 2 * (MAX_CANDIDATES_PER_TASK * limit + built.shard_count)


def test_tasks_under_the_old_pending_and_running_keys_are_listed(built: Built) -> None:
    # Given tasks whose status-index keys still name the old PENDING or RUNNING partition
    # (one of them claimed since: RUNNING under a PENDING key)
    old = {built.tasks[index].task_id: built.tasks[index] for index in OLD_KEYS}
    assert {t.status for t in old.values()} == {TaskStatus.PENDING, TaskStatus.RUNNING}
    client = taskqueue_aws.client("dynamodb")
    for index, partition in OLD_KEYS.items():
        item = client.get_item(
            TableName=wiring.settings().table_name, Key=task_key(built.tasks[index].task_id)
        )["Item"]
        assert f"#STATUS#{partition}#" in item["gsi3pk"]["S"]

    # When the owner lists by each active status, and with no filter
    pending = [i for page in page_through({"status": "PENDING", "limit": "50"}) for i in page]
    running = [i for page in page_through({"status": "RUNNING", "limit": "50"}) for i in page]
    everything = [i for page in page_through({"limit": "50"}) for i in page]

    # Then each shows under its status, once
    for task_id, task in old.items():
        assert (task_id in pending, task_id in running) == (
            task.status == TaskStatus.PENDING,
            task.status == TaskStatus.RUNNING,
        )
        assert everything.count(task_id) == 1
    assert pending == built.expected(lambda t: t.status == TaskStatus.PENDING)
    assert running == built.expected(lambda t: t.status == TaskStatus.RUNNING)


def test_cursor_of_one_filter_is_rejected_under_another(built: Built) -> None:
    first = get_page({"status": "PENDING", "limit": "4"})
    cursor = first.body["next_cursor"]
    assert cursor is not None

    response = get_page({"type": "EMAIL", "limit": "4", "cursor": cursor})

    assert response.status == 400
    assert response.body["error"]["code"] == "invalid_request"
    assert response.body["error"]["message"] == (
        "cursor is not valid for this list (it belongs to other filters)"
    )


def test_cursor_of_another_owner_is_rejected(built: Built) -> None:
    cursor = get_page({"limit": "4"}).body["next_cursor"]
    assert cursor is not None

    response = get_page({"limit": "4", "cursor": cursor}, sub=OTHER)

    assert response.status == 400
    assert response.body["error"]["code"] == "invalid_request"


def decode(cursor: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def encode(raw: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def test_forged_cursor_with_another_owners_positions_never_returns_their_tasks(
    built: Built,
) -> None:
    genuine = get_page({"limit": "2"}, sub=OTHER).body["next_cursor"]
    assert genuine is not None
    forged = decode(genuine)
    forged["p"] = {
        str(shard_of(t.task_id, built.shard_count)): f"{format_time(t.created_at)}#{t.task_id}"
        for t in built.tasks
    }
    cursor: str | None = encode(forged)
    seen: list[str] = []

    for _ in range(20):
        response = get_page({"limit": "2", **({"cursor": cursor} if cursor else {})}, sub=OTHER)
        assert response.status == 200
        seen += [item["id"] for item in response.body["items"]]
        cursor = response.body["next_cursor"]
        if cursor is None:
            break

    assert cursor is None
    assert set(seen) <= {t.task_id for t in built.other_tasks}
    assert not set(seen) & {t.task_id for t in built.tasks}
