"""Minimal reproductions of the invariant violations the fault suite found.

Each failed before the fix it names (see docs/reliability.md) and guards it now.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskqueue import wiring
from taskqueue.dispatch import parse_message
from taskqueue.models import TaskMessage, TaskStatus
from tests.helpers import ApiResponse, Pipeline, call_api, http_event
from tests.reliability.chaos import OWNER, Harness, WorkerKilled, countdown, expected_sum


def pipeline(harness: Harness) -> Pipeline:
    return Pipeline(harness.sqs, [q.url for q in harness.queues("HighPriorityQueue", "TaskQueue")])


def api(method: str, path: str, **kwargs: Any) -> ApiResponse:
    try:
        return call_api(http_event(method, path, sub=OWNER, **kwargs))
    except ClientError as exc:  # unhandled in the API: API Gateway answers 500
        return ApiResponse(500, {"exception": repr(exc)}, {})


def fail_once(
    client: Any, event: str, operation: str, armed: Callable[[], bool] = lambda: True
) -> Callable[[], None]:
    """Raise InternalServerError once from `event` (before-call or after-call) of `operation`."""
    fired: list[bool] = []

    def hook(**_: Any) -> None:
        if not fired and armed():
            fired.append(True)
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}}, operation
            )

    name = f"{event}.dynamodb.{operation}"
    client.meta.events.register(name, hook)
    return lambda: client.meta.events.unregister(name, hook)


def test_retry_whose_answer_was_lost_still_runs_the_task(harness: Harness) -> None:
    from taskqueue.aws import client

    # Given a task its owner cancelled before it started
    task_id = api("POST", "/tasks", body={"type": "CHUNKSUM", "params": {"chunks": 3, "salt": 5}})
    task_id = task_id.body["id"]
    assert api("DELETE", f"/tasks/{task_id}").status == 200
    pipeline(harness).run()  # its first message is dropped
    # When the owner retries, and the retry's write commits but its answer is lost (the
    # call fails after the write, before any message is sent)
    undo = fail_once(client("dynamodb"), "after-call", "UpdateItem")
    first = api("POST", f"/tasks/{task_id}/retry", body={"restart": False})
    undo()
    # and the client, seeing a 5xx, repeats the request
    second = api("POST", f"/tasks/{task_id}/retry", body={"restart": False})
    pipeline(harness).run()
    # Then the task ran to the end (before the fix: second=409, task PENDING, no message)
    assert first.status == 500
    task = harness.store.tasks.get(task_id)
    assert task.status == TaskStatus.SUCCESS, (second.status, second.body, task.status)


def test_submit_replayed_after_a_lost_answer_still_runs_the_task(harness: Harness) -> None:
    from taskqueue.aws import client

    body = {"type": "CHUNKSUM", "params": {"chunks": 3, "salt": 6}}
    headers = {"Idempotency-Key": "lost-answer"}
    # Given a submit whose write commits but whose answer is lost (a timeout, a 500)
    undo = fail_once(client("dynamodb"), "after-call", "TransactWriteItems")
    first = api("POST", "/tasks", body=body, headers=headers)
    undo()
    # When the client repeats it with the same Idempotency-Key, as it should
    second = api("POST", "/tasks", body=body, headers=headers)
    pipeline(harness).run()
    # Then the one task runs (before the fix: 200 with a PENDING task that never got a message)
    assert (first.status, second.status) == (500, 200)
    task = harness.store.tasks.get(second.body["id"])
    assert task.status == TaskStatus.SUCCESS, task.status


@pytest.mark.parametrize("hinted", [True, False], ids=["message-with-owner", "bare-message"])
def test_stale_worker_does_not_claim_a_task_that_changed_since_its_message_was_read(
    harness: Harness, hinted: bool
) -> None:
    from taskqueue.aws import client

    # Given a 6-chunk task, and worker A that has its message (and, for a bare message, has
    # read the task: PENDING, never run) and stalls just before its claim
    submitted = api("POST", "/tasks", body={"type": "CHUNKSUM", "params": {"chunks": 6, "salt": 9}})
    task_id = submitted.body["id"]
    engine, service = harness.engine, wiring.service()
    task = harness.store.tasks.get(task_id)
    message = TaskMessage.of(task) if hinted else TaskMessage(task_id=task_id)

    def cancel_during_third_chunk(task: str, index: int) -> None:
        if index == 2:
            service.cancel(OWNER, task)

    stalled: list[bool] = []

    def meanwhile(**_: Any) -> None:
        if stalled or threading.current_thread() is not threading.main_thread():
            return
        stalled.append(True)
        # While A stalls, worker B runs three chunks, the owner cancels (B stops at its
        # checkpoint with chunks 0-2 saved) and retries with resume: PENDING, attempts 0
        harness.chunksum.during_chunk = cancel_during_third_chunk
        thread = threading.Thread(target=lambda: engine.process(message, countdown(10)))
        thread.start()
        thread.join(timeout=60)
        harness.chunksum.during_chunk = None
        assert harness.store.tasks.get(task_id).status == TaskStatus.CANCELLED
        service.retry(OWNER, task_id, restart=False)

    dynamodb = client("dynamodb")
    dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", meanwhile)  # the claim
    try:
        # When A goes on with its claim
        outcome = engine.process(message, countdown(10))
    finally:
        dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", meanwhile)
    pipeline(harness).run()  # the retry's message
    # Then no chunk ran twice: A's claim took the task as it is now (resuming at chunk 3:
    # the claim returns the item it wrote, nothing from A's earlier view), and the sum is exact
    assert stalled
    task = harness.store.tasks.get(task_id)
    runs = Counter(index for _, index, _ in harness.ledger.executions[task_id])
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": expected_sum(9, 6), "chunks": 6}
    assert runs == dict.fromkeys(range(6), 1), (outcome, dict(runs))


@pytest.mark.parametrize("release", ["hand-over", "retry-wait"])
def test_a_release_whose_send_failed_runs_on_after_the_earlier_message_dies(
    harness: Harness, release: str
) -> None:
    from taskqueue.aws import client

    # Given a 4-chunk task whose worker has its first message, and time for 2 chunks
    # (hand-over), or whose second chunk fails once (retry wait)
    submitted = api("POST", "/tasks", body={"type": "CHUNKSUM", "params": {"chunks": 4, "salt": 3}})
    task_id = submitted.body["id"]
    queue = pipeline(harness)
    [(url, received)] = queue.receive(1)
    harness.sqs.delete_message(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"])
    first = parse_message(received["Body"])
    failed: list[int] = []

    def fail_second_chunk(task: str, index: int) -> None:
        if release == "retry-wait" and index == 1 and not failed:
            failed.append(index)
            raise RuntimeError("the chunk's own error")

    harness.chunksum.during_chunk = fail_second_chunk
    # When the write releasing the task for its next message commits but that send fails
    sqs = client("sqs")
    sends: list[bool] = []

    def send_fails(**_: Any) -> None:
        if not sends:
            sends.append(True)
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "send")

    sqs.meta.events.register("before-call.sqs.SendMessage", send_fails)
    try:
        with pytest.raises(ClientError):
            harness.engine.process(first, countdown(2 if release == "hand-over" else 10))
    finally:
        sqs.meta.events.unregister("before-call.sqs.SendMessage", send_fails)
    # and the earlier message dies without claiming the task again (6 failed deliveries)
    service = wiring.service()
    assert not service.dead_letter(
        task_id,
        message_id=received["MessageId"],
        queue="tasks",
        receive_count=6,
        generation=first.generation,
    )
    # Then the sweeper's next run, past the grace period, sends the message that failed
    grace = wiring.settings().sweep_grace_seconds
    harness.clock.advance(grace + 1)
    assert service.send_unsent(grace) == 1
    assert service.send_unsent(grace) == 0  # once
    queue.run()
    # and the task ends exactly (before the fix: RUNNING or PENDING with no message, forever)
    task = harness.store.tasks.get(task_id)
    runs = Counter(index for _, index, _ in harness.ledger.executions[task_id])
    assert task.status == TaskStatus.SUCCESS, task.status
    assert task.result == {"sum": expected_sum(3, 4), "chunks": 4}
    repeated = {1: 2} if release == "retry-wait" else {}
    assert runs == {**dict.fromkeys(range(4), 1), **repeated}


def test_a_dead_letter_judges_the_workers_lease_on_the_clock_that_wrote_it(
    harness: Harness,
) -> None:
    # Given a task whose worker died in its first chunk, holding a lease written on the
    # store's clock (simulated here, hours ahead of the wall clock, as in the 1,000-task run)
    harness.clock.advance(12 * 3600)
    submitted = api("POST", "/tasks", body={"type": "CHUNKSUM", "params": {"chunks": 2, "salt": 4}})
    task_id = submitted.body["id"]
    [(_, received)] = pipeline(harness).receive(1)
    message = parse_message(received["Body"])

    def die(task: str, index: int) -> None:
        raise WorkerKilled("out of memory in the first chunk")

    harness.chunksum.during_chunk = die
    with pytest.raises(WorkerKilled):
        harness.engine.process(message, countdown(10))
    harness.chunksum.during_chunk = None
    assert harness.store.tasks.get(task_id).status == TaskStatus.RUNNING
    # When its message dies after 6 deliveries, each after the visibility timeout
    harness.clock.advance(6 * harness.visibility_timeout)
    failed = wiring.service().dead_letter(
        task_id,
        message_id=received["MessageId"],
        queue="tasks",
        receive_count=6,
        generation=message.generation,
    )
    # Then the task is FAILED: its lease expired long ago on that clock (before the fix the
    # handler read the wall clock, found the lease live and the task stayed RUNNING forever)
    assert failed
    assert harness.store.tasks.get(task_id).status == TaskStatus.FAILED
