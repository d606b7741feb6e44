"""The counters function over the table's stream: every transition counted exactly once,
whatever Lambda redelivers (a batch again, a batch after a crash mid-way, a longer batch)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskqueue import counters, wiring
from tests.helpers import FakeLambdaContext, load_function
from tests.pipeline_world import OWNER, World


def run_tasks(world: World, count: int = 4) -> list[str]:
    ids = [world.submit({"chunks": 3}) for _ in range(count - 1)]
    cancelled = world.submit({"chunks": 3})
    world.cancel(cancelled)
    world.pipeline().run()
    ids.append(world.submit({"chunks": 2}))  # still pending
    return [*ids, cancelled]


def recount(world: World, ids: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for task in world.store.tasks.batch_get(ids):
        counts.setdefault(task.status.value, Counter())[task.task_type] += 1
    return {status: dict(types) for status, types in counts.items()}


def counted(world: World) -> dict[str, dict[str, int]]:
    cleaned = {
        status: {t: n for t, n in types.items() if n}
        for status, types in world.store.counters.stats(OWNER).counts.items()
    }
    return {status: types for status, types in cleaned.items() if types}


def invoke(records: list[dict[str, Any]]) -> dict[str, int]:
    handler = load_function("counters").lambda_handler
    return handler({"Records": records}, FakeLambdaContext("counters"))


@pytest.fixture
def records(world: World) -> Iterator[tuple[World, list[str], list[dict[str, Any]]]]:
    ids = run_tasks(world)
    batch = world.counters.reader.read(1000)
    assert len(batch) > 15
    yield world, ids, batch


def test_the_counts_equal_a_recount_once_the_stream_is_read(records: Any) -> None:
    world, ids, batch = records
    assert counted(world) == {}  # nothing counted before the counters function ran
    invoke(batch)
    assert (
        counted(world)
        == recount(world, ids)
        == {
            "SUCCESS": {"COUNTING": 3},
            "CANCELLED": {"COUNTING": 1},
            "PENDING": {"COUNTING": 1},
        }
    )


def test_a_batch_delivered_twice_is_counted_once(records: Any) -> None:
    world, ids, batch = records
    first = invoke(batch)
    again = invoke(batch)
    assert first["counter_items"] > 0 and again["counter_items"] == 0
    assert counted(world) == recount(world, ids)


def test_a_crash_between_transactions_is_made_good_by_the_retry(
    records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one counter item per transaction, and DynamoDB failing the third transaction
    world, ids, batch = records
    monkeypatch.setattr(counters, "MAX_COUNTER_ITEMS", 1)
    client = wiring.stream_counter().store.table.client
    calls = Counter[str]()

    def fail_third(**_: Any) -> None:
        calls["transactions"] += 1
        if calls["transactions"] == 3:
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}},
                "TransactWriteItems",
            )

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail_third)
    # When the invocation fails half-way and Lambda retries the same batch
    with pytest.raises(ClientError):
        invoke(batch)
    assert counted(world) != recount(world, ids)  # two items counted, the rest not yet
    invoke(batch)
    # Then every transition is counted once
    assert counted(world) == recount(world, ids)


def test_a_retry_that_brings_more_records_counts_only_the_new_ones(records: Any) -> None:
    # Given the first part of the stream counted (and the invocation lost afterwards)
    world, ids, batch = records
    invoke(batch[: len(batch) // 2])
    # When Lambda retries from the same record with a larger batch
    invoke(batch)
    # Then
    assert counted(world) == recount(world, ids)


def test_unreadable_records_are_skipped_and_the_rest_counted(records: Any) -> None:
    world, _, batch = records
    broken = dict(batch[0], dynamodb={**batch[0]["dynamodb"], "NewImage": {"status": {"S": "?"}}})
    garbage: dict[str, Any] = {"eventID": "x", "dynamodb": "not a record"}
    result = invoke([broken, garbage, *batch[1:]])
    assert result["records"] == len(batch) - 1
    # The broken record was the first task's submit: only its PENDING +1 is missing.
    assert counted(world) == {"SUCCESS": {"COUNTING": 3}, "CANCELLED": {"COUNTING": 1}}
