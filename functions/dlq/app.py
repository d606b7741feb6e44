"""DLQ Lambda: a task whose messages died is marked FAILED, so nothing waits forever."""

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from taskqueue import wiring
from taskqueue.dispatch import parse_message
from taskqueue.observability import get_tracer, logger, metrics

tracer = get_tracer()

# Report every failed record, even when all fail, instead of failing the whole invocation.
processor = BatchProcessor(
    event_type=EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False
)


def record_handler(record: SqsRecordModel) -> str:
    try:
        message = parse_message(record.body)
    except ValidationError:
        # Nothing to mark: the body names no task. Acknowledge it so the DLQ drains.
        logger.error("dead letter without a task id", body=str(record.body)[:500])
        return "malformed"
    failed = wiring.service().dead_letter(
        message.task_id,
        message_id=record.messageId,
        queue=record.eventSourceARN.rsplit(":", 1)[-1],
        receive_count=int(record.attributes.ApproximateReceiveCount),
        generation=message.generation,
    )
    if failed:
        metrics.add_metric(name="TasksDeadLettered", unit="Count", value=1)
    # Not failed: the task finished already, or this is not its current message (a stale
    # one, or a dead copy of the message a live worker runs).
    return "failed" if failed else "not current"


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
