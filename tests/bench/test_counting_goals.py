"""The counting benchmarks (bench/cost.py, capacity.py, listing.py) at small size, with their
goals asserted: a change that adds requests, write units or a hot key fails here.

Each benchmark runs once per module (it builds its own moto world); the tests read its figures.
They run on moto with the tests' speed-ups and Query reading only its partition, which give the
same answers (tests/integration/test_moto_patches.py), so the same requests and write units: half
the CPU of the cost run.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest

from bench import capacity, cost, listing
from devstack.moto_patches import partition_queries, temporarily
from tests.conftest import MOTO_SPEED_UPS


def same_answers_faster() -> AbstractContextManager[None]:
    return temporarily(*MOTO_SPEED_UPS, partition_queries)


@pytest.fixture(scope="module")
def cost_result() -> cost.CostResult:
    with same_answers_faster():
        return cost.run("small")


@pytest.fixture(scope="module")
def capacity_result() -> capacity.CapacityRun:
    with same_answers_faster():
        return capacity.run("small")


@pytest.fixture(scope="module")
def list_result() -> listing.ListResult:
    with same_answers_faster():
        return listing.run("small")


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
    # Then: submit (put, send, enqueued mark), claim, 9 checkpoints, finish: each status
    # change one write of the task item, no transaction, and no read before the claim
    assert dict(ten.requests["api"]) == {
        "dynamodb.PutItem": 1,
        "sqs.SendMessage": 1,
        "dynamodb.UpdateItem": 1,
    }
    assert dict(ten.requests["worker"]) == {"dynamodb.UpdateItem": 11}
    assert ten.worker_invocations == 1
    # and the counters of its whole life in one transaction (quiet: a stream batch per task)
    assert dict(ten.requests["counters"]) == {"dynamodb.TransactWriteItems": 1}


def test_write_units_per_task_do_not_grow(cost_result: cost.CostResult) -> None:
    # The figures of docs/benchmarks.md are ceilings: more writes is a regression.
    by_chunks = {c.chunks: c for c in cost_result.noop}
    # (one index write more than before the by_owner_id index: a short id finds its task)
    assert by_chunks[1].wru_table + by_chunks[1].wru_index <= 23
    assert by_chunks[10].wru_table + by_chunks[10].wru_index <= 32
    # the task item stays under 1 KB: one unit per checkpoint
    assert by_chunks[10].wru_by_step["checkpoints"] == 9
    # the worker reads nothing: the claim is a conditional write that returns the task
    assert by_chunks[1].rru == by_chunks[10].rru == 0
    # checkpoints never write an index: index writes do not depend on the chunk count
    assert by_chunks[1].wru_index == by_chunks[10].wru_index == by_chunks[100].wru_index == 13
    # counted in full stream batches, the counters cost a fraction of a unit per task
    assert by_chunks[10].counters_at_load.wru < 0.5


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
    for size in list_result.sizes:
        worst = list_result.worst(size)
        assert max(worst.values()) <= list_result.bound, list_result.render()


def test_list_cost_is_flat_as_the_table_grows(list_result: listing.ListResult) -> None:
    # Given the filters whose pages are full at both sizes, a page at 3x the tasks reads
    # no more than a tenth of the bound more (hashing noise), as the goal says
    growth = list_result.growth()
    assert len(growth) >= 3
    assert all(extra <= 0.1 * list_result.bound for extra in growth.values()), growth


def test_every_filter_fills_its_first_page(list_result: listing.ListResult) -> None:
    first_pages = [p for p in list_result.pages[list_result.sizes[-1]] if p.page == 1]
    assert all(p.tasks == listing.PAGE for p in first_pages)
