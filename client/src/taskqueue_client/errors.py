"""Exceptions of the client: one base class, API errors by HTTP status, carrying the API's code.

The API answers errors as `{"error": {"code", "message", "details"}}`; API Gateway's own answers
(`{"message": "Unauthorized"}`) and S3's XML errors get a code too, so `except NotFound` and
`error.code == "not_found"` work whichever layer refused the request.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskqueue_client.client import Task


class TaskQueueClientError(Exception):
    """Base of every exception this package raises."""


class ApiError(TaskQueueClientError):
    """The API (or API Gateway, or S3 for a presigned URL) refused the request."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        self.url = url
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400: malformed JSON or cursor."""


class Unauthorized(ApiError):
    """401: no token, or one the API does not accept (expired: sign in again)."""


class Forbidden(ApiError):
    """403: the token does not allow this (or a presigned URL expired)."""


class NotFound(ApiError):
    """404: no such task for this caller, or no such route."""


class Conflict(ApiError):
    """409: the task's state does not allow it (cancel a finished task, retry a running one)."""


class PayloadTooLarge(ApiError):
    """413: the request body is larger than the API takes."""


class UnsupportedMediaType(ApiError):
    """415: the body was not sent as JSON."""


class ValidationFailed(ApiError):
    """422: the request is not valid; `details` lists each field (`loc`, `msg`, `type`)."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says how long the API asked to wait."""


class ServiceUnavailable(ApiError):
    """503: the task queue is unavailable; the client retried and gave up."""


class ServerError(ApiError):
    """5xx other than 503: a fault on the server's side."""


# Status -> (exception class, code when the body names none), as data; codes agree with the
# API's own where it has one. Any other 4xx is an ApiError, any other 5xx a ServerError.
ERRORS: dict[int, tuple[type[ApiError], str]] = {
    400: (BadRequest, "bad_request"),
    401: (Unauthorized, "unauthorized"),
    403: (Forbidden, "forbidden"),
    404: (NotFound, "not_found"),
    409: (Conflict, "conflict"),
    413: (PayloadTooLarge, "payload_too_large"),
    415: (UnsupportedMediaType, "unsupported_media_type"),
    422: (ValidationFailed, "validation_error"),
    429: (RateLimited, "too_many_requests"),
    503: (ServiceUnavailable, "unavailable"),
}


class TransportError(TaskQueueClientError):
    """The request did not get an answer (connection refused, timed out) after the retries."""


class DecodeError(TaskQueueClientError):
    """An answer does not match the models this client was generated from."""

    def __init__(self, path: str, expected: str, got: Any) -> None:
        super().__init__(f"{path}: expected {expected}, got {got!r}"[:500])
        self.path = path
        self.expected = expected
        self.got = got


class WaitTimeout(TaskQueueClientError, TimeoutError):
    """`wait` ran out of time; `task` is the last state seen."""

    def __init__(self, task: Task, timeout: float) -> None:
        super().__init__(f"task {task.id} is still {task.status} after {timeout:g} s")
        self.task = task
        self.timeout = timeout


class TaskFailed(TaskQueueClientError):
    """`raise_for_failure` on a task that ended FAILED or CANCELLED; `task` is that task."""

    def __init__(self, task: Task) -> None:
        error = task.view.error
        reason = f": {error.type}: {error.message}" if error else ""
        super().__init__(f"task {task.id} is {task.status}{reason}")
        self.task = task


def api_error(
    status: int,
    body: bytes,
    *,
    method: str = "",
    url: str = "",
    retry_after: float | None = None,
) -> ApiError:
    """The exception for an error answer, with the code the body gives (or one for its status)."""
    cls, code = ERRORS.get(status) or (ServerError if status >= 500 else ApiError, f"http_{status}")
    message, details = "", None
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        details = error.get("details")
    elif isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        message = parsed["message"]  # API Gateway's own answers
    elif text.startswith("<"):
        # S3 answers a presigned URL's errors in XML: <Error><Code>..</Code><Message>..
        found_code = re.search(r"<Code>([^<]*)</Code>", text)
        found_message = re.search(r"<Message>([^<]*)</Message>", text)
        code = found_code.group(1) if found_code else code
        message = found_message.group(1) if found_message else ""
    else:
        message = text[:300]
    return cls(
        status,
        code,
        message or f"HTTP {status}",
        details,
        method=method,
        url=url,
        retry_after=retry_after,
    )
