"""Counters Lambda: the tasks table's stream -> status counters, a batch at a time, once."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue import wiring
from taskqueue.observability import get_tracer, logger, metrics

tracer = get_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    records = event.get("Records")
    counted = wiring.stream_counter().count(records if isinstance(records, list) else [])
    return {"records": counted.records, "counter_items": counted.counter_items}
