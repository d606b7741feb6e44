"""Operations: exact stats after crashes, retention, scheduling over the API, priorities."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3

from taskqueue import wiring
from taskqueue.models import TaskStatus, format_time, utcnow
from tests.helpers import call_api, http_event, reset_function_caches
from tests.pipeline_world import OWNER, World, crash_on_checkpoint


def recount(world: World, task_ids: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for task in world.store.tasks.batch_get(task_ids):
        counts.setdefault(task.status.value, Counter())[task.task_type] += 1
    return {status: dict(types) for status, types in counts.items()}


def nonzero(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    cleaned = {s: {t: n for t, n in types.items() if n} for s, types in counts.items()}
    return {s: types for s, types in cleaned.items() if types}


def test_stats_equal_a_full_recount_after_crashes_retries_and_cancels(world: World) -> None:
    # Given tasks that succeed, fail, get cancelled, crash mid-run and are retried
    ok = [world.submit({"chunks": 3}) for _ in range(4)]
    failing = world.submit({"chunks": 3, "fail_on_chunk": 1, "fail_times": 9}, max_attempts=2)
    flaky = world.submit({"chunks": 3, "fail_on_chunk": 2, "fail_times": 1})
    cancelled = world.submit({"chunks": 3})
    world.cancel(cancelled)
    crashing = world.submit({"chunks": 4})
    undo = crash_on_checkpoint(wiring.engine().store.table.client, 2, after=True)
    world.pipeline().run()
    undo()
    world.redeliver_after_crash()
    world.pipeline().run()
    world.retry(failing, restart=True)
    world.pipeline().run()
    pending = world.submit({"chunks": 2})
    ids = [*ok, failing, flaky, cancelled, crashing, pending]
    # When the stream has been counted, in batches of 7 records (each a few transactions)
    world.counters.drain(batch_size=7)
    stats = world.store.counters.stats(OWNER)
    # Then they equal a recount of the tasks themselves
    assert nonzero(stats.counts) == recount(world, ids)
    assert recount(world, ids) == {
        "SUCCESS": {"COUNTING": 6},
        "FAILED": {"COUNTING": 1},
        "CANCELLED": {"COUNTING": 1},
        "PENDING": {"COUNTING": 1},
    }
    # And finishes per minute count every terminal transition in the last hour
    finished = Counter[str]()
    for minute in stats.minutes.values():
        finished.update(minute)
    assert finished["SUCCESS"] == 6 and finished["CANCELLED"] == 1
    assert finished["FAILED"] == 2  # the failing task failed twice: before and after its retry


def test_stats_route_shows_counts_queues_and_an_hour_of_throughput(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    world.submit({"chunks": 1})
    world.pipeline().run()
    world.submit({"chunks": 1})
    world.counters.drain()
    function_env("ApiFunction")
    reset_function_caches()
    body = call_api(http_event("GET", "/stats", sub=OWNER)).body
    assert body["counts"]["by_status"] == {
        "PENDING": 1,
        "RUNNING": 0,
        "SUCCESS": 1,
        "FAILED": 0,
        "CANCELLED": 0,
    }
    assert body["counts"]["by_type"]["COUNTING"] == 2
    # The queues hold every owner's work: their depths are for operators only
    assert body["queues"] == {}
    operator = http_event("GET", "/stats", sub=OWNER)
    operator["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[admin ops]"
    queues = call_api(operator).body["queues"]
    assert set(queues) == {"tasks-normal", "tasks-high", "tasks-parts", "dlq-normal", "dlq-high"}
    assert queues["tasks-normal"]["visible"] == 1
    assert len(body["throughput"]) == 60
    assert sum(point["succeeded"] for point in body["throughput"]) == 1
    other = call_api(http_event("GET", "/stats", sub="someone-else")).body
    assert sum(other["counts"]["by_status"].values()) == 0


def test_finished_tasks_expire_after_retention_and_are_hidden_before_ttl_deletes_them(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    # Given a finished task and the configured retention
    task_id = world.submit({"chunks": 1})
    world.pipeline().run()
    env = function_env("ApiFunction")
    reset_function_caches()
    retention = int(env["RETENTION_DAYS"])
    task = world.store.tasks.get(task_id)
    assert task.expires_at is not None and task.finished_at is not None
    assert task.expires_at == int((task.finished_at + timedelta(days=retention)).timestamp())
    assert call_api(http_event("GET", f"/tasks/{task_id}", sub=OWNER)).status == 200
    # When the retention has passed (moto never runs TTL, like DynamoDB's lag of hours)
    later = utcnow() + timedelta(days=retention, hours=1)
    wiring.service().store.table.clock = lambda: later
    # Then the API hides the task from get and list
    assert call_api(http_event("GET", f"/tasks/{task_id}", sub=OWNER)).status == 404
    listed = call_api(http_event("GET", "/tasks", sub=OWNER)).body
    assert task_id not in [t["id"] for t in listed["items"]]


def test_scheduled_task_is_pending_with_run_at_and_can_be_cancelled_before_it_starts(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    function_env("ApiFunction")
    reset_function_caches()
    run_at = utcnow() + timedelta(hours=2)
    created = call_api(
        http_event(
            "POST",
            "/tasks",
            sub=OWNER,
            body={
                "type": "EMAIL",
                "params": {"recipient_count": 1, "subject": "s", "body": "b"},
                "run_at": run_at.isoformat(),
            },
        )
    )
    assert created.status == 201
    assert created.body["status"] == "PENDING"
    assert created.body["run_at"].startswith(format_time(run_at)[:19])
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=world.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # first hop: 900 s
    cancelled = call_api(http_event("DELETE", f"/tasks/{created.body['id']}", sub=OWNER))
    assert cancelled.status == 200 and cancelled.body["status"] == "CANCELLED"


def test_submit_with_delay_seconds_sets_run_at_and_high_priority_picks_its_queue(
    world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    function_env("ApiFunction")
    reset_function_caches()
    body: dict[str, Any] = {
        "type": "EMAIL",
        "params": {"recipient_count": 1, "subject": "s", "body": "b"},
        "priority": "high",
        "delay_seconds": 60,
    }
    created = call_api(http_event("POST", "/tasks", sub=OWNER, body=body))
    assert created.status == 201 and created.body["priority"] == "high"
    assert created.body["run_at"] is not None
    sqs = boto3.client("sqs")
    high = sqs.get_queue_attributes(
        QueueUrl=world.high_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    normal = sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert high["ApproximateNumberOfMessagesDelayed"] == "1"
    assert normal["ApproximateNumberOfMessages"] == "0"
    assert normal["ApproximateNumberOfMessagesDelayed"] == "0"
    assert json.loads(json.dumps(created.body))["status"] == TaskStatus.PENDING.value
