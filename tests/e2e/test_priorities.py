"""Priorities in the local stack: with a backlog on the normal queue, high-priority tasks
start first, because each queue has its own event source mapping and concurrency."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.e2e.devstack_process import Stack, submit, wait_for

pytestmark = pytest.mark.e2e

BACKLOG = 10  # one batch on the normal queue


def started(stack: Stack, task_id: str) -> datetime:
    task = wait_for(stack, task_id, "SUCCESS")
    return datetime.fromisoformat(task["started_at"])


def test_high_priority_tasks_start_before_a_normal_backlog(single_worker_stack: Stack) -> None:
    # Given a backlog of normal tasks (~0.3 s each), then a few quick high-priority ones
    # submitted after it (their queue waits up to its 1 s batching window before it is read;
    # with tasks as short as the normal ones, three of them in a row would need all of the
    # batch's time, and a faster engine shrinks that)
    work = {"rows": 100_000, "columns": 4}
    quick = {"rows": 1_000, "columns": 4}
    normal = [submit(single_worker_stack, "DATA_PROCESSING", work)["id"] for _ in range(BACKLOG)]
    high = [
        submit(single_worker_stack, "DATA_PROCESSING", quick, priority="high")["id"]
        for _ in range(3)
    ]
    # When everything has run
    normal_starts = sorted(started(single_worker_stack, task_id) for task_id in normal)
    high_starts = [started(single_worker_stack, task_id) for task_id in high]
    # Then every high-priority task started while the normal queue's batch was still running
    # (a worker pool shared by both queues would have made them wait for it to finish)
    first = normal_starts[0]
    print("high:", [round((t - first).total_seconds(), 2) for t in high_starts])
    print("normal:", [round((t - first).total_seconds(), 2) for t in normal_starts])
    assert max(high_starts) < normal_starts[9], (high_starts, normal_starts)
