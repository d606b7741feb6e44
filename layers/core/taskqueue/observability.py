"""Powertools logger, metrics and tracer shared by every function."""

from __future__ import annotations

import os
from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer

# The template sets POWERTOOLS_*; the defaults keep tests and one-off scripts working.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "taskqueue")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ServerlessTasks")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


@cache
def get_tracer() -> Tracer:
    """The X-Ray tracer, for the functions that trace: making it imports the X-Ray SDK and
    patches botocore (~30 ms of cold start on Lambda, even with tracing disabled), which the
    API function does without."""
    return Tracer(service=SERVICE)
