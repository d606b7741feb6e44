"""Counters Lambda: the tasks table's stream -> status counters, a batch at a time, once."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from taskqueue.config import get_settings
from taskqueue.counters import Change, change_of
from taskqueue.observability import get_tracer, logger, metrics
from taskqueue.store import TaskStore

tracer = get_tracer()


@cache
def store() -> TaskStore:
    settings = get_settings()
    return TaskStore(settings.table_name, settings.shard_count, settings.retention_days)


def changes_of(records: list[Any]) -> list[Change]:
    """The records' counter changes; a record that cannot be read is reported and skipped
    (retrying would not make it readable, and it would hold up the stream for 24 h)."""
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


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    records = event.get("Records")
    changes = changes_of(records if isinstance(records, list) else [])
    # An AWS error propagates: Lambda retries the batch, and the markers skip what was counted.
    written = store().apply_changes(changes)
    metrics.add_metric(name="CounterItemsWritten", unit="Count", value=written)
    return {"records": len(changes), "counter_items": written}
