"""The store executes each row of the lifecycle table as one conditional write: the row's
statuses and guard are the condition, its event line rides on the write; a task outside the
row's statuses or breaking its guard is refused and left as it was. And every write of a
task's status, through a whole pipeline run, comes from the transition executor."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from taskqueue import lifecycle, wiring
from taskqueue.errors import TransitionConflict
from taskqueue.lifecycle import TABLE, Action, Guard, Transition, number_attempts
from taskqueue.models import Task, TaskStatus, format_time, utcnow
from taskqueue.store import Store
from taskqueue.store.items import (
    TaskItem,
    shard_of,
    status_index_keys,
    status_partition,
    task_key,
)
from tests.pipeline_world import World, make_world

TOKEN = "lease-1"
GENERATION = "0123456789abcdef"  # the generation of the message the row is executed for


@pytest.fixture
def store(settings_env: dict[str, str]) -> Store:
    return wiring.new_store(wiring.settings())


def put_task(store: Store, status: TaskStatus, guard: Guard, *, meets: bool = True) -> Task:
    """A task item written as it is, in `status`, meeting (or breaking) `guard` now."""
    now = utcnow()
    epoch = int(now.timestamp())
    task = Task(
        task_id=uuid.uuid4().hex,
        owner="alice",
        task_type="EMAIL",
        params={},
        status=status,
        created_at=now - timedelta(minutes=5),
        updated_at=now - timedelta(minutes=1),
    )
    item = TaskItem.new(task, store.table.shard_count, status=status, log=[])
    changes: dict[str, Any] = {
        "lease_token": TOKEN,
        "lease_expires_at": epoch + 600,
        "generation": GENERATION,
    }
    if guard == Guard.DUE:
        later = now + timedelta(hours=1)
        changes = {"run_at": format_time(now - timedelta(seconds=1) if meets else later)}
    elif guard == Guard.LEASE_RELEASED and meets:
        changes["lease_expires_at"] = 0
    elif guard == Guard.LEASE_EXPIRED and meets:
        changes["lease_expires_at"] = epoch - 5
    elif guard == Guard.LEASE_HELD and not meets:
        changes["lease_token"] = "another-worker"
    elif guard in (Guard.CURRENT_MESSAGE, Guard.CURRENT_UNLEASED):
        changes["generation"] = GENERATION if meets else "fedcba9876543210"
        if guard == Guard.CURRENT_UNLEASED:
            changes["lease_expires_at"] = epoch - 5  # its worker died
    stored = item.model_copy(update=changes).dynamodb()
    store.table.client.put_item(TableName=store.table.name, Item=stored)
    return store.tasks.get(task.task_id)


def fields_of(row: Transition) -> dict[str, object]:
    return {name: f"<{name}>" for name in row.fields}


def execute(store: Store, row: Transition, task: Task) -> Task | None:
    return store.tasks.writer.execute(
        row,
        task.task_id,
        task.owner,
        task.task_type,
        lease_token=TOKEN,
        generation=GENERATION,
        fields=fields_of(row),
    )


MOVES = [(r, s) for r in TABLE if r.action != Action.SUBMIT for s in sorted(r.sources)]
IDS = [f"{r.action}-{s}-{r.guard.name}" for r, s in MOVES]


@pytest.mark.parametrize("move", MOVES, ids=IDS)
def test_each_row_is_one_conditional_write_with_its_event_line(
    store: Store, move: tuple[Transition, TaskStatus]
) -> None:
    # Given a task in the row's status, meeting its guard
    row, source = move
    task = put_task(store, source, row.guard)
    # When the store executes the row
    written = execute(store, row, task)
    # Then the task has the row's status (or kept its own), the row's flag, and its line
    stored, events = store.tasks.get_with_events(task.task_id, task.owner)
    assert written == stored
    assert stored.status == (row.target or source)
    if row.flag:
        assert getattr(stored, row.flag.value) is True
    line = row.line(fields_of(row))
    shown = number_attempts([line], stored.max_attempts) if line else []  # "started (1 of 3)"
    assert [e.message for e in events] == shown
    if row.target is not None and row.target.is_terminal:
        assert stored.finished_at is not None and stored.lease_expires_at == 0
        assert stored.lease_token is None


@pytest.mark.parametrize("move", MOVES, ids=IDS)
def test_each_row_writes_the_status_index_keys_only_when_their_partition_changes(
    store: Store, move: tuple[Transition, TaskStatus]
) -> None:
    # Given a task in the row's status, meeting its guard (PENDING and RUNNING share the
    # ACTIVE partition of the status indexes)
    row, source = move
    task = put_task(store, source, row.guard)
    updates: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        updates.append(params.get("UpdateExpression", ""))

    events = store.table.client.meta.events
    events.register("before-parameter-build.dynamodb.UpdateItem", record)
    # When the store executes the row
    try:
        execute(store, row, task)
    finally:
        events.unregister("before-parameter-build.dynamodb.UpdateItem", record)
    # Then the item's keys name the partition of its status, and the write set them only
    # if that partition is another than the one it came from (a claim writes no index entry)
    final = row.target or source
    item = store.table.client.get_item(TableName=store.table.name, Key=task_key(task.task_id))
    shard = shard_of(task.task_id, store.table.shard_count)
    expected = status_index_keys(task.owner, task.task_type, final, shard)
    assert {name: item["Item"][name]["S"] for name in expected} == expected
    moved = status_partition(final) != status_partition(source)
    assert [("gsi3pk" in u, "gsi4pk" in u) for u in updates[:1]] == [(moved, moved)]


@pytest.mark.parametrize("move", MOVES, ids=IDS)
def test_each_row_refuses_a_task_in_another_status_and_changes_nothing(
    store: Store, move: tuple[Transition, TaskStatus]
) -> None:
    # Given a task in a status the row does not start from
    row, _ = move
    other = next(s for s in TaskStatus if s not in row.sources)
    task = put_task(store, other, row.guard)
    # When the store executes the row, then the write is refused with the task as it is
    with pytest.raises(TransitionConflict) as refused:
        execute(store, row, task)
    assert refused.value.current == task
    assert store.tasks.get(task.task_id) == task


GUARDED = [(r, s) for r, s in MOVES if r.guard != Guard.NONE]


@pytest.mark.parametrize(
    "move", GUARDED, ids=[f"{r.action}-{s}-{r.guard.name}" for r, s in GUARDED]
)
def test_each_guarded_row_refuses_a_task_that_breaks_its_guard(
    store: Store, move: tuple[Transition, TaskStatus]
) -> None:
    row, source = move
    task = put_task(store, source, row.guard, meets=False)
    with pytest.raises(TransitionConflict) as refused:
        execute(store, row, task)
    assert refused.value.current == task
    assert store.tasks.get(task.task_id) == task


def test_event_lines_are_shown_in_the_order_of_their_writes_not_their_clocks(
    store: Store,
) -> None:
    # Given a cancelled task, and a retry whose writer's clock reads a little earlier than
    # the cancel's did (a line's time is taken before its write: a claim stamped just before
    # an owner's request can land just after it)
    task = put_task(store, TaskStatus.PENDING, Guard.NONE)
    store.tasks.cancel(task, lifecycle.row(Action.CANCEL, TaskStatus.PENDING))
    cancelled = store.tasks.get(task.task_id)
    now = utcnow()
    store.table.clock = lambda: now - timedelta(seconds=1)
    store.tasks.retry(cancelled, lifecycle.row(Action.RETRY, TaskStatus.CANCELLED), False)
    # When its events are read, then they are in the order the writes happened
    _, events = store.tasks.get_with_events(task.task_id, task.owner)
    assert [e.message for e in events] == ["cancelled before it started", "retry requested: resume"]
    assert events[1].time < events[0].time


def test_a_row_that_changes_the_status_checks_the_tasks_identity(store: Store) -> None:
    # The status index keys are derived from owner and type: a write for another identity
    # (a stale or forged message) is refused
    row = lifecycle.row(Action.CANCEL, TaskStatus.PENDING)
    task = put_task(store, TaskStatus.PENDING, row.guard)
    with pytest.raises(TransitionConflict):
        store.tasks.writer.execute(row, task.task_id, "mallory", task.task_type)
    assert store.tasks.get(task.task_id).status == TaskStatus.PENDING


def test_a_refused_write_of_a_missing_task_says_there_is_none(store: Store) -> None:
    row = lifecycle.row(Action.CANCEL, TaskStatus.PENDING)
    with pytest.raises(TransitionConflict) as refused:
        store.tasks.writer.execute(row, uuid.uuid4().hex, "alice", "EMAIL")
    assert refused.value.current is None


def test_submit_writes_the_rows_status_and_line(store: Store) -> None:
    now = utcnow()
    task = Task(
        task_id=uuid.uuid4().hex,
        owner="alice",
        task_type="EMAIL",
        params={},
        status=TaskStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    store.tasks.create(task)
    stored, events = store.tasks.get_with_events(task.task_id, "alice")
    submit = lifecycle.row(Action.SUBMIT, None)
    assert stored.status == submit.target
    assert [e.message for e in events] == [submit.event]


# ------------------------------------------------------------------ who writes status, at run time


@pytest.fixture
def world(aws: Any, function_env: Callable[[str], dict[str, str]]) -> Iterator[World]:
    yield from make_world(aws, function_env)


def sets_status(params: dict[str, Any]) -> bool:
    """Whether a write request (or one of a transaction's) writes the status attribute."""
    requests = [params, *(next(iter(i.values())) for i in params.get("TransactItems", []))]
    for request in requests:
        names = request.get("ExpressionAttributeNames", {})
        expression = request.get("UpdateExpression", "")
        written = [n for p, n in names.items() if f"{p} = " in expression]
        if "status" in written or "status" in request.get("Item", {}):
            return True
    return False


def test_every_status_write_of_a_pipeline_run_is_made_by_the_executor(world: World) -> None:
    # Given a hook that notes, for every write that sets a status, the module that made it
    writers: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        if sets_status(params):
            frames = [f.filename for f in inspect.stack()]
            made_by = [f for f in frames if "/taskqueue/" in f]
            writers.append(made_by[0].rsplit("/taskqueue/", 1)[1] if made_by else frames[-1])

    client = wiring.engine().store.table.client
    for operation in ("PutItem", "UpdateItem", "TransactWriteItems"):
        client.meta.events.register(f"before-parameter-build.dynamodb.{operation}", note)
    service = wiring.service()
    service.store.table.client = client
    service.registry = wiring.engine().registry
    # When tasks are submitted, run, fail and are retried, cancelled, and dead-lettered
    ok = world.submit({"chunks": 3})
    failing = world.submit({"chunks": 2, "fail_on_chunk": 1, "fail_times": 1}, max_attempts=1)
    world.store.table.client = client
    world.pipeline().run()
    world.retry(failing, restart=False)
    cancelled = world.submit({"chunks": 2})
    world.cancel(cancelled)
    dead = world.submit({"chunks": 2})
    service.dead_letter(dead, message_id="m", queue="q", receive_count=5)
    world.pipeline().run()
    # Then the statuses moved as asked
    assert world.task(ok).status == TaskStatus.SUCCESS
    assert world.task(failing).status == TaskStatus.SUCCESS
    assert world.task(cancelled).status == TaskStatus.CANCELLED
    assert world.task(dead).status == TaskStatus.FAILED
    # and every write of a status came from the transition executor
    assert len(writers) >= 12
    assert set(writers) == {"store/transitions.py"}
