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
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from taskqueue.models import TaskStatus, parse_optional_time
from taskqueue.observability import logger, metrics

if TYPE_CHECKING:
    from taskqueue.store import CounterStore

ACTIVE_BUCKET = "ACTIVE"
# Counter partitions per owner. A batch writes one STATS partition (its ACTIVE and DAY items)
# and one TPUT partition, chosen from the batch, so a busy owner's writes spread over them.
STATS_SHARDS = 64
THROUGHPUT_SHARDS = 16
# TransactWriteItems takes 100 actions: the marker and up to 99 counter items.
MAX_COUNTER_ITEMS = 99

CounterKey = tuple[str, str]  # (pk, sk) of a counter item


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
    return f"DAY#{finished_at.date().isoformat()}"


def change_of(event_id: str, sequence: str, keys: dict[str, Any], old: Any, new: Any) -> Change:
    """The counter deltas of one stream record of the table (images already deserialized).

    Only a task item whose status differs between the images moves counters; a checkpoint,
    an event of another item, or a TTL removal (whose DAY counters expire on their own)
    yields no deltas.
    """
    deltas: dict[tuple[str, str], int] = {}
    owner = ""
    is_task = str(keys.get("pk", "")).startswith("TASK#") and keys.get("sk") == "META"
    if is_task and new:
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
                deltas[(f"MIN#{finished_at.isoformat()[:16]}", str(new_status))] = 1
    return Change(event_id=event_id, sequence=int(sequence), owner=owner, deltas=deltas)


def counter_key(owner: str, bucket: str, shard: int) -> CounterKey:
    if bucket.startswith("MIN#"):
        return (f"TPUT#{owner}#{shard % THROUGHPUT_SHARDS}", bucket)
    return (f"STATS#{owner}#{shard}", bucket)


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


def changes_of(records: list[Any]) -> list[Change]:
    """The counter changes of a batch of the stream's records; a record that cannot be read is
    reported and skipped (retrying would not make it readable, and it would hold up the
    stream for 24 h)."""
    from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel

    changes = []
    for raw in records:
        try:
            record = DynamoDBStreamRecordModel.model_validate(raw)
            data = record.dynamodb
            changes.append(
                change_of(
                    record.eventID, data.SequenceNumber, data.Keys, data.OldImage, data.NewImage
                )
            )
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            event_id = raw.get("eventID") if isinstance(raw, dict) else None
            logger.error("stream record skipped", event_id=str(event_id), error=str(exc)[:500])
            metrics.add_metric(name="StreamRecordsSkipped", unit="Count", value=1)
    return changes


@dataclass
class Counted:
    records: int  # readable records of the batch
    counter_items: int  # counter items written


@dataclass
class StreamCounter:
    """The counters function's logic: a batch of stream records -> the counters, once."""

    store: CounterStore

    def count(self, records: list[Any]) -> Counted:
        changes = changes_of(records)
        # An AWS error propagates: Lambda retries the batch, and the markers skip what was
        # counted.
        written = self.store.apply_changes(changes)
        metrics.add_metric(name="CounterItemsWritten", unit="Count", value=written)
        return Counted(records=len(changes), counter_items=written)
