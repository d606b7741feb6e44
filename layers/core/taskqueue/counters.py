"""Status counters kept from the table's stream, applied in batches and exactly once.

A status change is one conditional write of the task item alone; the stream carries its
old and new image. The counters function turns a batch of stream records into one ADD per
counter item, in a transaction with a marker named after the batch's first record, so a
redelivered batch (Lambda retries a failed batch from the same record) is not counted twice.
See docs/architecture.md, "Counters".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskqueue.models import TaskStatus, parse_optional_time
from taskqueue.quotas import ACTIVE_ATTRIBUTE
from taskqueue.store.items import (
    ACTIVE_BUCKET,
    QUOTA_PREFIX,
    STATS_SHARDS,
    CounterKey,
    counter_key,
    day_bucket,
    is_task_item,
    minute_bucket,
)

# TransactWriteItems takes 100 actions: the marker and up to 99 counter items.
MAX_COUNTER_ITEMS = 99


@dataclass(frozen=True)
class Change:
    """What one stream record means for the counters: (bucket, counter name) -> delta."""

    event_id: str
    sequence: int
    owner: str
    deltas: dict[tuple[str, str], int]


@dataclass
class CounterBatch:
    """Consecutive changes applied in one transaction, named after the first one."""

    marker: str
    last_sequence: int
    records: int
    items: dict[CounterKey, dict[str, int]] = field(default_factory=dict)


def stats_bucket(status: TaskStatus, finished_at: datetime | None) -> str:
    """Active tasks count in one item; finished ones by the day they finished (for retention)."""
    if not status.is_terminal:
        return ACTIVE_BUCKET
    if finished_at is None:
        raise ValueError("a finished task has no finished_at")
    return day_bucket(finished_at.date())


def change_of(event_id: str, sequence: str, keys: dict[str, Any], old: Any, new: Any) -> Change:
    """The counter deltas of one stream record of the table (images already deserialized).

    Only a task item whose status differs between the images moves counters; a checkpoint,
    an event of another item, or a TTL removal (whose DAY counters expire on their own)
    yields no deltas.
    """
    deltas: dict[tuple[str, str], int] = {}
    owner = ""
    if is_task_item(keys) and new:
        owner = str(new["owner"])
        task_type = str(new["task_type"])
        new_status = TaskStatus(new["status"])
        old_status = TaskStatus(old["status"]) if old else None
        if old_status != new_status:
            if old_status is not None:
                bucket = stats_bucket(old_status, parse_optional_time(old.get("finished_at")))
                deltas[(bucket, f"{old_status}#{task_type}")] = -1
            finished_at = parse_optional_time(new.get("finished_at"))
            bucket = stats_bucket(new_status, finished_at)
            name = f"{new_status}#{task_type}"
            deltas[(bucket, name)] = deltas.get((bucket, name), 0) + 1
            if new_status.is_terminal and finished_at is not None:
                deltas[(minute_bucket(finished_at), str(new_status))] = 1
            quota_shard = new.get("qs")
            leaves_active = old_status is None or not old_status.is_terminal
            # A chain's step that succeeded hands its slot to the next step, which gives it
            # back when the chain ends.
            hands_over = new_status == TaskStatus.SUCCESS and bool(new.get("chain_next"))
            if (
                new_status.is_terminal
                and leaves_active
                and not hands_over
                and quota_shard is not None
            ):
                # Its slot back to the shard it was taken from (a retry takes one anew).
                deltas[(f"{QUOTA_PREFIX}{int(quota_shard)}", ACTIVE_ATTRIBUTE)] = -1
    return Change(event_id=event_id, sequence=int(sequence), owner=owner, deltas=deltas)


def shard_for(marker: str) -> int:
    """The counter partition a batch writes: fixed by its first record, so a retry of the
    batch writes the very items it wrote before."""
    return int(hashlib.sha256(marker.encode()).hexdigest()[:8], 16) % STATS_SHARDS


def batches(changes: Iterable[Change]) -> Iterator[CounterBatch]:
    """Group changes, in stream order, into batches of at most MAX_COUNTER_ITEMS items.

    Counters that net to zero are dropped (a task submitted and started within one batch
    leaves ACTIVE as it was); a batch with nothing left to add is not yielded.
    """
    batch: CounterBatch | None = None
    for change in changes:
        if batch is None:
            batch = CounterBatch(marker=change.event_id, last_sequence=0, records=0)
        shard = shard_for(batch.marker)
        keys = {counter_key(change.owner, bucket, shard) for bucket, _ in change.deltas}
        if len(batch.items.keys() | keys) > MAX_COUNTER_ITEMS:
            yield from _nonzero(batch)
            batch = CounterBatch(marker=change.event_id, last_sequence=0, records=0)
            shard = shard_for(batch.marker)
        for (bucket, name), delta in change.deltas.items():
            counters = batch.items.setdefault(counter_key(change.owner, bucket, shard), {})
            counters[name] = counters.get(name, 0) + delta
        batch.last_sequence = change.sequence
        batch.records += 1
    if batch is not None:
        yield from _nonzero(batch)


def _nonzero(batch: CounterBatch) -> Iterator[CounterBatch]:
    items = {}
    for key, counters in batch.items.items():
        kept = {name: delta for name, delta in counters.items() if delta}
        if kept:
            items[key] = kept
    if items:
        batch.items = items
        yield batch
