"""Counter deltas from stream records, and their grouping into transactions."""

from __future__ import annotations

from typing import Any

import pytest

from taskqueue import counters
from taskqueue.counters import Change, batches, change_of, shard_for
from taskqueue.store.items import STATS_SHARDS, counter_key

KEYS = {"pk": "TASK#abc", "sk": "META"}


def image(status: str, finished_at: str | None = None, task_type: str = "EMAIL") -> dict[str, Any]:
    values = {"owner": "alice", "task_type": task_type, "status": status}
    if finished_at:
        values["finished_at"] = finished_at
    return values


def test_a_new_task_counts_one_pending() -> None:
    change = change_of("e1", "100", KEYS, None, image("PENDING"))
    assert change == Change("e1", 100, "alice", {("ACTIVE", "PENDING#EMAIL"): 1})


def test_a_claim_moves_one_task_from_pending_to_running() -> None:
    change = change_of("e2", "101", KEYS, image("PENDING"), image("RUNNING"))
    assert change.deltas == {("ACTIVE", "PENDING#EMAIL"): -1, ("ACTIVE", "RUNNING#EMAIL"): 1}


def test_a_finish_counts_on_its_day_and_its_minute() -> None:
    done = image("SUCCESS", "2026-11-24T10:15:30.000001Z")
    change = change_of("e3", "102", KEYS, image("RUNNING"), done)
    assert change.deltas == {
        ("ACTIVE", "RUNNING#EMAIL"): -1,
        ("DAY#2026-11-24", "SUCCESS#EMAIL"): 1,
        ("MIN#2026-11-24T10:15", "SUCCESS"): 1,
    }


def test_a_retry_takes_the_task_off_the_day_it_failed() -> None:
    failed = image("FAILED", "2026-11-20T08:00:00.000000Z")
    change = change_of("e4", "103", KEYS, failed, image("PENDING"))
    assert change.deltas == {("DAY#2026-11-20", "FAILED#EMAIL"): -1, ("ACTIVE", "PENDING#EMAIL"): 1}


@pytest.mark.parametrize(
    ("keys", "old", "new"),
    [
        (KEYS, image("RUNNING"), image("RUNNING")),  # a checkpoint
        (KEYS, image("SUCCESS", "2026-11-24T10:00:00Z"), None),  # TTL removed it
        ({"pk": "STATS#alice#3", "sk": "ACTIVE"}, None, {"PENDING#EMAIL": 2}),  # a counter
        ({"pk": "IDEMP#alice#k", "sk": "IDEMP"}, None, {"task_id": "abc"}),
    ],
)
def test_records_that_change_no_status_move_no_counter(
    keys: dict[str, Any], old: Any, new: Any
) -> None:
    assert change_of("e", "1", keys, old, new).deltas == {}


def test_a_finished_task_without_its_finish_time_is_refused() -> None:
    with pytest.raises(ValueError):
        change_of("e", "1", KEYS, image("RUNNING"), image("SUCCESS"))


def lifecycle(first: int, owner: str = "alice") -> list[Change]:
    """Submit, claim, checkpoint, finish: the changes of one task's records."""
    finished = "2026-11-24T10:15:30.000000Z"
    steps = [
        (None, image("PENDING")),
        (image("PENDING"), image("RUNNING")),
        (image("RUNNING"), image("RUNNING")),
        (image("RUNNING"), image("SUCCESS", finished)),
    ]
    changes = [
        change_of(f"e{first + i}", str(first + i), KEYS, old, new)
        for i, (old, new) in enumerate(steps)
    ]
    return [Change(c.event_id, c.sequence, owner, c.deltas) for c in changes]


def test_a_whole_task_in_one_batch_leaves_active_as_it_was() -> None:
    (batch,) = batches(lifecycle(1))
    shard = shard_for("e1")
    assert batch.marker == "e1" and batch.last_sequence == 4 and batch.records == 4
    assert batch.items == {
        counter_key("alice", "DAY#2026-11-24", shard): {"SUCCESS#EMAIL": 1},
        counter_key("alice", "MIN#2026-11-24T10:15", shard): {"SUCCESS": 1},
    }


def test_a_batch_of_checkpoints_only_writes_nothing() -> None:
    checkpoint = change_of("e9", "9", KEYS, image("RUNNING"), image("RUNNING"))
    assert list(batches([checkpoint])) == []


def test_many_owners_split_into_transactions_of_at_most_100_actions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given submits of 7 owners and room for 3 counter items per transaction
    monkeypatch.setattr(counters, "MAX_COUNTER_ITEMS", 3)
    submits = [
        Change(f"e{i}", i, f"owner-{i}", {("ACTIVE", "PENDING#EMAIL"): 1}) for i in range(1, 8)
    ]
    # When they are grouped
    groups = list(batches(submits))
    # Then each group starts where the last ended, is named after its first record, and
    # every change is in exactly one group
    assert [(g.marker, g.last_sequence, g.records) for g in groups] == [
        ("e1", 3, 3),
        ("e4", 6, 3),
        ("e7", 7, 1),
    ]
    assert sum(len(g.items) for g in groups) == 7


def test_a_batchs_counter_partition_is_fixed_by_its_first_record() -> None:
    # A retried batch starts at the same record, so it writes the very same items.
    assert shard_for("event-1") == shard_for("event-1")
    assert len({shard_for(f"event-{i}") for i in range(400)}) == STATS_SHARDS
    assert counter_key("o", "MIN#2026-11-24T10:15", 37) == ("TPUT#o#5", "MIN#2026-11-24T10:15")


# ------------------------------------------------------------------ quota slots given back

DONE_AT = "2026-11-24T10:15:30.000001Z"


def held(status: str, finished_at: str | None = None, **extra: Any) -> dict[str, Any]:
    """The image of a task holding a slot of its owner's quota shard 7."""
    return {**image(status, finished_at), "qs": 7, **extra}


@pytest.mark.parametrize("ending", ["SUCCESS", "FAILED", "CANCELLED"])
def test_a_task_that_ends_gives_its_slot_back_to_its_quota_shard(ending: str) -> None:
    change = change_of("e9", "109", KEYS, held("RUNNING"), held(ending, DONE_AT))
    assert change.deltas[("QUOTA#7", "active")] == -1
    assert counter_key("alice", "QUOTA#7", shard_for("e9")) == ("QUOTA#alice#7", "USED")


def test_a_cancelled_pending_task_gives_its_slot_back() -> None:
    change = change_of("e9", "109", KEYS, held("PENDING"), held("CANCELLED", DONE_AT))
    assert change.deltas[("QUOTA#7", "active")] == -1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (held("PENDING"), held("RUNNING")),  # a claim: still not finished
        (held("FAILED", DONE_AT), held("PENDING")),  # a retry takes its slot at the API
        (image("RUNNING"), image("SUCCESS", DONE_AT)),  # took none (quotas off)
        # a chain's step hands its slot to the next step, which gives it back at the end
        (
            held("RUNNING", chain_next='[{"type":"EMAIL"}]'),
            held("SUCCESS", DONE_AT, chain_next='[{"type":"EMAIL"}]'),
        ),
    ],
)
def test_no_slot_comes_back_while_the_work_goes_on(old: Any, new: Any) -> None:
    change = change_of("e9", "109", KEYS, old, new)
    assert not any(bucket.startswith("QUOTA#") for bucket, _ in change.deltas)


def test_a_failed_chain_step_gives_the_chains_slot_back() -> None:
    step = held("FAILED", DONE_AT, chain_next='[{"type":"EMAIL"}]')
    change = change_of("e9", "109", KEYS, held("RUNNING"), step)
    assert change.deltas[("QUOTA#7", "active")] == -1


def test_a_part_of_a_parallel_task_gives_nothing_back() -> None:
    # parts take no slot: the parent holds the one its submit took
    part = {"pk": "TASK#" + "a" * 32 + ".3", "sk": "META"}
    change = change_of("e9", "109", part, held("RUNNING"), held("SUCCESS", DONE_AT))
    assert change.deltas == {}
