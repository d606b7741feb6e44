"""The counting benchmarks (bench/cost.py, parallel.py, capacity.py, listing.py) at small size, with their
goals asserted: a change that adds requests, write units or a hot key fails here.

Each benchmark runs once per module (it builds its own moto world); the tests read its figures.
They run on moto with the tests' speed-ups and Query reading only its partition, which give the
same answers (tests/integration/test_moto_patches.py), so the same requests and write units: half
the CPU of the cost run.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest

from bench import capacity, cost, listing, parallel
from devstack.moto_patches import partition_queries, temporarily
from taskqueue.quotas import QUOTA_SHARDS
from tests.conftest import MOTO_SPEED_UPS


def same_answers_faster() -> AbstractContextManager[None]:
    return temporarily(*MOTO_SPEED_UPS, partition_queries)


@pytest.fixture(scope="module")
def cost_result() -> cost.CostResult:
    with same_answers_faster():
        return cost.run("small")


@pytest.fixture(scope="module")
def parallel_result() -> parallel.ParallelResult:
    with same_answers_faster():
        return parallel.run("small", parts=PARTS)


# Parts of the parallel benchmark here (and twice as many, for what one part more costs).
PARTS = 3


@pytest.fixture(scope="module")
def capacity_result() -> capacity.CapacityRun:
    with same_answers_faster():
        return capacity.run("small")


@pytest.fixture(scope="module")
def list_result() -> listing.ListResult:
    with same_answers_faster():
        return listing.run("small")


# ------------------------------------------------------------------ 8. parallel tasks


def test_a_part_costs_at_most_three_requests_beyond_its_own_chunks(
    parallel_result: parallel.ParallelResult,
) -> None:
    # Given empty chunks, generated images and paced email, each run whole and in parts
    own = {cost.label.split(",")[0]: cost.own for cost in parallel_result.costs}
    # Then one part more costs its claim, its count on the parent and its message, and no
    # more (EMAIL's parts even save a hand-over each: a part's first batch needs no wait)
    assert own == {"BENCH_NOOP": 3.0, "IMAGE_PROCESSING": 3.0, "EMAIL": 1.0}
    assert [cost.marginal for cost in parallel_result.costs] == list(own.values())
    assert all(m <= parallel.GOAL_EXTRA_REQUESTS for m in own.values())
    # and the parent's own share is 6 requests (the plan recorded, the part items written,
    # its message, its claim for the merge, the parts read, its finish) and the listing of
    # the parts' objects, whatever the type
    noop, images, _ = parallel_result.costs
    assert noop.extra_by_operation() == images.extra_by_operation()
    extra = noop.split.requests + noop.split.task
    extra.subtract(noop.whole.requests + noop.whole.task)
    assert extra.total() == 3 * PARTS + 6 + 1
    # which at 200 parts is 0.075 a part: 5 requests, a BatchWriteItem per 25 parts and a
    # BatchGetItem per 100
    assert noop.at_scale(200) == pytest.approx(3 + 5 / 200 + 1 / 25 + 1 / 100)


def test_parts_orchestration_is_over_10x_cheaper_than_a_distributed_map(
    parallel_result: parallel.ParallelResult,
) -> None:
    # Distributed Map billed its least (a transition and a 100 ms Express child a part)
    for part_cost in parallel_result.costs:
        assert part_cost.sfn_per_task() > 10 * part_cost.ours_per_task(), parallel_result.render()
    assert parallel_result.goal_met(), parallel_result.render()


def test_an_email_lane_waits_for_its_first_slot_in_the_queue_not_in_a_hand_over(
    parallel_result: parallel.ParallelResult,
) -> None:
    # Given EMAIL in parts, every lane started at once (before) or at its first slot (after)
    slots = parallel_result.first_slot
    assert slots is not None
    before, after = slots.before, slots.after
    # Then the same SES requests, and every lane after the first saves a hand-over: its
    # message and invocation, an idle checkpoint, a claim and a re-read of its outcomes
    assert after.task["sesv2.SendBulkEmail"] == before.task["sesv2.SendBulkEmail"]
    lanes = PARTS - 1
    assert before.invocations - after.invocations == lanes
    assert before.requests - after.requests == {
        "sqs.SendMessage": lanes,
        "dynamodb.UpdateItem": 2 * lanes,
    }
    assert before.task - after.task == {"s3.GetObject": lanes}


# ------------------------------------------------------------------ 1. cost per task


def test_ten_chunk_task_orchestration_is_25x_cheaper_than_step_functions(
    cost_result: cost.CostResult,
) -> None:
    ten = cost_result.goal()
    # quiet (one task per worker and per counters invocation): the figure the goal is on
    assert ten.ratio() >= cost.GOAL_RATIO, cost_result.render()
    assert ten.ratio(at_load=True) > ten.ratio()


def test_ten_chunk_task_makes_chunks_plus_four_requests(cost_result: cost.CostResult) -> None:
    # Given a 10-chunk task run through the API and worker handlers
    ten = cost_result.goal()
    # Then: submit (quota take, put, send, enqueued mark), claim, 9 checkpoints, finish: each
    # status change one write of the task item, no transaction, and no read before the claim
    assert dict(ten.requests["api"]) == {
        "dynamodb.PutItem": 1,
        "sqs.SendMessage": 1,
        "dynamodb.UpdateItem": 2,
    }
    assert dict(ten.requests["worker"]) == {"dynamodb.UpdateItem": 11}
    assert ten.worker_invocations == 1
    # and the counters of its whole life in one transaction (quiet: a stream batch per task)
    assert dict(ten.requests["counters"]) == {"dynamodb.TransactWriteItems": 1}


def test_write_units_per_task_do_not_grow(cost_result: cost.CostResult) -> None:
    # The figures of docs/benchmarks.md are ceilings: more writes is a regression.
    by_chunks = {c.chunks: c for c in cost_result.noop}
    # (quotas on: a take and a give-back, 3 units; the awaiting-enqueue index counted: 2; the
    # claim moves no status-index entry, PENDING and RUNNING share a partition: 4 fewer)
    assert by_chunks[1].wru_table + by_chunks[1].wru_index <= 24
    assert by_chunks[10].wru_table + by_chunks[10].wru_index <= 33
    # the task item stays under 1 KB: one unit per checkpoint
    assert by_chunks[10].wru_by_step["checkpoints"] == 9
    # the worker reads nothing: the claim is a conditional write that returns the task
    assert by_chunks[1].rru == by_chunks[10].rru == 0
    # checkpoints never write an index: index writes do not depend on the chunk count
    assert by_chunks[1].wru_index == by_chunks[10].wru_index == by_chunks[100].wru_index == 11
    # and the claim writes the task item alone
    assert by_chunks[10].wru_by_step["claim"] == 1
    # counted in full stream batches, the status counters cost a fraction of a unit per task;
    # the slots go back to each task's own quota shard, each of an owner's 16 written at most
    # once a batch (2 units in the transaction): how many depends on the burst's task ids
    at_load = by_chunks[10].counters_at_load
    assert at_load.wru - at_load.quota_wru < 0.5
    assert 0 < at_load.quota_wru <= 2 * QUOTA_SHARDS * at_load.invocations  # a task's share


def test_data_processing_reads_its_input_once_per_chunk(cost_result: cost.CostResult) -> None:
    data = cost_result.data_processing
    # the ranges, plus a 3-byte read for a byte order mark; the accumulators of the chunk
    # before come from the worker's memory (one invocation), not from S3
    assert data.s3["s3.GetObject"] <= data.chunks + 1
    # the accumulators after each chunk (one object per chunk index), and the result document
    assert data.s3["s3.PutObject"] == data.chunks + 1
    assert data.s3["s3.DeleteObject"] == data.chunks - 2  # all but the last two partials


# ------------------------------------------------------------------ 2. design capacity


def test_one_owner_can_run_10000_tasks_a_second(capacity_result: capacity.CapacityRun) -> None:
    one = capacity_result.one_owner
    assert one.design_capacity >= capacity.GOAL_TASKS_PER_SECOND, one.render()


def test_every_key_shared_by_tasks_is_write_sharded(capacity_result: capacity.CapacityRun) -> None:
    for run in (capacity_result.one_owner, capacity_result.many_owners):
        unsharded = [row for row in run.family_rows if row[2] < 16]
        assert not unsharded, run.render()


def test_many_owners_spread_writes_further(capacity_result: capacity.CapacityRun) -> None:
    assert capacity_result.many_owners.design_capacity > capacity_result.one_owner.design_capacity


# ------------------------------------------------------------------ 3. list cost


def test_a_page_reads_at_most_three_pages_plus_one_item_per_shard(
    list_result: listing.ListResult,
) -> None:
    # (PENDING and RUNNING share a partition: a filter on one of them checks each task it
    # reads, within its own bound, `list_result.active_bound`)
    for size in list_result.sizes:
        assert list_result.over_bound(size) == {}, list_result.render()


def test_list_cost_is_flat_as_the_table_grows(list_result: listing.ListResult) -> None:
    # Given the filters whose pages are full at both sizes, a page at 3x the tasks reads
    # no more than a tenth of the bound more (hashing noise), as the goal says
    growth = list_result.growth()
    assert len(growth) >= 3
    assert all(extra <= 0.1 * list_result.bound for extra in growth.values()), growth


def test_every_filter_fills_its_first_page(list_result: listing.ListResult) -> None:
    first_pages = [p for p in list_result.pages[list_result.sizes[-1]] if p.page == 1]
    assert all(p.tasks == listing.PAGE for p in first_pages)
