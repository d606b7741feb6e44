"""The push function over the table's stream, against moto: each change of a task reaches its
owner's open connections, and no one else's; superseded states are merged within a batch;
a gone connection is forgotten; one Query per owner per batch; messages stay bounded."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

from devstack.harness import StreamDrain
from devstack.streams import StreamReader
from taskqueue import wiring
from taskqueue.models import Task, TaskError, TaskStatus, utcnow
from taskqueue.push import (
    MAX_ERROR_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_TASKS_PER_MESSAGE,
    ManagementApi,
    Pusher,
    Update,
    messages_of,
    summary_of,
    updates_of,
)
from taskqueue.store import ConnectionStore, Store
from tests.helpers import FakeLambdaContext, load_function
from tests.pipeline_world import OWNER, World
from tests.security.support import recorded_aws_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
FRAME_BYTES = 32 * 1024  # API Gateway's WebSocket frame size


@dataclass
class PushWorld:
    table: str
    store: Store
    connections: ConnectionStore
    stream: StreamDrain  # the push function's stream mapping

    @property
    def reader(self) -> StreamReader:
        return self.stream.reader

    @property
    def batch_size(self) -> int:
        return self.stream.batch_size

    def task(self, owner: str, task_type: str = "EMAIL", **fields: Any) -> str:
        now = utcnow()
        task = Task(
            task_id=uuid.uuid4().hex,
            owner=owner,
            task_type=task_type,
            params={"recipient_count": 1},
            status=TaskStatus.PENDING,
            created_at=now,
            updated_at=now,
            **fields,
        )
        self.store.tasks.create(task)
        return task.task_id

    def records(self, batch_size: int | None = None) -> list[dict[str, Any]]:
        return self.reader.read(batch_size or self.batch_size)

    def push(self, batch_size: int | None = None) -> dict[str, int]:
        """One invocation of the handler with the next batch, as the mapping would."""
        answer: dict[str, int] = self.stream.invoke_next(batch_size)
        return answer


def push_reader(table: str) -> tuple[StreamReader, int]:
    """The push function's stream mapping of `table` from now on (its StartingPosition is
    LATEST), and its batch size."""
    stream = StreamDrain.of(table, "PushFunction")
    return stream.reader, stream.batch_size


@pytest.fixture
def push_world(aws: Any, function_env: Callable[[str], dict[str, str]]) -> Iterator[PushWorld]:
    table = function_env("PushFunction")["TABLE_NAME"]  # what wiring built is built again
    stream = StreamDrain.of(table, "PushFunction")
    store = wiring.new_store(wiring.settings())
    yield PushWorld(table, store, store.connections, stream)


def received(connection_id: str) -> list[dict[str, Any]]:
    """The messages moto's management API recorded for a connection, in order."""
    backend = apigatewaymanagementapi_backends[ACCOUNT][REGION]
    connection = backend.connections.get(connection_id)
    data = connection.data.decode() if connection is not None else ""
    messages, decoder, position = [], json.JSONDecoder(), 0
    while position < len(data):
        message, position = decoder.raw_decode(data, position)
        messages.append(message)
    return messages


def ids_in(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(task["id"] for message in messages for task in message["tasks"])


# ------------------------------------------------------------------------------- owners


def test_each_owner_receives_its_own_tasks_and_no_one_elses(push_world: PushWorld) -> None:
    for connection_id, owner in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        push_world.connections.add(owner, connection_id)
    alice = [push_world.task("alice"), push_world.task("alice", "DATA_PROCESSING")]
    bob = [push_world.task("bob")]
    push_world.task("carol")  # no open page: nothing to send

    answer = push_world.push()

    assert answer == {
        "updates": 4,
        "owners": 3,
        "connections": 3,
        "sent": 3,
        "gone": 0,
        "failed": 0,
    }
    assert ids_in(received("a1")) == ids_in(received("a2")) == sorted(alice)
    assert ids_in(received("b1")) == bob
    (message,) = received("b1")
    assert message["type"] == "tasks" and message["more"] is False
    (task,) = message["tasks"]
    assert task["status"] == "PENDING" and task["type"] == "EMAIL" and task["progress"] == 0
    assert "params" not in task and "result" not in task  # small: the page reads those itself


def test_one_query_per_owner_per_batch(push_world: PushWorld) -> None:
    for owner in ("alice", "bob", "carol"):
        push_world.connections.add(owner, f"{owner}-page")
        for _ in range(3):
            push_world.task(owner)

    with recorded_aws_calls() as calls:
        answer = push_world.push()

    queries = [params for service, operation, params in calls if operation == "Query"]
    partitions = sorted(q["ExpressionAttributeValues"][":pk"]["S"] for q in queries)
    assert partitions == ["CONN#alice", "CONN#bob", "CONN#carol"]
    assert answer["sent"] == 3
    assert not any(operation == "Scan" for _, operation, _ in calls)


# ------------------------------------------------------------------------------- a task's changes


@pytest.fixture
def running_world(push_world: PushWorld, world: World) -> tuple[World, PushWorld]:
    # The push function's environment first: setting a function's environment rebuilds what
    # wiring made, and the world's worker must keep the test's task type.
    push_world.connections.add(OWNER, "page-1")
    return world, push_world


def test_a_batch_pushes_only_the_latest_state_of_each_task(
    running_world: tuple[World, PushWorld],
) -> None:
    world, push_world = running_world
    task_id = world.submit({"chunks": 4})
    world.pipeline().run()
    batch = push_world.records()
    assert len(batch) >= 6  # submit, claim, four checkpoints, finish: all in one batch

    app = load_function("push")
    app.lambda_handler({"Records": batch}, FakeLambdaContext("push"))

    (message,) = received("page-1")
    (task,) = message["tasks"]
    assert task["id"] == task_id
    assert (task["status"], task["progress"], task["units_done"], task["units_total"]) == (
        "SUCCESS",
        100,
        4,
        4,
    )
    assert task["finished_at"] and task["duration_seconds"] is not None


def test_record_by_record_the_page_sees_every_visible_step_once(
    running_world: tuple[World, PushWorld],
) -> None:
    world, push_world = running_world
    world.submit({"chunks": 4})
    world.pipeline().run()
    app = load_function("push")

    for record in push_world.records(batch_size=1000):
        app.lambda_handler({"Records": [record]}, FakeLambdaContext("push"))

    steps = [
        (task["status"], task["progress"], task["units_done"])
        for message in received("page-1")
        for task in message["tasks"]
    ]
    assert steps == [
        ("PENDING", 0, 0),
        ("RUNNING", 0, 0),
        ("RUNNING", 25, 1),
        ("RUNNING", 50, 2),
        ("RUNNING", 75, 3),
        ("SUCCESS", 100, 4),
    ]


def test_writes_no_page_shows_are_not_pushed(push_world: PushWorld) -> None:
    task_id = push_world.task("alice")
    push_world.store.tasks.mark_enqueued(task_id)  # the submit's enqueue mark: a META write
    records = push_world.records()
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY"]

    updates = updates_of(records)

    assert [update.summary["status"] for update in updates] == ["PENDING"]


def test_unreadable_and_foreign_records_are_skipped_and_the_rest_pushed(
    push_world: PushWorld,
) -> None:
    task_id = push_world.task("alice")
    (good,) = push_world.records()
    broken = {
        **good,
        "dynamodb": {**good["dynamodb"], "NewImage": {"pk": {"S": "TASK#x"}, "sk": {"S": "META"}}},
    }
    removed = {**good, "eventName": "REMOVE", "dynamodb": {"Keys": good["dynamodb"]["Keys"]}}
    connection_item = {
        "dynamodb": {"Keys": {"pk": {"S": "CONN#alice"}, "sk": {"S": "c1"}}, "NewImage": {}}
    }

    updates = updates_of([broken, "not a record", removed, connection_item, good])

    assert [update.summary["id"] for update in updates] == [task_id]


# ------------------------------------------------------------------------------- delivery


class FakeManagementApi:
    """The management API's answers: a connection is open, gone, or the API is throttling."""

    def __init__(self, gone: set[str], throttled: set[str]) -> None:
        self.gone = gone
        self.throttled = throttled
        self.posts: list[tuple[str, bytes]] = []

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        if ConnectionId in self.gone:
            raise ClientError(
                {"Error": {"Code": "GoneException", "Message": "gone"}}, "PostToConnection"
            )
        if ConnectionId in self.throttled:
            raise ClientError(
                {"Error": {"Code": "LimitExceededException", "Message": "slow down"}},
                "PostToConnection",
            )
        self.posts.append((ConnectionId, Data))
        return {}


def test_a_gone_connection_is_forgotten_and_the_others_still_get_the_message(
    push_world: PushWorld,
) -> None:
    for connection_id in ("open-1", "gone-1", "throttled-1"):
        push_world.connections.add("alice", connection_id)
    push_world.connections.add("bob", "bob-gone")
    api = FakeManagementApi(gone={"gone-1", "bob-gone"}, throttled={"throttled-1"})
    pusher = Pusher(push_world.connections, ManagementApi("https://unused", client=api))  # type: ignore[arg-type]
    task_id = push_world.task("alice")
    push_world.task("bob")

    report = pusher.push(messages_of(updates_of(push_world.records())))

    assert (report.owners, report.connections, report.sent, report.gone) == (2, 4, 1, 2)
    assert report.failed == {"LimitExceededException": 1}
    assert [connection for connection, _ in api.posts] == ["open-1"]
    assert ids_in([json.loads(api.posts[0][1])]) == [task_id]
    # Gone connections are forgotten; a throttled one stays (it is still open).
    assert sorted(c.connection_id for c in push_world.connections.of_owner("alice")) == [
        "open-1",
        "throttled-1",
    ]
    assert push_world.connections.of_owner("bob") == []


def test_nothing_is_posted_when_no_page_is_open(push_world: PushWorld) -> None:
    push_world.task("alice")

    answer = push_world.push()

    assert answer == {
        "updates": 1,
        "owners": 1,
        "connections": 0,
        "sent": 0,
        "gone": 0,
        "failed": 0,
    }


# ------------------------------------------------------------------------------- bounds


def summary(task_id: str, **fields: Any) -> dict[str, Any]:
    now = utcnow()
    task = Task(
        task_id=task_id,
        owner="alice",
        task_type="DATA_PROCESSING",
        params={"rows": 10},
        status=TaskStatus.RUNNING,
        created_at=now,
        updated_at=now,
        started_at=now,
        **fields,
    )
    return summary_of(task)


def test_more_changed_tasks_than_a_message_holds_keeps_the_latest_and_says_more() -> None:
    updates = [Update("alice", summary(f"{n:032x}")) for n in range(MAX_TASKS_PER_MESSAGE + 10)]
    updates.append(Update("alice", summary(f"{3:032x}", progress=40)))  # task 3 changed again

    message = messages_of(updates)["alice"]

    assert message.more is True
    assert len(message.tasks) == MAX_TASKS_PER_MESSAGE
    assert message.tasks[-1]["id"] == f"{3:032x}" and message.tasks[-1]["progress"] == 40
    kept = {task["id"] for task in message.tasks}
    assert f"{MAX_TASKS_PER_MESSAGE + 9:032x}" in kept and f"{0:032x}" not in kept


def test_a_message_fits_in_one_websocket_frame_whatever_its_tasks_hold() -> None:
    error = TaskError(type="InvalidInput", message="é" * 5000)
    plain = [Update("alice", summary(uuid.uuid4().hex)) for _ in range(MAX_TASKS_PER_MESSAGE)]
    failing = [
        Update("bob", summary(uuid.uuid4().hex, error=error, progress=n % 100))
        for n in range(MAX_TASKS_PER_MESSAGE)
    ]

    messages = messages_of([*plain, *failing])

    assert messages["alice"].more is False
    assert len(messages["alice"].tasks) == MAX_TASKS_PER_MESSAGE
    assert len(messages["alice"].encode()) <= MAX_MESSAGE_BYTES
    # Long errors are cut, and the tasks that would not fit are left to the page's own read.
    bob = messages["bob"]
    assert len(bob.tasks[0]["error"]["message"]) == MAX_ERROR_CHARS + 1
    assert bob.more is True and 0 < len(bob.tasks) < MAX_TASKS_PER_MESSAGE
    assert bob.tasks[-1]["id"] == failing[-1].summary["id"]  # the most recent are kept
    assert len(bob.encode()) <= MAX_MESSAGE_BYTES < FRAME_BYTES
