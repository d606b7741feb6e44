"""The chunk engine through the worker handler: continuation, cancel, duplicates, crashes,
retries, malformed messages, the DLQ handler, and the AWS request budget per task."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest

from taskqueue import lifecycle, wiring
from taskqueue.engine import Outcome, backoff_seconds
from taskqueue.lifecycle import Action
from taskqueue.models import TaskMessage, TaskStatus, utcnow
from taskqueue.task_types import REGISTRY
from tests.helpers import (
    FakeLambdaContext,
    call_api,
    http_event,
    load_function,
    reset_function_caches,
    sqs_event,
    sqs_record,
)
from tests.pipeline_world import (
    OWNER,
    World,
    countdown,
    crash_on_checkpoint,
    in_other_worker,
)

# ------------------------------------------------------------------ continuation


def test_task_needing_several_invocations_continues_and_finishes_exactly(world: World) -> None:
    # Given a 12-chunk task and invocations with time for only a few chunks each
    task_id = world.submit({"chunks": 12})
    pipeline = world.pipeline(countdown(3))
    # When the queue is drained
    invocations = pipeline.run()
    # Then it took several invocations, each chunk ran once, and the result is exact
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert invocations >= 4
    assert task.result == {"sum": sum(range(12)), "seen": list(range(12))}
    assert [i for t, i in world.counting.executions if t == task_id] == list(range(12))
    assert task.progress == 100 and task.units_done == 12


def test_csv_statistics_across_invocations_equal_an_independent_reference(world: World) -> None:
    # Given a generated CSV task small enough to check, large enough for many chunks
    task_id = world.submit(
        {"rows": 12000, "columns": 3, "seed": 7, "chunk_bytes": 65536}, task_type="DATA_PROCESSING"
    )
    # When the worker gets time for about two chunks per invocation
    invocations = world.pipeline(countdown(2)).run()
    task = world.task(task_id)
    # Then it finished over several invocations
    assert task.status == TaskStatus.SUCCESS, task.error
    assert invocations >= 3
    # And its statistics equal a reference computed here from the very same input file
    s3 = boto3.client("s3")
    bucket = world.resources.buckets["DataBucket"]
    text = s3.get_object(Bucket=bucket, Key=f"results/{OWNER}/{task_id}/input.csv")["Body"].read()
    rows = list(csv.reader(io.StringIO(text.decode())))
    header, body = rows[0], rows[1:]
    assert len(body) == 12000
    full = json.loads(
        s3.get_object(Bucket=bucket, Key=f"results/{OWNER}/{task_id}/result.json")["Body"].read()
    )
    by_name = {c["name"]: c for c in full["column_stats"]}
    for position, name in enumerate(header):
        values = []
        for row in body:
            cell = row[position].strip() if position < len(row) else ""
            try:
                value = float(cell)
            except ValueError:
                continue
            # the documented rule: finite numbers written without digit separators
            if math.isfinite(value) and "_" not in cell:
                values.append(value)
        if not values:
            continue
        stats = by_name[name]
        assert stats["count"] == len(values)
        assert stats["min"] == min(values) and stats["max"] == max(values)
        assert stats["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9)
        assert stats["std_population"] == pytest.approx(statistics.pstdev(values), rel=1e-9)


# ------------------------------------------------------------------ cancel


def test_cancel_requested_mid_run_stops_at_the_next_checkpoint(world: World) -> None:
    # Given a long task, cancelled by its owner while chunk 3 runs
    task_id = world.submit({"chunks": 50})

    def cancel_during(task: str, index: int) -> None:
        if index == 3:
            world.cancel(task)

    world.counting.after_chunk = cancel_during
    # When the worker runs it
    world.pipeline().run()
    # Then it stopped at the checkpoint after chunk 3: CANCELLED, no further chunk ran
    task = world.task(task_id)
    assert task.status == TaskStatus.CANCELLED
    assert [i for _, i in world.counting.executions] == [0, 1, 2, 3]
    assert task.state is not None and task.state.units_done == 4


# ------------------------------------------------------------------ duplicates and races


@pytest.mark.parametrize("hinted", [True, False], ids=["message-with-owner", "bare-message"])
def test_same_message_delivered_twice_counts_every_chunk_once(world: World, hinted: bool) -> None:
    # Given one task whose message SQS delivers twice in one batch
    task_id = world.submit({"chunks": 5})
    body = world.message(task_id, hinted=hinted).model_dump_json()
    event = sqs_event([sqs_record(body), sqs_record(body)])
    # When the worker handles the batch, then drains whatever follows
    response = world.worker.lambda_handler(event, FakeLambdaContext())
    world.pipeline().run()
    # Then nothing failed, each chunk ran once, and the result equals a clean run
    assert response == {"batchItemFailures": []}
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": 10, "seen": [0, 1, 2, 3, 4]}
    assert [i for _, i in world.counting.executions] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("hinted", [True, False], ids=["message-with-owner", "bare-message"])
def test_two_workers_racing_fence_the_slower_one_out(world: World, hinted: bool) -> None:
    # Given worker A that stalls after chunk 1 until its lease has expired
    task_id = world.submit({"chunks": 6})
    engine = wiring.engine()
    takeover: dict[str, Outcome] = {}
    stalled: list[bool] = []

    def stall_then_lose(task: str, index: int) -> None:
        if index == 1 and not stalled:
            stalled.append(True)
            # While A is stuck, time passes beyond its lease and worker B redelivers.
            world.advance_clock(1000)
            message = world.message(task, hinted=hinted)
            takeover["b"] = in_other_worker(lambda: engine.process(message, lambda: 300_000))

    world.counting.after_chunk = stall_then_lose
    message = world.message(task_id, hinted=hinted)
    # When A goes on after B took over and finished
    outcome_a = engine.process(message, lambda: 300_000)
    # Then A lost its lease at its next write, B finished, and the result is exact
    assert takeover["b"] == Outcome.SUCCEEDED
    assert outcome_a == Outcome.LEASE_LOST
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": 15, "seen": [0, 1, 2, 3, 4, 5]}
    # chunk 0 was checkpointed by A; chunk 1 ran in A (never saved) and again in B
    assert [i for _, i in world.counting.executions] == [0, 1, 1, 2, 3, 4, 5]
    # and B's take-over is in the log, without starting an attempt
    events = [e.message for e in world.store.tasks.get_with_events(task_id, OWNER)[1]]
    assert "took over from a worker that stopped heart-beating" in events
    assert task.attempts == 1


# ------------------------------------------------------------------ crashes


@pytest.mark.parametrize("after", [False, True], ids=["before-checkpoint", "after-checkpoint"])
def test_crash_around_checkpoint_resumes_with_at_most_one_chunk_repeated(
    world: World, after: bool
) -> None:
    # Given a 6-chunk task whose worker dies at the 3rd checkpoint (chunk 2)
    task_id = world.submit({"chunks": 6})
    engine = wiring.engine()
    undo = crash_on_checkpoint(engine.store.table.client, 3, after=after)
    batch = world.pipeline().receive()
    # When the invocation crashes, the record is reported failed and stays on the queue
    response = world.pipeline().invoke(batch)
    undo()
    assert len(response["batchItemFailures"]) == 1
    assert world.task(task_id).status == TaskStatus.RUNNING
    # And SQS redelivers after the visibility timeout, by which time the lease has expired
    world.redeliver_after_crash()
    world.pipeline().run()
    # Then the task resumed from its last checkpoint with an exact result
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": 15, "seen": [0, 1, 2, 3, 4, 5]}
    runs = [i for _, i in world.counting.executions]
    repeated = [i for i, n in Counter(runs).items() if n > 1]
    if after:
        assert repeated == []  # chunk 2's checkpoint landed: nothing runs twice
    else:
        assert repeated == [2]  # chunk 2's checkpoint was lost: it alone runs again


# ------------------------------------------------------------------ errors and retries


def test_failing_chunk_is_retried_with_growing_backoff_then_fails(world: World) -> None:
    # Given a task whose chunk 2 always fails, with 3 attempts
    task_id = world.submit({"chunks": 4, "fail_on_chunk": 2, "fail_times": 99}, max_attempts=3)
    sent_delays: list[int] = []
    client = wiring.engine().dispatcher.client

    def record_delay(params: dict[str, Any], **_: Any) -> None:
        sent_delays.append(params.get("DelaySeconds", 0))

    client.meta.events.register("provide-client-params.sqs.SendMessage", record_delay)
    # When the worker drains the queue
    world.pipeline().run()
    # Then it ran 3 attempts, resuming at chunk 2 each time, and ended FAILED with the error
    task = world.task(task_id)
    assert task.status == TaskStatus.FAILED
    assert task.attempts == 3
    assert task.error is not None and task.error.type == "RuntimeError"
    assert task.error.message == "chunk 2 broke"
    assert [i for _, i in world.counting.executions] == [0, 1, 2, 2, 2]
    assert len(sent_delays) == 2  # two retries were scheduled, none after the last attempt
    events = [e.message for e in world.store.tasks.get_with_events(task_id, OWNER)[1]]
    assert sum("retry in" in e for e in events) == 2
    assert any(e.startswith("failed after 3 attempt(s): RuntimeError") for e in events)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(900, 5 * 2 ** (attempt - 1))
        delays = [backoff_seconds(attempt, rng) for _ in range(50)]
        assert all(ceiling // 2 <= d <= ceiling for d in delays)
    assert backoff_seconds(30, rng) <= 900


def test_transient_failure_recovers_on_the_next_attempt(world: World) -> None:
    task_id = world.submit({"chunks": 4, "fail_on_chunk": 1, "fail_times": 1})
    world.pipeline().run()
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.attempts == 2
    assert task.result == {"sum": 6, "seen": [0, 1, 2, 3]}


def test_permanent_error_fails_the_task_at_once_without_retries(world: World) -> None:
    # Given a task whose chunk 1 raises a PermanentError, with 3 attempts allowed
    task_id = world.submit(
        {"chunks": 3, "fail_on_chunk": 1, "fail_times": 99, "permanent": True}, max_attempts=3
    )
    # When the worker drains the queue
    world.pipeline().run()
    # Then the task is FAILED after one attempt, with the error's code for users to act on
    task = world.task(task_id)
    assert task.status == TaskStatus.FAILED
    assert task.attempts == 1
    assert task.error is not None and task.error.type == "invalid_input"
    assert [i for _, i in world.counting.executions] == [0, 1]


def test_aws_error_with_a_permanent_code_fails_at_once_and_a_throttle_is_retried(
    world: World,
) -> None:
    from botocore.exceptions import ClientError

    def raising(code: str) -> Callable[[str, int], None]:
        def after(task: str, index: int) -> None:
            if index == 0 and world.counting.failures[task] < 1:
                world.counting.failures[task] += 1
                raise ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")

        return after

    # Given a task whose first chunk meets S3's NoSuchKey
    world.counting.after_chunk = raising("NoSuchKey")
    missing = world.submit({"chunks": 2}, max_attempts=3)
    world.pipeline().run()
    # Then it failed at once with the AWS code
    task = world.task(missing)
    assert (task.status, task.attempts) == (TaskStatus.FAILED, 1)
    assert task.error is not None and task.error.type == "NoSuchKey"
    # Given another whose first chunk is throttled once
    world.counting.after_chunk = raising("SlowDown")
    throttled = world.submit({"chunks": 2}, max_attempts=3)
    world.pipeline().run()
    # Then it was retried and succeeded
    task = world.task(throttled)
    assert (task.status, task.attempts) == (TaskStatus.SUCCESS, 2)


def test_paced_task_waits_in_the_queue_not_in_the_invocation(world: World) -> None:
    # Given a task whose chunks ask for 30 s between them
    task_id = world.submit({"chunks": 3, "pace_seconds": 30})
    slept: list[float] = []
    wiring.engine().sleep = slept.append
    delays: list[int] = []
    client = wiring.engine().dispatcher.client

    def record_delay(params: dict[str, Any], **_: Any) -> None:
        delays.append(params.get("DelaySeconds", 0))

    client.meta.events.register("provide-client-params.sqs.SendMessage", record_delay)
    # When one invocation runs it
    world.pipeline().invoke(world.pipeline().receive())
    # Then it ran one chunk, checkpointed, released the lease and sent a continuation due in 30 s
    assert [i for _, i in world.counting.executions] == [0]
    assert delays == [30]
    assert slept == []
    task = world.task(task_id)
    assert task.status == TaskStatus.RUNNING and task.lease_expires_at == 0
    assert task.units_done == 1


def test_partial_item_failures_are_a_success_with_warnings_and_all_failed_is_failed(
    world: World,
) -> None:
    # Given a task where 2 of 4 items failed, and one where all 4 failed
    partial = world.submit({"chunks": 4, "failed_items": 2})
    total = world.submit({"chunks": 4, "failed_items": 4})
    world.pipeline().run()
    # Then the first is SUCCESS with failed_items shown; the second FAILED, its result kept
    task = world.task(partial)
    assert (task.status, task.failed_items) == (TaskStatus.SUCCESS, 2)
    task = world.task(total)
    assert task.status == TaskStatus.FAILED
    assert task.error is not None and task.error.type == "all_items_failed"
    assert task.failed_items == 4 and task.result == {"sum": 6, "seen": [0, 1, 2, 3]}
    # And the API shows the count
    view = call_api(http_event("GET", f"/tasks/{partial}", sub=OWNER))
    assert view.status == 200 and view.body["failed_items"] == 2


def test_retry_of_failed_task_resumes_from_checkpoint_and_restart_starts_over(world: World) -> None:
    # Given a task that failed for good at chunk 3
    task_id = world.submit({"chunks": 5, "fail_on_chunk": 3, "fail_times": 1}, max_attempts=1)
    world.pipeline().run()
    assert world.task(task_id).status == TaskStatus.FAILED
    assert [i for _, i in world.counting.executions] == [0, 1, 2, 3]
    # When its owner retries it (resume)
    world.retry(task_id, restart=False)
    world.pipeline().run()
    # Then only the chunks after the checkpoint ran again
    assert world.task(task_id).status == TaskStatus.SUCCESS
    assert [i for _, i in world.counting.executions] == [0, 1, 2, 3, 3, 4]
    assert world.task(task_id).result == {"sum": 10, "seen": [0, 1, 2, 3, 4]}
    # And a restart after a cancel runs every chunk from the beginning
    world.counting.executions.clear()
    other = world.submit({"chunks": 3})
    world.cancel(other)
    world.retry(other, restart=True)
    world.pipeline().run()
    assert world.task(other).status == TaskStatus.SUCCESS
    assert [i for _, i in world.counting.executions] == [0, 1, 2]


def test_malformed_record_is_a_batch_item_failure_and_the_others_succeed(world: World) -> None:
    # Given a batch with a good record between two malformed ones
    task_id = world.submit({"chunks": 2})
    good = sqs_record(json.dumps({"task_id": task_id}), message_id="good")
    bad_json = sqs_record("{not json", message_id="bad-json")
    bad_id = sqs_record(json.dumps({"task_id": "../../etc"}), message_id="bad-id")
    # When the worker handles it
    response = world.worker.lambda_handler(sqs_event([bad_json, good, bad_id]), FakeLambdaContext())
    # Then only the malformed ones are reported, and the good task finished
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == [
        "bad-id",
        "bad-json",
    ]
    assert world.task(task_id).status == TaskStatus.SUCCESS


def test_dlq_handler_marks_dead_task_failed_and_records_a_dead_letter(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    # Given a task whose message died (it never ran)
    task_id = world.submit({"chunks": 2})
    function_env("DlqFunction")
    reset_function_caches()
    dlq = load_function("dlq")
    records = [
        sqs_record(json.dumps({"task_id": task_id}), receive_count=5, message_id="m1"),
        sqs_record("garbage", message_id="m2"),
    ]
    # When the DLQ handler consumes it (and a malformed one)
    response = dlq.lambda_handler(sqs_event(records), FakeLambdaContext())
    # Then the task is FAILED with the reason, and the malformed letter was drained too
    assert response == {"batchItemFailures": []}
    task = world.task(task_id)
    assert task.status == TaskStatus.FAILED
    assert task.error is not None and task.error.type == "DeadLetter"
    assert "5 deliveries" in task.error.message
    letters = world.store.dead_letters.list(OWNER)
    assert [(d.task_id, d.receive_count) for d in letters] == [(task_id, 5)]
    # And a second delivery of the same dead letter changes nothing
    dlq.lambda_handler(sqs_event(records[:1]), FakeLambdaContext())
    assert len(world.store.dead_letters.list(OWNER)) == 1


def test_a_dead_letter_fails_a_task_only_for_its_current_message_and_no_live_worker(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    # Given a task a live worker holds, claimed by its submit's message
    task_id = world.submit({"chunks": 2})
    message = world.message(task_id)
    start = lifecycle.row(Action.CLAIM, TaskStatus.PENDING)
    world.store.tasks.claim(start, task_id, OWNER, "COUNTING", "live", 300, message.generation)
    function_env("DlqFunction")
    reset_function_caches()
    dlq = load_function("dlq")

    def dead(body: TaskMessage, message_id: str) -> None:
        record = sqs_record(body.model_dump_json(), receive_count=5, message_id=message_id)
        assert dlq.lambda_handler(sqs_event([record]), FakeLambdaContext()) == {
            "batchItemFailures": []
        }

    # When a dead copy of that very message, and a stale message of another generation,
    # reach the DLQ
    dead(message, "copy")
    dead(message.model_copy(update={"generation": "00000000000000aa"}), "stale")
    # Then the task still runs, and no dead letter was recorded
    assert world.task(task_id).status == TaskStatus.RUNNING
    assert world.store.dead_letters.list(OWNER) == []
    # And once its worker died (the lease expired), its current message's death fails it
    world.store.table.client.update_item(
        TableName=world.store.table.name,
        Key={"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "META"}},
        UpdateExpression="SET lease_expires_at = :expired",
        ExpressionAttributeValues={":expired": {"N": str(int(utcnow().timestamp()) - 5)}},
    )
    dead(message.model_copy(update={"generation": "00000000000000aa"}), "stale-again")
    assert world.task(task_id).status == TaskStatus.RUNNING
    dead(message, "current")
    task = world.task(task_id)
    assert task.status == TaskStatus.FAILED
    assert [d.task_id for d in world.store.dead_letters.list(OWNER)] == [task_id]


def test_dead_letters_are_listed_and_redriven_by_their_owner_only(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    task_id = world.submit({"chunks": 2})
    function_env("DlqFunction")
    reset_function_caches()
    load_function("dlq").lambda_handler(
        sqs_event([sqs_record(json.dumps({"task_id": task_id}), receive_count=5)]),
        FakeLambdaContext(),
    )
    function_env("ApiFunction")
    reset_function_caches()
    other = call_api(http_event("GET", "/dead-letters", sub="someone-else"))
    assert other.status == 200 and other.body == {"items": []}
    mine = call_api(http_event("GET", "/dead-letters"))
    assert [d["task_id"] for d in mine.body["items"]] == [task_id]
    assert mine.body["items"][0]["task_status"] == "FAILED"
    assert call_api(http_event("POST", "/dead-letters/redrive", sub="someone-else")).body == {
        "redriven": 0,
        "skipped": 0,
    }
    redrive = call_api(http_event("POST", "/dead-letters/redrive"))
    assert redrive.body == {"redriven": 1, "skipped": 0}
    assert call_api(http_event("GET", "/dead-letters")).body == {"items": []}
    # the task went back to its queue and now runs to the end
    function_env("WorkerFunction")
    reset_function_caches()
    wiring.engine().registry = {**REGISTRY, "COUNTING": world.counting}
    world.pipeline().run()
    assert world.task(task_id).status == TaskStatus.SUCCESS


# ------------------------------------------------------------------ scheduling and timeouts


def due_in_forty_minutes(world: World, task_id: str) -> None:
    due = utcnow() + timedelta(minutes=40)
    world.store.table.client.update_item(
        TableName=world.store.table.name,
        Key={"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "META"}},
        UpdateExpression="SET run_at = :r",
        ExpressionAttributeValues={":r": {"S": due.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}},
    )


@pytest.mark.parametrize("hinted", [True, False], ids=["message-with-owner", "bare-message"])
def test_task_scheduled_beyond_fifteen_minutes_hops_until_due(world: World, hinted: bool) -> None:
    # Given a task due in 40 minutes
    task_id = world.submit({"chunks": 1})
    due_in_forty_minutes(world, task_id)
    engine = wiring.engine()
    message = world.message(task_id, hinted=hinted)
    delays: list[int] = []
    hops: list[dict[str, Any]] = []
    client = engine.dispatcher.client

    def sent(params: dict[str, Any], **_: Any) -> None:
        delays.append(params.get("DelaySeconds", 0))
        hops.append(json.loads(params["MessageBody"]))

    client.meta.events.register("provide-client-params.sqs.SendMessage", sent)
    # When its message arrives early, then each hop it sends, as time passes
    outcomes = []
    for hop in range(3):
        outcomes.append(engine.process(message, lambda: 300_000, f"message-{hop}"))
        world.advance_clock(delays[-1])
        message = TaskMessage.model_validate(hops[-1])
    outcomes.append(engine.process(message, lambda: 300_000, "message-3"))
    # Then it hopped in steps of at most 900 s, and ran once due
    assert outcomes == [Outcome.SCHEDULED] * 3 + [Outcome.SUCCEEDED]
    assert delays == [900, 900, 600]
    # each hop says whose task it is, so that it is claimed with one write when due, and
    # hands on a new generation (only the current message may hop)
    assert [{k: v for k, v in h.items() if k != "generation"} for h in hops] == [
        {"task_id": task_id, "owner": OWNER, "task_type": "COUNTING"}
    ] * 3
    assert len({h["generation"] for h in hops}) == 3
    assert world.task(task_id).status == TaskStatus.SUCCESS


def test_a_duplicated_hop_message_never_doubles_the_chain_of_hops(world: World) -> None:
    # Given a task due in 40 minutes whose message SQS delivers twice (two message ids)
    task_id = world.submit({"chunks": 1})
    due_in_forty_minutes(world, task_id)
    engine = wiring.engine()
    # (due on the engine's clock, order, message): SQS delivers each when its delay is over
    sent: list[tuple[datetime, int, TaskMessage]] = []
    order = itertools.count()
    engine.dispatcher.client.meta.events.register(
        "provide-client-params.sqs.SendMessage",
        lambda params, **_: sent.append(
            (
                engine.clock() + timedelta(seconds=params["DelaySeconds"]),
                next(order),
                TaskMessage.model_validate_json(params["MessageBody"]),
            )
        ),
    )
    message = world.message(task_id)
    # When both copies arrive early
    first = engine.process(message, lambda: 300_000, "copy-1")
    second = engine.process(message, lambda: 300_000, "copy-2")
    # Then only one hops; the other is dropped
    assert (first, second) == (Outcome.SCHEDULED, Outcome.DROPPED)
    assert len(sent) == 1
    # And a redelivery of the copy that hopped (its worker died after the hop's write)
    # sends that same hop again, not a new chain
    assert engine.process(message, lambda: 300_000, "copy-1") == Outcome.SCHEDULED
    assert [m for _, _, m in sent] == [sent[0][2]] * 2
    # When every message sent is delivered once its delay is over (each its own SQS message)
    outcomes: Counter[Outcome] = Counter()
    pending = list(sent)
    sent.clear()
    while pending:
        pending.sort(key=lambda entry: entry[:2])
        due, number, hop = pending.pop(0)
        world.advance_clock(max(0.0, (due - engine.clock()).total_seconds()))
        outcomes[engine.process(hop, lambda: 300_000, f"hop-{number}")] += 1
        pending += sent
        sent.clear()
    # Then the task ran exactly once: the second copy of the first hop was dropped at once,
    # and every later hop had one message
    assert outcomes == {Outcome.SCHEDULED: 2, Outcome.DROPPED: 1, Outcome.SUCCEEDED: 1}
    assert world.task(task_id).status == TaskStatus.SUCCESS
    assert world.counting.executions == [(task_id, 0)]


def test_task_running_past_its_timeout_fails_with_a_clear_error(world: World) -> None:
    task_id = world.submit({"chunks": 10})
    world.store.table.client.update_item(
        TableName=world.store.table.name,
        Key={"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": "META"}},
        UpdateExpression="SET timeout_seconds = :t",
        ExpressionAttributeValues={":t": {"N": "60"}},
    )

    def slow(task: str, index: int) -> None:
        if index == 2:
            world.advance_clock(120)

    world.counting.after_chunk = slow
    world.pipeline().run()
    task = world.task(task_id)
    assert task.status == TaskStatus.FAILED
    assert task.error is not None and task.error.type == "TaskTimeout"
    assert [i for _, i in world.counting.executions] == [0, 1, 2]


# ------------------------------------------------------------------ request budget


def test_ten_chunk_task_costs_at_most_chunks_plus_five_orchestration_requests(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    # Given a botocore hook counting every DynamoDB and SQS request of the pipeline
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".")[:3]
        calls[f"{service}.{operation}"] += 1

    function_env("ApiFunction")
    reset_function_caches()
    load_function("api")
    wiring.service().registry = {**REGISTRY, "COUNTING": world.counting}
    engine = wiring.engine()
    engine.registry = {**REGISTRY, "COUNTING": world.counting}
    clients = [
        wiring.service().store.table.client,
        wiring.service().dispatcher.client,
        engine.store.table.client,
        engine.dispatcher.client,
    ]
    for client in {id(c): c for c in clients}.values():
        client.meta.events.register("before-call.*.*", count)
    # When a 10-chunk task is submitted over the API and run in one invocation
    response = call_api(
        http_event("POST", "/tasks", body={"type": "COUNTING", "params": {"chunks": 10}})
    )
    assert response.status == 201
    batch = world.pipeline().receive()
    world.pipeline().invoke(batch)
    # Then it succeeded within the budget: chunks + 5 requests, submit included, and the
    # submit's quota take (quotas are on by default)
    seen = Counter(dict(calls))  # a snapshot: reading the task below is not part of it
    total = sum(seen.values())
    assert world.task(response.body["id"]).status == TaskStatus.SUCCESS
    assert wiring.service().settings.quotas_enabled
    print(f"AWS requests for a 10-chunk task: {total} {dict(seen)}")
    assert total <= 10 + 5 + 1, dict(seen)
    # the take, claim, one checkpoint per chunk but the last, finish, and the submit's
    # "message sent" mark; every status change is one write of the task item (the counters
    # follow from the stream), so no transaction at all; and the claim reads nothing first
    assert seen["dynamodb.UpdateItem"] == 1 + 1 + 9 + 1 + 1
    assert seen["dynamodb.PutItem"] == 1  # submit
    assert "dynamodb.TransactWriteItems" not in seen
    assert "dynamodb.GetItem" not in seen and seen["sqs.SendMessage"] == 1


@pytest.mark.parametrize("hinted", [True, False], ids=["message-with-owner", "bare-message"])
def test_handover_between_invocations_is_fenced_by_lease(world: World, hinted: bool) -> None:
    # A duplicate continuation arriving while a worker holds the lease is dropped.
    task_id = world.submit({"chunks": 3})
    engine = wiring.engine()
    message = world.message(task_id, hinted=hinted)
    outcomes: list[Outcome] = []

    def duplicate_arrives(task: str, index: int) -> None:
        if index == 0 and not outcomes:
            outcomes.append(in_other_worker(lambda: engine.process(message, lambda: 300_000)))

    world.counting.after_chunk = duplicate_arrives
    assert engine.process(message, lambda: 300_000) == Outcome.SUCCEEDED
    assert outcomes == [Outcome.DROPPED]
    assert [i for _, i in world.counting.executions] == [0, 1, 2]


def test_a_small_task_behind_a_long_one_in_its_batch_starts_within_one_quantum(
    world: World,
) -> None:
    # Given one batch with a long task first and a short task behind it, a quantum of 5 s,
    # and chunks that each take one second of the worker's (fake) clock
    long_task = world.submit({"chunks": 500})
    short_task = world.submit({"chunks": 2})
    batch = world.pipeline().receive()
    assert len(batch) == 2
    engine = wiring.engine()
    engine.quantum_seconds = 5
    now = [0.0]
    engine.monotonic = lambda: now[0]
    started: dict[str, float] = {}

    def one_second(task_id: str, index: int) -> None:
        started.setdefault(task_id, now[0])
        now[0] += 1

    world.counting.after_chunk = one_second
    # When the batch runs in an invocation with all the time in the world
    world.pipeline().invoke(batch)
    # Then the long task handed over within its quantum: after 4 chunks of 1 s, as a fifth
    # needs 1.5 x its measured 1 s and only 1 s of the slice was left; the short one started
    # at 4 s and finished in the same invocation
    assert started[short_task] == 4.0
    assert world.task(short_task).status == TaskStatus.SUCCESS
    long_state = world.task(long_task)
    assert long_state.status == TaskStatus.RUNNING
    assert long_state.units_done == 4
    # And the long task carries on from its checkpoint: alone in its batch, it keeps the
    # rest of the invocation
    world.pipeline().run()
    assert world.task(long_task).status == TaskStatus.SUCCESS
    assert world.task(long_task).result == {"sum": sum(range(500)), "seen": list(range(500))}


class StepClock:
    """A monotonic clock that moves only when told: chunks take exactly what a test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_no_chunk_starts_without_the_tasks_measured_chunk_time_left(world: World) -> None:
    # Given a 3-chunk task whose chunks take 4 s each, on a clock the test moves
    task_id = world.submit({"chunks": 3})
    engine = wiring.engine()
    clock = StepClock()
    engine.monotonic = clock
    world.counting.after_chunk = lambda _task, _index: clock.advance(4)
    first = iter([300_000, 5_000])  # the lease's sizing, then after chunk 0: 5 s left

    # When a first invocation runs chunk 0 and is then short of time
    assert engine.process(world.message(task_id), lambda: next(first)) == Outcome.CONTINUED
    # Then the task's chunk time is measured and kept in its checkpoint
    state = world.task(task_id).state
    assert state is not None and state.chunk_ms == 4000 and not state.deferred

    # When the continuation lands in an invocation with 5 s left (a record late in its batch)
    resume = world.message(task_id, resume=True)
    assert engine.process(resume, lambda: 5_000) == Outcome.CONTINUED
    # Then no chunk started: 5 s is less than 1.5 x 4 s; the task is handed over, released
    task = world.task(task_id)
    assert [i for t, i in world.counting.executions if t == task_id] == [0]
    assert task.status == TaskStatus.RUNNING and task.lease_expires_at == 0
    assert task.state is not None and task.state.deferred and task.units_done == 1

    # When the next invocation is as short: a chunk runs anyway (never two hand-overs in a row)
    assert engine.process(resume, lambda: 5_000) == Outcome.CONTINUED
    assert [i for t, i in world.counting.executions if t == task_id] == [0, 1]

    # And with time enough the task finishes exactly, each chunk run once
    assert engine.process(resume, lambda: 300_000) == Outcome.SUCCEEDED
    assert [i for t, i in world.counting.executions if t == task_id] == [0, 1, 2]
    assert world.task(task_id).result == {"sum": 3, "seen": [0, 1, 2]}


def test_a_first_chunk_needs_the_floor_left_and_the_mean_follows_recent_chunks(
    world: World,
) -> None:
    # Given a task with no measured chunk time, and the engine's floor of 1 s
    task_id = world.submit({"chunks": 4})
    engine = wiring.engine()
    clock = StepClock()
    engine.monotonic = clock
    durations = iter([2.0, 6.0, 6.0, 6.0])
    world.counting.after_chunk = lambda _task, _index: clock.advance(next(durations))

    # When it arrives with 0.5 s left, then with time enough
    assert engine.process(world.message(task_id), lambda: 500) == Outcome.CONTINUED
    executions_after_short = [i for t, i in world.counting.executions if t == task_id]
    outcome = engine.process(world.message(task_id, resume=True), lambda: 300_000)

    # Then nothing ran in the first, and the checkpointed mean weighs the newest chunk by half
    assert executions_after_short == []
    assert outcome == Outcome.SUCCEEDED
    state = world.task(task_id).state
    assert state is not None
    assert state.chunk_ms == 5500  # 2000 -> 4000 -> 5000 -> 5500 (ms)


def test_the_last_record_of_a_batch_is_not_sliced(world: World) -> None:
    engine = wiring.engine()
    engine.quantum_seconds = 5
    engine.monotonic = lambda: 0.0
    assert engine.time_slice(lambda: 200_000, others_waiting=False)() == 200_000
    sliced = engine.time_slice(lambda: 200_000, others_waiting=True)
    assert sliced() == 5_000 + engine.safety_margin_ms


# ------------------------------------------------------------------ the claim: one write


@contextmanager
def dynamodb_requests(client: Any) -> Iterator[Counter[str]]:
    """Counts the DynamoDB requests `client` makes inside the block, by operation."""
    seen: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        seen[event_name.split(".")[2]] += 1

    client.meta.events.register("before-call.dynamodb.*", count)
    try:
        yield seen
    finally:
        client.meta.events.unregister("before-call.dynamodb.*", count)


def claim_only(world: World, message: TaskMessage) -> tuple[Outcome, Counter[str]]:
    """Process `message` with a worker that stops at the claim (no time for a chunk)."""
    engine = wiring.engine()
    with dynamodb_requests(engine.store.table.client) as seen:
        world.counting.after_chunk = None
        outcome = engine.process(message, lambda: 300_000)
    return outcome, seen


def test_a_message_with_owner_and_type_is_claimed_with_one_write_and_no_read(
    world: World,
) -> None:
    # Given a one-chunk task whose message says whose it is, as the API sends it
    task_id = world.submit({"chunks": 1})
    # When the worker processes it
    outcome, seen = claim_only(world, world.message(task_id))
    # Then: the claim (one conditional write returning the task) and the finish, no read
    assert outcome == Outcome.SUCCEEDED
    assert seen == {"UpdateItem": 2}
    task, events = world.store.tasks.get_with_events(task_id, OWNER)
    assert task.attempts == 1
    assert [e.message for e in events] == ["submitted", "started (attempt 1 of 3)", "finished"]


def test_a_continuation_says_resume_and_is_claimed_with_one_write(world: World) -> None:
    # Given a 3-chunk task whose first invocation has time for one chunk
    task_id = world.submit({"chunks": 3})
    submitted = world.message(task_id).generation
    sent: list[dict[str, Any]] = []
    client = wiring.engine().dispatcher.client
    client.meta.events.register(
        "provide-client-params.sqs.SendMessage",
        lambda params, **_: sent.append(json.loads(params["MessageBody"])),
    )
    engine = wiring.engine()
    assert engine.process(world.message(task_id), countdown(1)()) == Outcome.CONTINUED
    # When the continuation it sent is processed
    (continuation,) = sent
    outcome, seen = claim_only(world, TaskMessage.model_validate(continuation))
    # Then it resumed the run handed over (RUNNING, lease released) with one write per step:
    # the claim, a checkpoint, the finish; the attempt was not counted again
    generation = continuation.pop("generation")
    assert continuation == {
        "task_id": task_id,
        "owner": OWNER,
        "task_type": "COUNTING",
        "resume": True,
    }
    # a generation of its own, written on the task with the hand-over
    assert generation != submitted and world.task(task_id).generation == generation
    assert outcome == Outcome.SUCCEEDED
    assert seen == {"UpdateItem": 3}
    assert world.task(task_id).attempts == 1
    assert [i for _, i in world.counting.executions] == [0, 1, 2]


def test_a_wrong_guess_costs_a_second_write_and_still_claims(world: World) -> None:
    # Given a PENDING task and a message that takes it for a handed-over run
    task_id = world.submit({"chunks": 1})
    # When the worker processes it
    outcome, seen = claim_only(world, world.message(task_id, resume=True))
    # Then the refused write returned the task as it is, and the lifecycle's claim followed
    assert outcome == Outcome.SUCCEEDED
    assert seen == {"UpdateItem": 3}  # refused guess, claim, finish
    assert world.task(task_id).attempts == 1


@pytest.mark.parametrize("status", [TaskStatus.SUCCESS, TaskStatus.CANCELLED])
def test_a_message_of_a_finished_task_costs_one_refused_write(
    world: World, status: TaskStatus
) -> None:
    task_id = world.submit({"chunks": 1})
    if status == TaskStatus.CANCELLED:
        world.cancel(task_id)
    else:
        world.pipeline().run()
    before = world.task(task_id)
    outcome, seen = claim_only(world, world.message(task_id))
    assert (outcome, seen) == (Outcome.DROPPED, {"UpdateItem": 1})
    assert world.task(task_id) == before


def test_a_message_of_a_missing_task_is_missing(world: World) -> None:
    message = TaskMessage(task_id="f" * 32, owner=OWNER, task_type="COUNTING")
    assert claim_only(world, message) == (Outcome.MISSING, {"UpdateItem": 1})


def test_a_message_naming_another_owner_cannot_move_the_task_under_that_owner(
    world: World,
) -> None:
    # Given a message whose owner is not the task's (its status index keys derive from it)
    task_id = world.submit({"chunks": 1})
    forged = TaskMessage(task_id=task_id, owner="mallory", task_type="COUNTING")
    # When the worker processes it
    outcome, seen = claim_only(world, forged)
    # Then the guessed write was refused, the claim went by the task's own identity, and
    # the task is listed for its owner only
    assert outcome == Outcome.SUCCEEDED
    assert seen == {"UpdateItem": 3}
    assert [t.task_id for t in world.store.listing.list_tasks(OWNER).tasks] == [task_id]
    assert world.store.listing.list_tasks("mallory").tasks == []


def test_a_bare_message_reads_the_task_then_claims_it(world: World) -> None:
    task_id = world.submit({"chunks": 1})
    outcome, seen = claim_only(world, world.message(task_id, hinted=False))
    assert outcome == Outcome.SUCCEEDED
    assert seen == {"GetItem": 1, "UpdateItem": 2}
