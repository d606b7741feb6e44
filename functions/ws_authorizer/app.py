"""WebSocket authorizer Lambda: $connect is allowed with the same Cognito tokens as the HTTP API.

The token comes as the query parameter `token`; the verifier (and its cached JWKS) lives as
long as the execution environment, so the key set is fetched once per cold start.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskqueue import wiring
from taskqueue.observability import get_tracer, logger, metrics
from taskqueue.tokens import authorize

tracer = get_tracer()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer, refused = authorize(event, wiring.token_verifier())
    if refused:
        logger.info("connection refused", reason=refused)
        metrics.add_metric(name="WebSocketConnectsRefused", unit="Count", value=1)
    return answer
