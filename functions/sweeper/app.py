"""Sweeper Lambda, every minute: no task stays PENDING because the API died before its send."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue import wiring
from taskqueue.observability import get_tracer, logger, metrics

tracer = get_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    sent = wiring.sweep()
    if sent:
        logger.warning("sent the messages of tasks whose API call died", sent=sent)
        metrics.add_metric(name="MessagesSwept", unit="Count", value=sent)
    return {"sent": sent}
