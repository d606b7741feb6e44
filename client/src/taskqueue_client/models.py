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


class BulkAction(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"


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
class BulkItemResult:
    id: str
    # The action was applied to this task
    ok: bool
    # The task's status after it; None if unknown
    status: TaskStatus | None
    # Why not, when ok is false
    error: ErrorBody | None
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class BulkRequest:
    action: BulkAction
    # Task ids, each once
    ids: list[str]
    # For retry: start over instead of resuming
    restart: bool = False


@dataclass(frozen=True, kw_only=True)
class BulkResult:
    # One per id, in the order given
    results: list[BulkItemResult]
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ChainStep:
    """A task to run after the previous one of its chain succeeded."""

    # A registered task type
    type: str
    # Parameters of the type; the previous step's result location is given to the task as
    # previous_result
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ChainStepView:
    """One step of a chain, as a task's detail shows it."""

    position: int
    type: str
    # The step's task; None while it has not been created
    id: str | None
    # None: not run (yet, or ever: stopped)
    status: TaskStatus | None
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class ChainView:
    """A task's chain: every step, and where it stands or stopped."""

    id: str
    length: int
    # SUCCESS when every step succeeded; FAILED or CANCELLED when a step did (the chain stops
    # there); else PENDING or RUNNING
    status: TaskStatus
    # The position of the step that failed or was cancelled
    stopped_at: int | None
    message: str
    steps: list[ChainStepView]
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


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
class PartView:
    """One part of a parallel task, as its detail shows it (a small progress bar each)."""

    index: int
    status: TaskStatus
    progress: int
    attempts: int
    error: TaskError | None = None
    # Fields the API has that this client was generated without.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, kw_only=True)
class QueueDepth:
    # Messages waiting to be received
    visible: int
    # Received, not yet deleted
    in_flight: int
    # Not visible yet (scheduled, backoff)
    delayed: int
    # A dead-letter queue: its messages failed
    dead_letter: bool
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
    # The caller's tasks by their current status: a task run twice counts once
    counts: StatusCounts
    # Every queue's depth: for operators (Cognito group admin) only, empty for anyone else (the
    # queues hold every owner's work)
    queues: dict[str, QueueDepth]
    # Runs finished per minute over the last hour, oldest first: a task that finished, was
    # retried and finished again counts in both minutes
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
    # Tasks to run one after another once this one succeeds (a chain); a failure or cancel stops
    # the chain there
    then: list[ChainStep] | None = None


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
    # What units_done and units_total count: bytes (shown as KB, MB), or a plural noun such as
    # rows, recipients or images
    progress_unit: str
    # JSON Schema of the params; x-upload, x-sources and x-advanced say how the page's form
    # offers them
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
    # A parallel task: how many parts it was split into (0: none)
    parts_total: int = 0
    # A parallel task: parts finished so far
    parts_done: int = 0
    # A step of a chain: the chain's id (its first task's)
    chain_id: str | None = None
    # A step of a chain: its position, from 1
    chain_position: int = 0
    # A step of a chain: how many steps it has
    chain_length: int = 0
    # A chain's later step: where the previous step's result is
    previous_result: str | None = None
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
    # A parallel task's parts, in order
    parts: list[PartView] = field(default_factory=list)
    # A step of a chain: the chain
    chain: ChainView | None = None


__all__ = [
    "BulkAction",
    "BulkItemResult",
    "BulkRequest",
    "BulkResult",
    "ChainStep",
    "ChainStepView",
    "ChainView",
    "DeadLetterPage",
    "DeadLetterView",
    "ErrorBody",
    "ErrorResponse",
    "OutputLink",
    "PartView",
    "Priority",
    "QueueDepth",
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
