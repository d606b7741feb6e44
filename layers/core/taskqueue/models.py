"""Pydantic models by role: the domain task, requests, responses, messages and errors."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_DELAY_SECONDS = 365 * 24 * 3600
# An event's key, as `GET /tasks/{id}` hands it out (`events_cursor`) and takes it back.
EVENT_KEY_PATTERN = r"^EVENT#[0-9T:.Z-]{1,32}#[0-9]{1,12}$"


class Model(BaseModel):
    """Base of these models: each builds its validator at first use, so a cold start builds
    only the models its first request needs, not every response and request of the API."""

    model_config = ConfigDict(defer_build=True)


def validation_details(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    """A model's validation errors as the API's error details, located under `prefix`."""
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Priority(StrEnum):
    NORMAL = "normal"
    HIGH = "high"


def _iso_only(value: Any) -> Any:
    """Refuse numbers: pydantic would read them as Unix times, the API promises ISO 8601."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-24T09:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """An aware time in UTC (naive ones stay naive: each field says what they mean). Year 1
    at +14:00 or year 9999 at -12:00 has no UTC datetime: a 422, not an overflow later."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("out of range once converted to UTC (years 1 to 9999)") from exc


_NUMBER = re.compile(r"^\s*[-+]?\d+(\.\d*)?\s*$")
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_utc)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so that strings sort as times do (strftime's `%Y` would
    write year 999 as "999", which sorts after "2026")."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def parse_optional_time(text: str | None) -> datetime | None:
    """A stored time that may be absent (or empty)."""
    return parse_time(text) if text else None


# ---------------------------------------------------------------- chunk engine contract


class ChunkState(Model):
    """What a task type checkpoints after every chunk; must stay a few KB."""

    units_total: int = Field(ge=0)
    units_done: int = Field(default=0, ge=0)
    cursor: Any = None
    data: dict[str, Any] = Field(default_factory=dict)
    done: bool = False
    # Pacing by scheduling, not sleeping: the next chunk must not start before this time. The
    # engine checkpoints and hands over through a continuation message delayed until then.
    resume_at: datetime | None = None
    # The engine's own, written after every chunk whatever the type returned: the task's
    # chunk time (an exponentially weighted mean, ms), so that an invocation starts a chunk
    # only with that much time left; and whether the last invocation handed over without
    # running one for want of time (the next one runs a chunk anyway: no endless hand-overs).
    chunk_ms: int | None = Field(default=None, ge=0)
    deferred: bool = False

    @property
    def progress(self) -> int:
        if self.done:
            return 100
        if self.units_total <= 0:
            return 0
        return min(99, self.units_done * 100 // self.units_total)


class TaskResult(Model):
    summary: dict[str, Any] = Field(default_factory=dict)
    location: str | None = None
    outputs: list[str] = Field(default_factory=list)
    # Types that work item by item (recipients, images) say how many items there were and how
    # many failed: some failed is a SUCCESS with warnings; all failed is FAILED.
    total_items: int = Field(default=0, ge=0)
    failed_items: int = Field(default=0, ge=0)


class TaskError(Model):
    type: str
    message: str


class TaskEvent(Model):
    time: datetime
    level: Literal["INFO", "WARNING", "ERROR"] = "INFO"
    message: str


# ---------------------------------------------------------------- the domain task

# A part of a parallel task is a task of its own whose id is its parent's and its index:
# "<parent id>.<n>". It is claimed, checkpointed, leased and retried like any task.
MAX_PARTS = 1000
PART_ID_PATTERN = r"^[0-9a-f]{32}(\.[0-9]{1,4})?$"
_PART_ID = re.compile(r"^([0-9a-f]{32})\.([0-9]{1,4})$")


def part_id(parent_id: str, index: int) -> str:
    return f"{parent_id}.{index}"


def parse_part_id(task_id: str) -> tuple[str, int] | None:
    """(parent id, index) of a part's id; None for a task that is not a part."""
    found = _PART_ID.match(task_id)
    return (found.group(1), int(found.group(2))) if found else None


# A chain: a submit's `then` names up to MAX_CHAIN_STEPS tasks to run one after another once
# it succeeds. Each step is a task of its own, created when its predecessor succeeds, with an
# id derived from the predecessor's (so a repeated hand-off finds the step it created).
MAX_CHAIN_STEPS = 5


def successor_id(task_id: str) -> str:
    """The id of the chain step that follows task `task_id` (an id like any task's)."""
    return hashlib.sha256(f"{task_id}/then".encode()).hexdigest()[:32]


class ChainStep(Model):
    """A task to run after the previous one of its chain succeeded."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=64, description="A registered task type")]
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameters of the type; the previous step's result location is given to "
        "the task as previous_result",
    )


class Task(Model):
    task_id: str
    owner: str
    task_type: str
    params: dict[str, Any]
    status: TaskStatus
    priority: Priority = Priority.NORMAL
    progress: int = Field(default=0, ge=0, le=100)
    units_done: int = 0
    units_total: int = 0
    attempts: int = 0
    max_attempts: int = 3
    cancel_requested: bool = False
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    run_at: datetime | None = None
    error: TaskError | None = None
    result: dict[str, Any] | None = None
    result_location: str | None = None
    outputs: list[str] = Field(default_factory=list)
    failed_items: int = 0
    state: ChunkState | None = None
    lease_token: str | None = None
    lease_expires_at: int = 0
    expires_at: int | None = None
    timeout_seconds: int | None = None
    retried_at: datetime | None = None
    enqueued_at: datetime | None = None
    # A parallel task (a parent): how many parts it planned, and which have finished (their
    # indexes, counted by conditional writes: each part once), how many of those failed.
    parts_total: int = 0
    parts_in: list[int] = Field(default_factory=list)
    parts_failed: int = 0
    # A step of a chain: the chain's id (its first task's), this step's position (1-based)
    # and the chain's length; the steps still to come (validated at submit); the previous
    # step's id and its result's location (None: an inline result only).
    chain_id: str | None = None
    chain_position: int = 0
    chain_length: int = 0
    chain_next: list[ChainStep] = Field(default_factory=list)
    chain_previous: str | None = None
    previous_result: str | None = None
    # The owner's quota shard holding this task's slot while it is not finished (None: it
    # took none: a part, a chain's later step, or a task from before quotas).
    quota_shard: int | None = None

    @property
    def part(self) -> tuple[str, int] | None:
        """(parent id, index) when this task is a part of a parallel task."""
        return parse_part_id(self.task_id)

    @property
    def parts_done(self) -> int:
        return len(self.parts_in)

    # The token of the message that drives the task now (see TaskMessage.generation).
    generation: str | None = None

    @property
    def awaiting_first_claim(self) -> bool:
        """PENDING and never claimed since it was submitted or retried: its message may be
        re-sent safely (a duplicate loses the claim), which makes submit and retry repeatable."""
        return self.status == TaskStatus.PENDING and self.attempts == 0

    def timed_out(self, now: datetime) -> bool:
        return bool(
            self.timeout_seconds
            and self.started_at
            and (now - self.started_at).total_seconds() > self.timeout_seconds
        )


# ---------------------------------------------------------------- requests


class SubmitTaskRequest(Model):
    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=64, description="A registered task type")]
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the type")
    priority: Priority = Priority.NORMAL
    run_at: IsoDateTime | None = Field(default=None, description="Start no earlier than this time")
    delay_seconds: Annotated[int, Field(ge=0, le=MAX_DELAY_SECONDS)] | None = Field(
        default=None, description="Start after this many seconds"
    )
    max_attempts: Annotated[int, Field(ge=1, le=10)] | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] | None = Field(
        default=None, description="Fail the task if it runs longer than this from its start"
    )
    then: Annotated[list[ChainStep], Field(max_length=MAX_CHAIN_STEPS)] | None = Field(
        default=None,
        description="Tasks to run one after another once this one succeeds (a chain); a "
        "failure or cancel stops the chain there",
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> SubmitTaskRequest:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at needs a time zone, e.g. 2026-11-24T09:00:00Z")
        return self


class RetryTaskRequest(Model):
    model_config = ConfigDict(extra="forbid")

    restart: bool = Field(default=False, description="Start over instead of resuming")


TaskIdPrefix = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{8,32}$",
        description="The first 8 or more characters of a task id (the short id the page shows)",
    ),
]


class ListTasksQuery(Model):
    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    type: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    created_after: IsoDateTime | None = None
    created_before: IsoDateTime | None = None
    id_prefix: TaskIdPrefix | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=4096)] | None = None

    @field_validator("created_after", "created_before")
    @classmethod
    def _naive_is_utc(cls, value: datetime | None) -> datetime | None:
        """A bound without a time zone is read as UTC, the zone of every stored time."""
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @model_validator(mode="after")
    def _prefix_alone(self) -> ListTasksQuery:
        others = (self.status, self.type, self.created_after, self.created_before, self.cursor)
        if self.id_prefix is not None and any(v is not None for v in others):
            raise ValueError("id_prefix finds tasks by id alone: give it without other filters")
        return self


MAX_BULK_TASKS = 50


class BulkAction(StrEnum):
    CANCEL = "cancel"
    RETRY = "retry"


class BulkRequest(Model):
    model_config = ConfigDict(extra="forbid")

    action: BulkAction
    ids: Annotated[
        list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]],
        Field(min_length=1, max_length=MAX_BULK_TASKS),
    ] = Field(description="Task ids, each once")
    # Strict: 0 or "no" is not a boolean here (every task of the request would be affected).
    restart: StrictBool = Field(
        default=False, description="For retry: start over instead of resuming"
    )

    @model_validator(mode="after")
    def _each_once(self) -> BulkRequest:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("each task id may appear once")
        return self


class UploadRequest(Model):
    model_config = ConfigDict(extra="forbid")

    filename: Annotated[
        str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    ]
    content_type: Literal["text/csv", "image/png", "image/jpeg", "image/webp", "image/gif"]
    size: Annotated[int, Field(ge=1, le=100 * 1024 * 1024)]
    prefix: (
        Annotated[
            str,
            Field(
                pattern=r"^uploads/[^/]+/[0-9a-f]{32}/$",
                description="Put this file beside earlier ones: the folder of an earlier ticket",
            ),
        ]
        | None
    ) = None


def new_generation() -> str:
    """A fresh message generation: 64 random bits, as hex."""
    return secrets.token_hex(8)


def next_generation(generation: str | None, message_id: str | None) -> str:
    """The generation a schedule hop of this delivery hands on. Derived from the SQS message
    id, so a redelivery of the same message (its worker died after the hop's write) writes
    the same token again and re-sends the hop, while a second copy of the message (another
    id) finds the token moved and drops itself; random without an id."""
    if message_id is None:
        return new_generation()
    return hashlib.sha256(f"{generation}:{message_id}".encode()).hexdigest()[:16]


class TaskMessage(Model):
    """The body of every SQS task message.

    Besides the task's id, what its sender knew, so that the worker claims the task in one
    conditional write without reading it first: its owner and type (the claim's condition
    checks them, since the status index keys derive from them) and whether it continues a run
    handed over (RUNNING, lease released) rather than starts one (PENDING). A message without
    them (sent before they existed) costs the worker a read first.

    `generation` is the token the sender wrote on the task item with this message (submit,
    retry, retry wait, continuation, schedule hop): the DLQ handler fails a task only for its
    current message, and only the current message may hop. Absent on older messages, which
    then match any generation, as before generations existed.
    """

    task_id: Annotated[str, Field(min_length=1, max_length=64, pattern=PART_ID_PATTERN)]
    owner: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    task_type: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    resume: bool = False
    generation: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None

    @classmethod
    def of(cls, task: Task, *, resume: bool = False, generation: str | None = None) -> TaskMessage:
        return cls(
            task_id=task.task_id,
            owner=task.owner,
            task_type=task.task_type,
            resume=resume,
            generation=generation or task.generation,
        )


# ---------------------------------------------------------------- responses


class TaskView(Model):
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
    failed_items: int = Field(
        default=0, description="Items (recipients, images) that failed in a SUCCESS: warnings"
    )
    parts_total: int = Field(
        default=0, description="A parallel task: how many parts it was split into (0: none)"
    )
    parts_done: int = Field(default=0, description="A parallel task: parts finished so far")
    chain_id: str | None = Field(
        default=None, description="A step of a chain: the chain's id (its first task's)"
    )
    chain_position: int = Field(default=0, description="A step of a chain: its position, from 1")
    chain_length: int = Field(default=0, description="A step of a chain: how many steps it has")
    previous_result: str | None = Field(
        default=None, description="A chain's later step: where the previous step's result is"
    )

    @classmethod
    def of(cls, task: Task) -> TaskView:
        end = task.finished_at or (utcnow() if task.started_at else None)
        duration = (end - task.started_at).total_seconds() if end and task.started_at else None
        return cls(
            id=task.task_id,
            type=task.task_type,
            status=task.status,
            priority=task.priority,
            params=task.params,
            progress=task.progress,
            units_done=task.units_done,
            units_total=task.units_total,
            attempts=task.attempts,
            max_attempts=task.max_attempts,
            timeout_seconds=task.timeout_seconds,
            cancel_requested=task.cancel_requested,
            created_at=task.created_at,
            updated_at=task.updated_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            run_at=task.run_at,
            duration_seconds=duration,
            error=task.error,
            result=task.result,
            result_location=task.result_location,
            outputs=task.outputs,
            failed_items=task.failed_items,
            parts_total=task.parts_total,
            parts_done=task.parts_done,
            chain_id=task.chain_id,
            chain_position=task.chain_position,
            chain_length=task.chain_length,
            previous_result=task.previous_result,
        )


class OutputLink(Model):
    key: str
    url: str


class PartView(Model):
    """One part of a parallel task, as its detail shows it (a small progress bar each)."""

    index: int
    status: TaskStatus
    progress: int
    attempts: int
    error: TaskError | None = None


class ChainStepView(Model):
    """One step of a chain, as a task's detail shows it."""

    position: int
    type: str
    id: str | None = Field(description="The step's task; None while it has not been created")
    status: TaskStatus | None = Field(description="None: not run (yet, or ever: stopped)")


class ChainView(Model):
    """A task's chain: every step, and where it stands or stopped."""

    id: str
    length: int
    status: TaskStatus = Field(
        description="SUCCESS when every step succeeded; FAILED or CANCELLED when a step did "
        "(the chain stops there); else PENDING or RUNNING"
    )
    stopped_at: int | None = Field(
        description="The position of the step that failed or was cancelled"
    )
    message: str
    steps: list[ChainStepView]


class TaskDetail(TaskView):
    events: list[TaskEvent] = Field(default_factory=list)
    events_cursor: str | None = Field(
        default=None,
        description="Older events exist: pass this as events_before for the page before them",
    )
    downloads: list[OutputLink] = Field(default_factory=list)
    parts: list[PartView] = Field(
        default_factory=list, description="A parallel task's parts, in order"
    )
    chain: ChainView | None = Field(default=None, description="A step of a chain: the chain")


class TaskPage(Model):
    items: list[TaskView]
    next_cursor: str | None


# A task type's progress unit: lower-case letters (the registry checks a plugin's at load).
PROGRESS_UNIT_PATTERN = r"^[a-z]+$"
MAX_PROGRESS_UNIT_CHARS = 32
ProgressUnit = Annotated[
    str,
    Field(
        pattern=PROGRESS_UNIT_PATTERN,
        max_length=MAX_PROGRESS_UNIT_CHARS,
        description="What units_done and units_total count: bytes (shown as KB, MB), or a "
        "plural noun such as rows, recipients or images",
    ),
]


class TaskTypeInfo(Model):
    name: str
    description: str
    progress_unit: ProgressUnit
    params_schema: dict[str, Any] = Field(
        description="JSON Schema of the params; x-upload, x-sources and x-advanced say how the "
        "page's form offers them"
    )


class UploadTicket(Model):
    key: str
    prefix: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_in: int


class ErrorBody(Model):
    code: str
    message: str
    details: Any = None


class ErrorResponse(Model):
    error: ErrorBody


class StatusCounts(Model):
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_status_type: dict[str, dict[str, int]]


class ThroughputPoint(Model):
    minute: str
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class QueueDepth(Model):
    visible: int = Field(description="Messages waiting to be received")
    in_flight: int = Field(description="Received, not yet deleted")
    delayed: int = Field(description="Not visible yet (scheduled, backoff)")
    dead_letter: bool = Field(description="A dead-letter queue: its messages failed")


class Stats(Model):
    counts: StatusCounts = Field(
        description="The caller's tasks by their current status: a task run twice counts once"
    )
    queues: dict[str, QueueDepth] = Field(
        description="Every queue's depth: for operators (Cognito group admin) only, empty "
        "for anyone else (the queues hold every owner's work)"
    )
    throughput: list[ThroughputPoint] = Field(
        description="Runs finished per minute over the last hour, oldest first: a task that "
        "finished, was retried and finished again counts in both minutes"
    )


class DeadLetter(Model):
    """A task message that died in a DLQ, as its owner's record keeps it."""

    id: str
    task_id: str
    task_type: str
    queue: str
    reason: str
    receive_count: int
    dead_at: datetime


class DeadLetterView(DeadLetter):
    task_status: TaskStatus | None = None


class DeadLetterPage(Model):
    items: list[DeadLetterView]


class BulkItemResult(Model):
    id: str
    ok: bool = Field(description="The action was applied to this task")
    status: TaskStatus | None = Field(description="The task's status after it; None if unknown")
    error: ErrorBody | None = Field(description="Why not, when ok is false")


class BulkResult(Model):
    results: list[BulkItemResult] = Field(description="One per id, in the order given")


class RedriveResult(Model):
    redriven: int
    skipped: int
