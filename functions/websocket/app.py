"""WebSocket API Lambda: $connect, $disconnect and $default (ping), thin; see taskqueue.live."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue import wiring
from taskqueue.live import handle
from taskqueue.observability import get_tracer, logger, metrics

tracer = get_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = handle(event, wiring.connections())
    logger.info(
        "websocket route",
        route=(event.get("requestContext") or {}).get("routeKey"),
        status=answer["statusCode"],
    )
    return answer
