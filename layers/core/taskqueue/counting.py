"""The counters function's logic: a batch of the table's stream records -> status counters.

The pure part, what a record means for the counters, is `taskqueue.counters`; the store adds
a batch's sums once, under a marker (`CounterStore.add_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from taskqueue.counters import Change, batches, change_of
from taskqueue.observability import logger, metrics

if TYPE_CHECKING:
    from taskqueue.store import CounterStore


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
        written = self.apply(changes)
        metrics.add_metric(name="CounterItemsWritten", unit="Count", value=written)
        return Counted(records=len(changes), counter_items=written)

    def apply(self, changes: list[Change]) -> int:
        """Add the changes to the counters, once; returns the counter items written.

        Each group of changes is one transaction with its marker. A marker already there
        means this batch (or its beginning) was counted by an earlier delivery: the changes
        it covers are skipped and the rest grouped again from the next record on.
        """
        written = 0
        pending = sorted(changes, key=lambda change: change.sequence)
        while pending:
            for batch in batches(pending):
                counted = self.store.add_counts(batch)
                if counted is not None:
                    pending = [c for c in pending if c.sequence > counted]
                    break
                written += len(batch.items)
            else:
                pending = []
        return written
