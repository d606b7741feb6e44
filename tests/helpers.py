"""Test support over the shared harness (devstack.harness), under the names the tests use,
and the worker's claim and finish for tests that drive the store directly."""

from __future__ import annotations

from typing import Any

from devstack.harness import (
    ApiResponse,
    Pipeline,
    call_api,
    http_event,
    lambda_context,
    load_function,
    reset_caches,
    sqs_event,
    sqs_record,
    stream_source,
)
from devstack.harness import StreamDrain as CounterStream
from devstack.resources import REPO_ROOT as ROOT
from devstack.resources import StreamEventSource

__all__ = [
    "ROOT",
    "ApiResponse",
    "CounterStream",
    "FakeLambdaContext",
    "Pipeline",
    "call_api",
    "claim_as_worker",
    "counters_stream_source",
    "finish_as_worker",
    "http_event",
    "load_function",
    "reset_function_caches",
    "sqs_event",
    "sqs_record",
]

FakeLambdaContext = lambda_context
reset_function_caches = reset_caches


def counters_stream_source() -> StreamEventSource:
    """The template's stream event source of CountersFunction (batch size, window, filters)."""
    return stream_source("CountersFunction")


def claim_as_worker(store: Any, task_id: str, lease: str = "lease-1", seconds: int = 300) -> Any:
    """Claim a task the way the worker does (the lifecycle's row for its status), so that a
    test can then checkpoint and finish it under `lease`; returns the claimed task."""
    from taskqueue.lifecycle import Action, decide
    from taskqueue.models import utcnow

    task = store.tasks.get(task_id)
    transition = decide(task, Action.CLAIM, utcnow())
    return store.tasks.claim(transition, task_id, task.owner, task.task_type, lease, seconds)


def finish_as_worker(
    store: Any, task: Any, status: Any, lease: str = "lease-1", **done: Any
) -> None:
    """Finish a claimed task as the worker does: SUCCESS, FAILED or CANCELLED under `lease`."""
    from taskqueue.lifecycle import Action
    from taskqueue.models import TaskStatus

    action = {
        TaskStatus.SUCCESS: Action.SUCCEED,
        TaskStatus.FAILED: Action.FAIL,
        TaskStatus.CANCELLED: Action.STOP,
    }[status]
    fields = {"attempts": task.attempts, "error": "TestFailure: failed"}
    store.tasks.finish(action, task, lease, fields=fields, **done)
