"""Push Lambda: the tasks table's stream -> each owner's open pages, over the WebSocket API.

Best effort by design: a post that fails is counted and logged, not retried by failing the
batch (the other owners' messages went out, and a page catches up when it reconnects or
polls). Only an error reading the connections fails the invocation; the event source
mapping then retries the batch a few times while its records are fresh.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue import wiring
from taskqueue.observability import get_tracer, logger, metrics
from taskqueue.push import messages_of, updates_of

tracer = get_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    records = event.get("Records")
    updates = updates_of(records if isinstance(records, list) else [])
    report = wiring.pusher().push(messages_of(updates))
    metrics.add_metric(name="PushMessagesSent", unit="Count", value=report.sent)
    if report.gone:
        metrics.add_metric(name="PushConnectionsGone", unit="Count", value=report.gone)
    if report.failed:
        metrics.add_metric(name="PushPostsFailed", unit="Count", value=sum(report.failed.values()))
    logger.debug("pushed", updates=len(updates), **report.as_dict())
    return {"updates": len(updates), **report.as_dict()}
