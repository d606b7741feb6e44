"""SQS Lambda: Powertools BatchProcessor -> taskqueue.engine, one record at a time."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue import wiring
from taskqueue.dispatch import parse_message
from taskqueue.observability import get_tracer, logger, metrics

tracer = get_tracer()

# Report every failed record, even when all fail, instead of failing the whole invocation.
processor = BatchProcessor(
    event_type=EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False
)


def time_slice(lambda_context: LambdaContext) -> Callable[[], int]:
    """This record's time: one quantum while records of its batch wait behind it, else the
    rest of the invocation (see Engine.time_slice)."""
    handled = len(processor.success_messages) + len(processor.fail_messages)
    others_waiting = len(processor.records) - handled > 1
    return wiring.engine().time_slice(lambda_context.get_remaining_time_in_millis, others_waiting)


@tracer.capture_method
def record_handler(record: SqsRecordModel, lambda_context: LambdaContext) -> str:
    """A malformed body raises, so the record is a batch item failure and reaches the DLQ."""
    message = parse_message(record.body)
    outcome = wiring.engine().process(message, time_slice(lambda_context), record.messageId)
    logger.info("task message processed", task_id=message.task_id, outcome=outcome.value)
    return outcome.value


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
