"""Many users at once on the local stack: fair queues across owners, and time slices in a
worker batch (issue 14 items 1-2). The figures are printed; docs/operations.md quotes them."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from tests.e2e.devstack_process import (
    Stack,
    bearer_for,
    get_task,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

WORK = {"rows": 20_000, "columns": 4}  # a DATA_PROCESSING task of a few tenths of a second
BATCH = 10  # the worker mapping's BatchSize


def started(task: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(task["started_at"]))


def cancel_all(stack: Stack, task_ids: list[str], headers: dict[str, str]) -> None:
    for task_id in task_ids:
        requests.delete(f"{stack.url}/tasks/{task_id}", headers=headers, timeout=10)


@pytest.mark.parametrize("backlog", [30, 120])
def test_a_quiet_owners_task_starts_within_two_batches_whatever_the_backlog(
    single_worker_stack: Stack, backlog: int
) -> None:
    # Given one owner's backlog of N tasks, then another owner's single task
    noisy, quiet = bearer_for(f"noisy-{backlog}"), bearer_for(f"quiet-{backlog}")
    flood = [
        submit(single_worker_stack, "DATA_PROCESSING", WORK, noisy)["id"] for _ in range(backlog)
    ]
    mine = submit(single_worker_stack, "DATA_PROCESSING", WORK, quiet)
    # When it has run
    done = wait_for(single_worker_stack, mine["id"], "SUCCESS", headers=quiet)
    dwell = (started(done) - datetime.fromisoformat(mine["created_at"])).total_seconds()
    submitted = datetime.fromisoformat(mine["created_at"])
    tasks = [get_task(single_worker_stack, task_id, noisy) for task_id in flood]
    starts = [started(t) for t in tasks if t.get("started_at")]
    overtook = sum(1 for moment in starts if submitted < moment < started(done))
    left = backlog - len(starts)
    print(
        f"backlog {backlog}: the quiet task waited {dwell:.2f} s; {overtook} of the backlog "
        f"started meanwhile; {left} had not started yet"
    )
    cancel_all(single_worker_stack, flood, noisy)
    # Then, whatever N is, at most one batch of the noisy owner's tasks (the one already
    # chosen when the quiet task arrived) started between its submit and its start, while
    # the backlog was far from drained
    assert overtook <= BATCH, overtook
    assert left > BATCH


def test_a_small_task_behind_a_long_one_in_a_batch_starts_within_one_quantum(
    single_worker_stack: Stack,
) -> None:
    # Given a long task and a small one submitted together (one batch: the window is 1 s)
    owner = bearer_for("slicer")
    long = submit(single_worker_stack, "DATA_PROCESSING", {"rows": 3_000_000, "columns": 8}, owner)
    small = submit(single_worker_stack, "DATA_PROCESSING", {"rows": 100, "columns": 2}, owner)
    # When both have run
    small_done = wait_for(single_worker_stack, small["id"], "SUCCESS", headers=owner)
    long_now = get_task(single_worker_stack, long["id"], owner)
    waited = (started(small_done) - started(long_now)).total_seconds()
    print(f"small task started {waited:.2f} s after the long one (quantum 10 s)")
    cancel_all(single_worker_stack, [long["id"]], owner)
    # Then the long one ran first and was still running when the small one started, which
    # started within a quantum (10 s) and a chunk of the long one's start
    assert 0 <= waited < 10 + 5, waited
    finished = long_now.get("finished_at")
    assert finished is None or datetime.fromisoformat(finished) > started(small_done)
