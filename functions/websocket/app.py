"""WebSocket API Lambda: $connect, $disconnect and $default (ping), thin; see taskqueue.live."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue.config import get_settings
from taskqueue.connections import ConnectionStore
from taskqueue.live import handle
from taskqueue.observability import get_tracer, logger, metrics

tracer = get_tracer()


@cache
def connections() -> ConnectionStore:
    return ConnectionStore(get_settings().table_name)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = handle(event, connections())
    logger.info(
        "websocket route",
        route=(event.get("requestContext") or {}).get("routeKey"),
        status=answer["statusCode"],
    )
    return answer
