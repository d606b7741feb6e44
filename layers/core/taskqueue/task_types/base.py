"""The contract every task type implements, and the context the engine hands it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from taskqueue.models import ChunkState, TaskResult

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sesv2 import SESV2Client


@dataclass
class TaskContext:
    """What a running task may use: its identity, its bucket and lazily made clients."""

    task_id: str
    owner: str
    bucket: str
    email_sender: str = "noreply@example.com"
    email_rate_per_second: float = 10.0
    # How many worker processes may send email at once: each keeps to its share of the
    # account's SES rate (the worker's maximum concurrency, both queues together).
    email_max_concurrency: int = 70
    # Lambda's memory size: what the task types' per-item limits (image pixels) derive from.
    memory_mb: int = 1024
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
        return f"uploads/{self.owner}/"


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


# A type may also define `admit(params, submitter) -> Mapping[str, int]`: raise InvalidRequest
# to refuse a submit, and return the amounts it takes from the owner's quotas by name
# (`taskqueue.quotas.Quota`). Optional, so that plugins written before it keep working.
ADMIT = "admit"
