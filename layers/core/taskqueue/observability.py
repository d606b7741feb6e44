"""Powertools logger, metrics and tracer shared by every function."""

from __future__ import annotations

from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer

from taskqueue.config import Telemetry

# The template sets POWERTOOLS_*; the defaults keep tests and one-off scripts working.
TELEMETRY = Telemetry.from_env()
SERVICE = TELEMETRY.powertools_service_name

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=TELEMETRY.powertools_metrics_namespace, service=SERVICE)


@cache
def get_tracer() -> Tracer:
    """The X-Ray tracer, for the functions that trace: making it imports the X-Ray SDK and
    patches botocore (~30 ms of cold start on Lambda, even with tracing disabled), which the
    API function does without."""
    return Tracer(service=SERVICE)
