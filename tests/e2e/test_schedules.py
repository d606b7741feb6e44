"""The template's schedules on the local stack: the sweeper, invoked every second here instead
of every minute, sends the message of a task whose API call died between its write and its
send (issue 13 item 6, the durable hand-off), and the task runs to SUCCESS."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from devstack.resources import load_template
from taskqueue.models import Task, TaskStatus, new_generation, utcnow
from taskqueue.store import Store
from tests.e2e.devstack_process import (
    Stack,
    get_task,
    moto_client,
    own_stack,
    wait_for,
)

pytestmark = pytest.mark.e2e

# The sweeper leaves alone a task written less than SWEEP_GRACE_SECONDS (60 in the template)
# ago: the dead call's write is dated this much earlier, as if it died that long ago.
DIED_AGO = timedelta(seconds=90)


@pytest.fixture(scope="module")
def swept_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("schedules") / "devstack.log"
    yield from own_stack(log, "--schedule-every", "1")


def tasks_store(stack: Stack) -> Store:
    """The tasks table of the stack's moto, through the store the API writes with."""
    dynamodb = moto_client(stack, "dynamodb")
    [table] = [name for name in dynamodb.list_tables()["TableNames"] if "tasks" in name.lower()]
    shards = int(load_template()["Parameters"]["ShardCount"]["Default"])
    return Store.of(table, shards, client=dynamodb)


def written_but_never_sent(store: Store, ago: timedelta, rows: int) -> Task:
    """What a submit writes before it sends the message, `ago`; then the API died."""
    created = utcnow() - ago
    task = Task(
        task_id=uuid.uuid4().hex,
        owner="dev-user",
        task_type="DATA_PROCESSING",
        params={"rows": rows},
        status=TaskStatus.PENDING,
        created_at=created,
        updated_at=created,
        generation=new_generation(),
    )
    stored, created_now = store.tasks.create(task, None, hashlib.sha256(b"dead call").hexdigest())
    assert created_now
    return stored


def test_the_sweeper_schedule_sends_a_task_whose_api_call_died_and_it_succeeds(
    swept_stack: Stack,
) -> None:
    # Given a task written as a submit writes it, whose message was never sent
    store = tasks_store(swept_stack)
    task = written_but_never_sent(store, DIED_AGO, rows=1000)
    assert get_task(swept_stack, task.task_id)["status"] == "PENDING"
    # When the stack runs for a few of its (one second) schedule periods
    done = wait_for(swept_stack, task.task_id, "SUCCESS", "FAILED", timeout=30)
    # Then the sweeper sent it, once, and a worker ran it to the end
    assert done["status"] == "SUCCESS", done["error"]
    assert done["result"]["rows"] == 1000
    deadline = time.monotonic() + 5
    while f"task {task.task_id} DATA_PROCESSING  SUCCESS" not in swept_stack.output():
        assert time.monotonic() < deadline, swept_stack.output()
        time.sleep(0.1)
    output = swept_stack.output()
    assert "SweeperFunction: invoked every 1 s (SweeperFunctionEveryMinute)" in output
    assert "SweeperFunction answered {'sent': 1}" in output
    # And later sweeps find nothing more to send
    time.sleep(2)
    assert swept_stack.output().count("answered {'sent': 1}") == 1


def test_a_fresh_write_is_left_to_its_own_call(swept_stack: Stack) -> None:
    # Given a task written just now whose call is (as far as anyone knows) still running
    task = written_but_never_sent(tasks_store(swept_stack), timedelta(0), rows=10)
    # When several sweeps run
    time.sleep(3)
    # Then none sent it: the grace period protects a live call from a duplicate send
    assert get_task(swept_stack, task.task_id)["status"] == "PENDING"
