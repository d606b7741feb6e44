"""Every exception of the system, in one place.

Two families: the domain errors that the API maps to an HTTP status (one table, in the API
handler), and the error classes of task types, which the engine maps to "FAILED at once" or
"retry with backoff" (like Step Functions' `Retry`/`Catch` by error name, or Temporal's
non-retryable errors). Besides them, the task-type registry's errors: a plugin that cannot be
registered, a deployment's mistake.
"""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------- domain errors (the API)


class TaskQueueError(Exception):
    """Base of the domain errors; the API maps each to a status in one place."""

    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class TaskNotFound(TaskQueueError):
    code = "not_found"


class InvalidTransition(TaskQueueError):
    """The lifecycle has no move for this action from the task's status (a 409)."""

    code = "conflict"


class GuardFailed(InvalidTransition):
    """The lifecycle has moves from the task's status, but their condition (`guard`: not due
    yet, a live lease, ...) refuses the move now."""

    def __init__(self, message: str, details: Any = None, *, guard: Any = None) -> None:
        super().__init__(message, details)
        self.guard = guard


class InvalidRequest(TaskQueueError):
    code = "invalid_request"


class Unauthorized(TaskQueueError):
    code = "unauthorized"


class PayloadTooLarge(TaskQueueError):
    code = "payload_too_large"


class EnqueueFailed(TaskQueueError):
    code = "unavailable"


class QuotaExceeded(TaskQueueError):
    """One of the owner's quotas would be exceeded (a 429): `quota` names it, `retry_after`
    is the number of seconds after which it may admit again."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, quota: str, limit: int, retry_after: int) -> None:
        super().__init__(message, {"quota": quota, "limit": limit, "retry_after": retry_after})
        self.quota = quota
        self.limit = limit
        self.retry_after = retry_after


class TooManyConnections(TaskQueueError):
    """The owner has as many open WebSocket connections as one owner may have."""

    code = "too_many_connections"


class LeaseLost(TaskQueueError):
    """The worker's lease token no longer matches: another worker owns the task."""

    code = "lease_lost"


class TransitionConflict(Exception):
    """A status change's condition failed: the task is no longer in the state it was read in.

    `current` is the task as the refused write found it (None: there is no such task), from
    the same request, so the caller can decide again without reading it.
    """

    def __init__(self, message: str, current: Any = None) -> None:
        super().__init__(message)
        self.current = current


# ---------------------------------------------------------------- task-type errors (the engine)


class TaskTypeFailure(Exception):
    """The engine's wrapper around whatever a task type's own code raised (`cause`), to tell
    it apart from the engine's own AWS errors: that is data (retry or FAILED), not a crash."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class TaskTypeError(Exception):
    """Base of the errors a task type raises on purpose; `code` is what the user sees in
    the task's `error.type`, short and stable so that scripts can act on it."""

    code = "task_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class PermanentError(TaskTypeError):
    """Would fail the same way on every attempt (bad input, a missing object, an unreadable
    format): the task goes FAILED at once, without retries."""

    code = "permanent_error"


class InputNotFound(PermanentError):
    code = "input_not_found"


class UnreadableInput(PermanentError):
    """The input exists but is not in a format the type can read (encoding, binary data)."""

    code = "unreadable_input"


class InvalidInput(PermanentError):
    """The input is readable but its content breaks a rule of the type (too wide, too long)."""

    code = "invalid_input"


class AllItemsFailed(PermanentError):
    """Every item of a task that works item by item failed: not a success of any kind."""

    code = "all_items_failed"


class PartsFailed(PermanentError):
    """A part of a parallel task failed or was cancelled: its parent fails, naming it (a
    retry of the parent runs only the parts that did not succeed)."""

    code = "part_failed"


class ImageRejected(ValueError):
    """An image that cannot be turned into an output (not an image, too many pixels, gone):
    recorded as that item's failure, never fatal to the task."""


class TransientError(TaskTypeError):
    """Worth another try later (throttling, a 5xx): the engine retries with backoff."""

    code = "transient_error"


# ---------------------------------------------------------------- task-type registry (deployment)


class TaskTypeRegistryError(Exception):
    """A task type that cannot be registered: a plugin that fails to import, an object that
    is not a task type. A deployment mistake, not a request's: the message names the plugin."""


class TaskTypeNameClash(TaskTypeRegistryError):
    """Two sources register the same type name (a plugin never replaces a built-in type)."""


# AWS error codes by class: the rules as data. Codes not listed are retried (the safe side:
# a retry costs time, a wrong FAILED loses the task), up to the task's max_attempts.
PERMANENT_AWS_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidParameterValue",
        "InvalidRange",
        "MailFromDomainNotVerifiedException",
        "MessageRejected",
        "NoSuchBucket",
        "NoSuchKey",
        "NotFound",
        "NotFoundException",
        "404",
        "ValidationException",
        "BadRequestException",
        "AccountSuspendedException",
        "SendingPausedException",
    }
)
TRANSIENT_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "LimitExceededException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "500",
        "502",
        "503",
        "504",
    }
)


def aws_error_code(exc: BaseException) -> str | None:
    """The error code of a botocore ClientError (duck-typed: no botocore import here)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying `exc` is pointless: a PermanentError, or an AWS error whose code says
    the request itself is wrong. Everything else is treated as transient."""
    if isinstance(exc, PermanentError):
        return True
    if isinstance(exc, TaskTypeError):
        return False
    code = aws_error_code(exc)
    return code is not None and code in PERMANENT_AWS_CODES and code not in TRANSIENT_AWS_CODES


def is_transient_aws(exc: BaseException) -> bool:
    """An AWS error worth retrying (throttling, timeouts, 5xx)."""
    code = aws_error_code(exc)
    if code in TRANSIENT_AWS_CODES:
        return True
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return isinstance(status, int) and status >= 500


def error_code(exc: BaseException) -> str:
    """What a task's `error.type` says about `exc`."""
    if isinstance(exc, TaskTypeError):
        return exc.code
    return aws_error_code(exc) or type(exc).__name__
