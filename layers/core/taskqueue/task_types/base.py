"""The contract every task type implements, and the context the engine hands it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from taskqueue.errors import TaskTypeFailure
from taskqueue.models import ChunkState, TaskResult

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sesv2 import SESV2Client


class Upload(StrEnum):
    """What a params field names among the caller's uploads. A type lists such fields in an
    optional `uploads` mapping (field name -> Upload), and the API checks at submit that the
    upload is there, with one listing of at most one key."""

    FILE = "file"  # one uploaded object: the key itself
    FOLDER = "folder"  # a folder holding at least one object


@dataclass
class TaskContext:
    """What a running task may use: its identity, its bucket and lazily made clients."""

    task_id: str
    owner: str
    bucket: str
    email_sender: str = "noreply@example.com"
    email_rate_per_second: float = 10.0
    # How many worker processes may send email at once: each keeps to its share of the
    # account's SES rate (the worker's maximum concurrency, every queue together).
    email_max_concurrency: int = 280
    # Lambda's memory size: what the task types' per-item limits (image pixels) derive from.
    memory_mb: int = 1024
    # A chain's later step: where the previous step's result is (an s3:// URI), if it has one.
    previous_result: str | None = None
    clients: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def s3(self) -> S3Client:
        return self.clients.get("s3") or _client("s3")

    @cached_property
    def sesv2(self) -> SESV2Client:
        return self.clients.get("sesv2") or _client("sesv2")

    @property
    def results_prefix(self) -> str:
        return f"results/{self.owner}/{self.task_id}/"

    @property
    def uploads_prefix(self) -> str:
        from taskqueue.task_types._s3 import uploads_prefix

        return uploads_prefix(self.owner)


T = TypeVar("T")


def guarded(call: Callable[[], T]) -> T:
    """Run task-type code, marking its exceptions apart from the engine's own."""
    try:
        return call()
    except Exception as exc:
        raise TaskTypeFailure(exc) from exc


@dataclass(frozen=True)
class Submitter:
    """Who submits a task, as a type's optional admission check (`admit`) sees them."""

    owner: str
    verified_email: str | None = None  # the sign-in's own address, when verified
    # The operator's allow-list of EMAIL recipients: domains and whole addresses.
    allowed_recipients: tuple[str, ...] = ()


def _client(service: str) -> Any:
    from taskqueue.aws import client

    return client(service)


class TaskType(Protocol):
    name: str
    description: str
    # What units_done / units_total count, as the page shows them: "bytes" or a plural noun.
    progress_unit: str
    params_model: type[BaseModel]

    def start(self, params: Any, ctx: TaskContext) -> ChunkState: ...

    def run_chunk(self, params: Any, state: ChunkState, ctx: TaskContext) -> ChunkState: ...

    def finish(self, params: Any, state: ChunkState, ctx: TaskContext) -> TaskResult: ...


@dataclass(frozen=True)
class Plan:
    """A task's input split into parts: each part's first state, and how many may run at
    once (each part that finishes starts the next of its lane: parts i, i + n, i + 2n...).

    `start_after` (optional, seconds from the plan, by part) holds back a lane's first part
    until it may do its first work (EMAIL: its first slot in the task's timetable), so its
    first invocation works instead of handing over; empty: every lane starts at once."""

    parts: list[ChunkState]
    max_parallel: int
    start_after: tuple[float, ...] = ()

    def delay_of(self, index: int) -> float:
        """Seconds part `index` waits before its first invocation (0: none planned)."""
        return self.start_after[index] if index < len(self.start_after) else 0.0


class Splits(Protocol):
    """What a task type that runs in parallel parts adds to TaskType.

    `plan` is asked after the start and after every chunk of the whole task (a type may
    prepare its input first): None keeps the task running whole, a Plan splits it. Each part
    then runs `run_chunk` from its planned state and ends with `finish_part` (a small result,
    kept on the part's item). When every part has finished, `verify` names the parts whose
    results cannot be merged exactly (a start guessed wrong, a column read for a type the
    whole file does not prove), with the state to run them again from (none: the parts are
    exact), and `merge` makes the task's result of the parts' results, in part order.
    """

    def plan(self, params: Any, state: ChunkState, ctx: TaskContext) -> Plan | None: ...

    def finish_part(self, params: Any, state: ChunkState, ctx: TaskContext) -> TaskResult: ...

    def verify(
        self, params: Any, results: list[dict[str, Any]], ctx: TaskContext
    ) -> dict[int, ChunkState]: ...

    def merge(
        self, params: Any, state: ChunkState, results: list[dict[str, Any]], ctx: TaskContext
    ) -> TaskResult: ...


def splits(task_type: TaskType) -> Splits | None:
    """The type as one that splits into parts, or None when it runs whole only."""
    return task_type if hasattr(task_type, "plan") else None  # type: ignore[return-value]


# A type may also define `admit(params, submitter) -> None`: raise InvalidRequest to refuse a
# submit (what the submitter may not ask for). Optional, so that plugins written before it
# keep working.
ADMIT = "admit"
# And `quota_usage(params) -> {Quota: amount}`: what a task takes of the owner's quotas counted
# in amounts (EMAIL: its recipients a day), checked at the submit when quotas are on.
QUOTA_USAGE = "quota_usage"
