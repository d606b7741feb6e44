"""Python client of the serverless tasks API: submit, watch, cancel and retry background tasks.

Usage (three lines)::

    from taskqueue_client import Client
    client = Client("https://api.example.com", token="eyJ...")
    task = client.submit("DATA_PROCESSING", {"rows": 10_000}).wait(timeout=120)
"""

from taskqueue_client._http import RetryPolicy
from taskqueue_client._version import __version__
from taskqueue_client.client import ROUTES, Client, Task
from taskqueue_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    DecodeError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TaskFailed,
    TaskQueueClientError,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    WaitTimeout,
)
from taskqueue_client.models import Priority, TaskStatus

__all__ = [
    "ROUTES",
    "ApiError",
    "BadRequest",
    "Client",
    "Conflict",
    "DecodeError",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "Priority",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Task",
    "TaskFailed",
    "TaskQueueClientError",
    "TaskStatus",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "WaitTimeout",
    "__version__",
]
