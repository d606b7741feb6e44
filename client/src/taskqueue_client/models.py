"""Models of the tasks API, generated from its OpenAPI document: do not edit.

Regenerate with `python client/tools/generate_models.py` after the API's models change (a test
fails until this file matches the document). Responses keep fields this client does not know
yet in `extra`, so an API that gained a field still decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal


class Priority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, kw_only=True)
class DeadLetterPage:
    items: list[DeadLetterView]
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class DeadLetterView:
    id: str
    task_id: str
    task_type: str
    queue: str
    reason: str
    receive_count: int
    dead_at: datetime
    task_status: TaskStatus | None = None
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ErrorBody:
    code: str
    message: str
    details: Any = None
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ErrorResponse:
    error: ErrorBody
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class OutputLink:
    key: str
    url: str
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class RedriveResult:
    redriven: int
    skipped: int
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class RetryTaskRequest:
    # Start over instead of resuming
    restart: bool = False


@dataclass(frozen=True, kw_only=True)
class Stats:
    counts: StatusCounts
    queues: dict[str, dict[str, int]]
    throughput: list[ThroughputPoint]
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class StatusCounts:
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_status_type: dict[str, dict[str, int]]
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class SubmitTaskRequest:
    # A registered task type
    type: str
    # Parameters of the type
    params: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    # Start no earlier than this time
    run_at: datetime | None = None
    # Start after this many seconds
    delay_seconds: int | None = None
    max_attempts: int | None = None
    # Fail the task if it runs longer than this from its start
    timeout_seconds: int | None = None


@dataclass(frozen=True, kw_only=True)
class TaskError:
    type: str
    message: str
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TaskEvent:
    time: datetime
    level: Literal["INFO", "WARNING", "ERROR"] = "INFO"
    message: str
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TaskPage:
    items: list[TaskView]
    next_cursor: str | None
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TaskTypeInfo:
    name: str
    description: str
    params_schema: dict[str, Any]
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TaskView:
    """A task as the API shows it to its owner."""

    id: str
    type: str
    status: TaskStatus
    priority: Priority
    params: dict[str, Any]
    progress: int
    units_done: int
    units_total: int
    attempts: int
    max_attempts: int
    timeout_seconds: int | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_at: datetime | None
    duration_seconds: float | None
    error: TaskError | None
    result: dict[str, Any] | None
    result_location: str | None
    outputs: list[str]
    # Items (recipients, images) that failed in a SUCCESS: warnings
    failed_items: int = 0
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ThroughputPoint:
    minute: str
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class UploadRequest:
    filename: str
    content_type: Literal["text/csv", "image/png", "image/jpeg", "image/webp", "image/gif"]
    size: int
    prefix: str | None = None


@dataclass(frozen=True, kw_only=True)
class UploadTicket:
    key: str
    prefix: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_in: int
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class TaskDetail(TaskView):
    events: list[TaskEvent] = field(default_factory=list)
    # Older events exist: pass this as events_before for the page before them
    events_cursor: str | None = None
    downloads: list[OutputLink] = field(default_factory=list)


__all__ = [
    "DeadLetterPage",
    "DeadLetterView",
    "ErrorBody",
    "ErrorResponse",
    "OutputLink",
    "Priority",
    "RedriveResult",
    "RetryTaskRequest",
    "Stats",
    "StatusCounts",
    "SubmitTaskRequest",
    "TaskDetail",
    "TaskError",
    "TaskEvent",
    "TaskPage",
    "TaskStatus",
    "TaskTypeInfo",
    "TaskView",
    "ThroughputPoint",
    "UploadRequest",
    "UploadTicket",
]
