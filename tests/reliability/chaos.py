"""Fault injection for the reliability suite.

A task type whose exact result is known (CHUNKSUM), a simulated clock shared by every store,
botocore hooks that kill workers and fail AWS calls, a delivery loop standing in for SQS and
the event source mapping (duplicates, reordering, late delivery, redelivery after the
visibility timeout, the DLQs), a simulated user sending submits, cancels and retries through
the API, and the invariant checks run over every task at the end.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from taskqueue import wiring
from taskqueue.aws import client as aws_client
from taskqueue.models import (
    ChunkState,
    TaskEvent,
    TaskMessage,
    TaskResult,
    TaskStatus,
    parse_part_id,
    successor_id,
    utcnow,
)
from taskqueue.store import Store
from taskqueue.store.items import idempotency_key, serialize
from taskqueue.task_types.base import Plan, TaskContext
from tests.helpers import (
    ApiResponse,
    CounterStream,
    FakeLambdaContext,
    call_api,
    http_event,
    sqs_event,
    sqs_record,
)

OWNER = "reliability-user"
INVOCATION_MS = 30_000  # what a worker invocation reports as remaining time (sizes the lease)
MAX_SIMULATED = timedelta(days=20)  # well inside the 30-day retention of finished tasks
THROTTLE_CODES = (
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "InternalServerError",
)
SQS_ERROR_CODES = ("ServiceUnavailable", "InternalError", "RequestThrottled")
# What SES answers a whole SendBulkEmail with when it sends nothing: throttled, or a 5xx.
SES_ERROR_CODES = ("TooManyRequestsException", "ThrottlingException", "InternalFailure")
WRITES = frozenset({"TransactWriteItems", "UpdateItem", "PutItem", "DeleteItem"})
# Faults after which the design allows one chunk to run again (the one not checkpointed).
REPEAT_ALLOWING = frozenset(
    {
        "worker_killed",
        "dynamodb_error",
        "sqs_send_failure",
        "race_takeover",
        "race_duplicate",
        "chunk_error",
        "storm_throttle",
    }
)


class ApiKilled(BaseException):
    """The API's Lambda dies at an AWS call of a request (before it is sent or after it is
    answered): the client gets no answer, and whatever the request wrote stays written."""


class WorkerKilled(BaseException):
    """The Lambda process died (timeout, out of memory, lost host): nothing after it runs.

    A BaseException, so Powertools' BatchProcessor (which catches Exception) cannot turn it
    into a batch item failure: the whole invocation dies, as it would on AWS.
    """


# ------------------------------------------------------------------ the CHUNKSUM task type


def chunk_value(salt: int, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{index}".encode()).digest()[:4], "big")


def expected_sum(salt: int, chunks: int) -> int:
    return sum(chunk_value(salt, index) for index in range(chunks))


class ChunkSumParams(BaseModel):
    chunks: int = Field(ge=1, le=1000)
    salt: int = Field(ge=0)


@dataclass
class ChunkSum:
    """Chunk i adds chunk_value(salt, i): a chunk lost or applied twice changes the sum."""

    ledger: Ledger
    name: str = "CHUNKSUM"
    description: str = "a chunked sum whose exact result is known (reliability tests)"
    progress_unit: str = "chunks"
    params_model: type[BaseModel] = ChunkSumParams
    during_chunk: Callable[[str, int], None] | None = None

    def start(self, params: ChunkSumParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=params.chunks, cursor=0, data={"sum": 0})

    def run_chunk(self, params: ChunkSumParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        index = int(state.cursor)
        self.ledger.executed(ctx.task_id, index)
        if self.during_chunk is not None:
            self.during_chunk(ctx.task_id, index)
        return ChunkState(
            units_total=params.chunks,
            units_done=index + 1,
            cursor=index + 1,
            data={"sum": state.data["sum"] + chunk_value(params.salt, index)},
            done=index + 1 >= params.chunks,
        )

    def finish(self, params: ChunkSumParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return TaskResult(summary={"sum": state.data["sum"], "chunks": params.chunks})


class PartSumParams(BaseModel):
    chunks: int = Field(ge=1, le=1000)
    parts: int = Field(ge=1, le=50)
    max_parallel: int = Field(default=2, ge=1, le=50)
    salt: int = Field(ge=0)


@dataclass
class PartSum:
    """CHUNKSUM in parallel parts: part p sums chunks p, p + parts, p + 2 * parts, ...; the
    merge adds the parts' sums. A part lost, counted twice or merged twice changes the sum;
    every merge that runs is recorded (one per parent and run, unless a fault repeats it)."""

    ledger: Ledger
    name: str = "PARTSUM"
    description: str = "a chunked sum in parallel parts (reliability tests)"
    progress_unit: str = "chunks"
    params_model: type[BaseModel] = PartSumParams
    during_chunk: Callable[[str, int], None] | None = None
    merges: Counter[str] = field(default_factory=Counter)

    def start(self, params: PartSumParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=params.chunks, cursor=0, data={})

    def plan(self, params: PartSumParams, state: ChunkState, ctx: TaskContext) -> Plan:
        parts = []
        for part in range(params.parts):
            indexes = list(range(part, params.chunks, params.parts))
            parts.append(
                ChunkState(
                    units_total=len(indexes),
                    cursor=0,
                    data={"indexes": indexes, "sum": 0},
                    done=not indexes,
                )
            )
        return Plan(parts=parts, max_parallel=params.max_parallel)

    def run_chunk(self, params: PartSumParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        position = int(state.cursor)
        index = state.data["indexes"][position]
        self.ledger.executed(ctx.task_id, index)
        if self.during_chunk is not None:
            self.during_chunk(ctx.task_id, index)
        return ChunkState(
            units_total=state.units_total,
            units_done=position + 1,
            cursor=position + 1,
            data={**state.data, "sum": state.data["sum"] + chunk_value(params.salt, index)},
            done=position + 1 >= len(state.data["indexes"]),
        )

    def finish(self, params: PartSumParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        raise AssertionError("a PARTSUM task finishes by its merge")

    def finish_part(self, params: PartSumParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return TaskResult(summary={"sum": state.data["sum"], "chunks": len(state.data["indexes"])})

    def verify(
        self, params: PartSumParams, results: list[dict[str, Any]], ctx: TaskContext
    ) -> dict[int, ChunkState]:
        return {}

    def merge(
        self,
        params: PartSumParams,
        state: ChunkState,
        results: list[dict[str, Any]],
        ctx: TaskContext,
    ) -> TaskResult:
        with self.ledger.lock:
            self.merges[ctx.task_id] += 1
        summary = {
            "sum": sum(result["sum"] for result in results),
            "chunks": sum(result["chunks"] for result in results),
        }
        return TaskResult(summary=summary)


# ------------------------------------------------------------------ clock and ledger


@dataclass
class SimClock:
    """Real time plus an offset that only grows: every store and the engine share it."""

    offset: timedelta = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset.total_seconds()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Ledger:
    """Everything the test saw, in one global order (`seq`)."""

    counter: itertools.count[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], datetime] = utcnow
    # task -> [(seq, chunk index, simulated time it started)]
    executions: dict[str, list[tuple[int, int, datetime]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    faults: Counter[str] = field(default_factory=Counter)
    task_faults: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # task -> [(seq, action, http status, restart)]
    actions: dict[str, list[tuple[int, str, int, bool]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def next(self) -> int:
        with self.lock:
            return next(self.counter)

    def executed(self, task_id: str, index: int) -> None:
        self.executions[task_id].append((self.next(), index, self.clock()))

    def fault(self, kind: str, task_id: str | None) -> None:
        with self.lock:
            self.faults[kind] += 1
            if task_id:
                self.task_faults[task_id][kind] += 1

    def action(self, task_id: str, kind: str, status: int, restart: bool = False) -> None:
        self.actions[task_id].append((self.next(), kind, status, restart))


# ------------------------------------------------------------------ fault injection


# Every kind of fault the mixed workload injects (the names `Ledger.fault` counts). Each fires
# at least once in a run of the default size (`Chaos.draw`), or the workload test fails.
FAULT_KINDS = (
    "api_dynamodb_error",
    "api_killed",
    "api_response_lost",
    "api_sqs_send_failure",
    "chunk_error",
    "counters_answer_lost",
    "counters_dynamodb_error",
    "dlq_dynamodb_error",
    "dynamodb_error",
    "poison",
    "race_duplicate",
    "race_takeover",
    "ses_error",
    "sqs_send_failure",
    "storm_throttle",
    "worker_killed",
)


@dataclass
class Rates:
    """Probabilities of each fault; the defaults give a few hundred faults per 300 tasks."""

    kill_invocation: float = 0.15  # worker invocations killed at a random AWS call
    kill_window: int = 40  # ... the call number drawn from 1..kill_window
    dynamodb_error: float = 0.01  # per DynamoDB call of a worker
    sqs_send_failure: float = 0.04  # per SendMessage of a worker
    chunk_error: float = 0.01  # per CHUNKSUM chunk: the task's own code raises
    ses_error: float = 0.15  # per SendBulkEmail of a worker: SES throttles or fails, sends none
    race: float = 0.015  # per CHUNKSUM chunk: a second worker runs the same task
    # tasks whose first 5 messages fail at their first request, the claim (-> DLQ)
    storm_share: float = 0.02
    api_dynamodb_error: float = 0.04  # per API request: one DynamoDB call fails
    api_send_failure: float = 0.06  # per API request that sends: SendMessage fails
    api_killed: float = 0.03  # per API request: the API dies at one of its AWS calls
    client_gives_up: float = 0.5  # ... and its client never repeats the call (the sweeper)
    # Also fail API DynamoDB calls made after the request's write committed, and lose the
    # write's response. Off until the enqueue-after-commit bug is fixed (docs/reliability.md).
    api_faults_after_commit: bool = True
    dlq_dynamodb_error: float = 0.05  # per DLQ handler DynamoDB call
    counters_dynamodb_error: float = 0.05  # per counters DynamoDB call: the batch is retried
    counters_answer_lost: float = 0.05  # per counters transaction: it commits, the call fails
    stream_duplicate: float = 0.1  # per counted stream batch: Lambda delivers it again
    stream_longer_retry: float = 0.5  # per retried stream batch: the retry brings more records
    batch_duplicate: float = 0.08  # per batch: one record delivered twice in it
    lost_delete: float = 0.03  # per processed record: the delete is lost, SQS redelivers
    sqs_duplicate: float = 0.03  # per processed record: SQS delivers a second copy
    late: float = 0.06  # per message: held back and delivered 1-3 rounds later
    cancel: float = 0.1  # per task: a cancel at a random moment
    cancel_running: float = 0.01  # per CHUNKSUM chunk: its owner cancels the task it runs
    retry_after_cancel: float = 0.5  # ... followed later by a retry
    random_retry: float = 0.04  # per task: a retry at a random moment (mostly 409)
    cancel_retry_storm: float = 0.01  # per task: 10-30 cancels and retries, alternating
    poison: float = 0.01  # per task: every message of it kills the invocation that runs it
    final_retry: float = 0.5  # per FAILED/CANCELLED task after the first drain


def quiet_rates() -> Rates:
    """No random fault at all: for sweeps that place one fault by hand."""
    return Rates(**{name: 0 for name, f in Rates.__dataclass_fields__.items() if f.type == "float"})


@dataclass
class UserAction:
    due: int
    order: int
    kind: str  # "cancel" | "retry"
    task_id: str
    restart: bool = False

    def __lt__(self, other: UserAction) -> bool:
        return (self.due, self.order) < (other.due, other.order)


class Chaos:
    """Botocore hooks that inject faults according to who is calling (thread-local actor)."""

    def __init__(
        self,
        *,
        rng: random.Random,
        rates: Rates,
        ledger: Ledger,
        clock: SimClock,
        engine: Any,
        worker: Any,
        dlq: Any,
        counters: Any,
        lease_max_seconds: int,
        clients: Iterable[Any],
    ) -> None:
        self.rng = rng
        self.rates = rates
        self.ledger = ledger
        self.clock = clock
        self.engine = engine
        self.worker = worker
        self.dlq = dlq
        self.counters = counters
        self.lease_max_seconds = lease_max_seconds
        self.local = threading.local()
        self.enabled = False
        self.storm: dict[str, int] = {}
        self.poison: set[str] = set()  # tasks whose every message kills its invocation
        self.actions: list[UserAction] = []
        self.action_order = itertools.count()
        self.opportunities = 0
        # A sweep's fault: (worker AWS call number counted across invocations, kind), where
        # kind is "kill-before", "kill-after" or "error"; chunks per invocation when fixed.
        self.forced: tuple[int, str] | None = None
        # An API sweep's fault: (the AWS call number within the next request, "kill-before" or
        # "kill-after"); that request's client never repeats it.
        self.forced_api: tuple[int, str] | None = None
        self.api_calls = 0  # AWS calls of the last API request
        self.worker_calls = 0
        self.chunks_per_invocation: int | None = None
        self.resend: Callable[[str], None] = lambda task_id: None
        self.sweeper: Callable[[], int] = lambda: 0
        self.original_process = engine.process
        engine.process = self._process
        self.clients = {id(c): c for c in clients}.values()
        for client in self.clients:
            events = client.meta.events
            events.register("before-call.*.*", self._before_call)
            events.register("after-call.*.*", self._after_call)
            events.register("after-call-error.*.*", self._after_call)

    def close(self) -> None:
        self.engine.process = self.original_process
        for client in self.clients:
            events = client.meta.events
            events.unregister("before-call.*.*", self._before_call)
            events.unregister("after-call.*.*", self._after_call)
            events.unregister("after-call-error.*.*", self._after_call)

    # ---------------------------------------------------------------- who is calling

    @property
    def actor(self) -> str | None:
        return getattr(self.local, "actor", None)

    def _process(
        self, message: TaskMessage, remaining_ms: Callable[[], int], message_id: str | None = None
    ) -> Any:
        self.local.task = message.task_id
        self.local.claiming = True  # its first DynamoDB request: the claim (or its read)
        if message.task_id in self.poison and self.actor == "worker":
            # Out of memory, a timeout, a crash: nothing of the batch is acknowledged.
            self.ledger.fault("poison", message.task_id)
            raise WorkerKilled("a poison record")
        return self.original_process(message, remaining_ms, message_id)

    def draw(self, kind: str, rate: float) -> bool:
        """Whether a fault of `kind` happens at this chance of it: at its first chance
        always, then with probability `rate` (none at rate 0).

        A kind drawn only by chance may never fire in a run, and then nothing tells a kind
        that was merely unlucky from one whose hook misses the code it means to hit (a
        client the task type does not use): firing each at its first chance makes a kind
        that never fired a kind that never had a chance, which the workload test refuses.
        """
        if rate <= 0:
            return False
        return self.ledger.faults[kind] == 0 or self.rng.random() < rate

    # ---------------------------------------------------------------- hooks

    def _before_call(self, event_name: str, params: Any = None, **_: Any) -> None:
        if not self.enabled or self.actor is None:
            return
        _, service, operation = event_name.split(".")[:3]
        local = self.local
        if self.actor == "worker":
            local.calls += 1
            self.worker_calls += 1
            if self.forced and self.forced[0] == self.worker_calls:
                self._forced_fault(self.forced[1], service, operation)
            self.user_moment()
            if local.kill_at == local.calls:
                if local.kill_after:
                    local.kill_armed = True
                else:
                    self.ledger.fault("worker_killed", local.task)
                    raise WorkerKilled(f"before call {local.calls} ({service}.{operation})")
            if service == "dynamodb":
                claiming, local.claiming = getattr(local, "claiming", False), False
                if claiming and self._storming(local.task):
                    self.ledger.fault("storm_throttle", local.task)
                    raise _client_error("ThrottlingException", operation)
                if self.draw("dynamodb_error", self.rates.dynamodb_error):
                    self.ledger.fault("dynamodb_error", local.task)
                    raise _client_error(self.rng.choice(THROTTLE_CODES), operation)
            elif operation == "SendMessage" and self.draw(
                "sqs_send_failure", self.rates.sqs_send_failure
            ):
                self.ledger.fault("sqs_send_failure", local.task)
                raise _client_error(self.rng.choice(SQS_ERROR_CODES), operation)
            elif operation == "SendBulkEmail" and self.draw("ses_error", self.rates.ses_error):
                # Transient: the recipients must be sent later, never recorded as failed.
                self.ledger.fault("ses_error", local.task)
                raise _client_error(self.rng.choice(SES_ERROR_CODES), operation)
        elif self.actor == "api" and self.api_killing(service, operation):
            pass
        elif self.actor == "api" and not local.api_faulted:
            # One fault per API request at most (see docs/reliability.md for why).
            after_commit = local.api_wrote and not self.rates.api_faults_after_commit
            if (
                service == "dynamodb"
                and not after_commit
                and self.draw("api_dynamodb_error", self.rates.api_dynamodb_error)
            ):
                local.api_faulted = True
                self.ledger.fault("api_dynamodb_error", local.api_task)
                raise _client_error(self.rng.choice(THROTTLE_CODES), operation)
            if operation == "SendMessage" and self.draw(
                "api_sqs_send_failure", self.rates.api_send_failure
            ):
                local.api_faulted = True
                self.ledger.fault("api_sqs_send_failure", local.api_task)
                raise _client_error(self.rng.choice(SQS_ERROR_CODES), operation)
        elif self.actor in ("dlq", "counters") and service == "dynamodb":
            kind = f"{self.actor}_dynamodb_error"
            if self.draw(kind, getattr(self.rates, kind)):
                self.ledger.fault(f"{self.actor}_dynamodb_error", None)
                raise _client_error(self.rng.choice(THROTTLE_CODES), operation)

    def api_killing(self, service: str, operation: str) -> bool:
        """Count the API request's calls; die at the one drawn (before it, or arm for after)."""
        local = self.local
        self.api_calls += 1
        if local.api_kill_at != self.api_calls:
            return False
        local.api_faulted = True
        if local.api_kill_after:
            local.api_kill_armed = True
            return True
        self.ledger.fault("api_killed", local.api_task)
        raise ApiKilled(f"before call {self.api_calls} ({service}.{operation})")

    def _after_call(self, event_name: str, **_: Any) -> None:
        local = self.local
        if self.actor == "api" and getattr(local, "api_kill_armed", False):
            local.api_kill_armed = False
            self.ledger.fault("api_killed", local.api_task)
            raise ApiKilled(f"after call {self.api_calls} ({event_name})")
        if self.actor == "api" and event_name.split(".")[2] in WRITES and "error" not in event_name:
            local.api_wrote = True
            if (
                self.enabled
                and self.rates.api_faults_after_commit
                and not local.api_faulted
                and self.draw("api_response_lost", self.rates.api_dynamodb_error)
            ):
                local.api_faulted = True
                self.ledger.fault("api_response_lost", local.api_task)
                raise _client_error("InternalServerError", event_name.split(".")[2])
        if (
            self.enabled
            and self.actor == "counters"
            and event_name.endswith("TransactWriteItems")
            and "error" not in event_name
            and self.draw("counters_answer_lost", self.rates.counters_answer_lost)
        ):
            # The counts committed; the invocation dies before it returns: Lambda retries.
            self.ledger.fault("counters_answer_lost", None)
            raise _client_error("InternalServerError", "TransactWriteItems")
        if self.actor == "worker" and getattr(local, "kill_armed", False):
            local.kill_armed = False
            self.ledger.fault("worker_killed", local.task)
            raise WorkerKilled(f"after call {local.calls} ({event_name})")

    def _forced_fault(self, kind: str, service: str, operation: str) -> None:
        local = self.local
        if kind == "kill-after":
            local.kill_armed = True
        elif kind == "kill-before":
            self.ledger.fault("worker_killed", local.task)
            raise WorkerKilled(f"before call {self.worker_calls} ({service}.{operation})")
        else:
            kind = "dynamodb_error" if service == "dynamodb" else f"{service}_failure"
            self.ledger.fault(kind if kind != "sqs_failure" else "sqs_send_failure", local.task)
            raise _client_error("InternalServerError", operation)

    def _storming(self, task_id: str | None) -> bool:
        if task_id and self.storm.get(task_id, 0) > 0:
            self.storm[task_id] -= 1
            return True
        return False

    # ---------------------------------------------------------------- inside a chunk

    def during_chunk(self, task_id: str, index: int) -> None:
        if not self.enabled or self.actor != "worker":
            return
        self.user_moment()
        if self.rng.random() < self.rates.cancel_running:
            self.cancel(task_id)  # must stop at the next checkpoint: no later chunk starts
        if self.draw("race_takeover", self.rates.race / 2):
            self.race(task_id, stalled=True)
        elif self.draw("race_duplicate", self.rates.race / 2):
            self.race(task_id, stalled=False)
        if self.draw("chunk_error", self.rates.chunk_error):
            self.ledger.fault("chunk_error", task_id)
            raise RuntimeError(f"injected failure in chunk {index}")

    def race(self, task_id: str, stalled: bool) -> None:
        """A second worker runs the same task now, on its own thread.

        Stalled: this worker hangs past its lease first, so the second one takes over and
        this one must be fenced out at its next write. Not stalled: the second one's claim
        must find the lease held and drop its message.
        """
        if stalled:
            self.clock.advance(self.lease_max_seconds + 1)
        self.ledger.fault("race_takeover" if stalled else "race_duplicate", task_id)
        outcome: dict[str, Any] = {}

        # Its message: bare (a read before the claim), or naming the owner and type as the
        # API and the engine send it, guessing a start or a resume (a wrong guess costs the
        # claim a second write)
        message = TaskMessage(task_id=task_id)
        if self.rng.random() < 0.5:
            resume = self.rng.random() < 0.5
            message = TaskMessage(task_id=task_id, owner=OWNER, task_type="CHUNKSUM", resume=resume)

        def second_worker() -> None:
            self.local.actor, self.local.task = "race", task_id
            try:
                budget = countdown(self.rng.randint(1, 6))
                outcome["value"] = self.original_process(message, budget)
            except BaseException as exc:  # its own message would be redelivered
                outcome["error"] = exc
            finally:
                self.local.actor = None

        thread = threading.Thread(target=second_worker, name=f"race-{task_id[:8]}")
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the racing worker did not finish"
        if "error" in outcome:
            self.resend(task_id)

    # ---------------------------------------------------------------- invocations

    def invoke_worker(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One worker invocation; None when it was killed (nothing of it is acknowledged)."""
        local = self.local
        local.actor, local.task, local.calls, local.kill_armed = "worker", None, 0, False
        killing = self.enabled and self.rng.random() < self.rates.kill_invocation
        local.kill_at = self.rng.randint(1, self.rates.kill_window) if killing else -1
        local.kill_after = self.rng.random() < 0.5
        chunks = self.chunks_per_invocation or self.rng.randint(1, 12)
        context = FakeLambdaContext(function_name="worker", remaining_ms=countdown(chunks))
        try:
            return self.worker.lambda_handler(sqs_event(records), context)  # type: ignore[no-any-return]
        except WorkerKilled:
            return None
        finally:
            local.actor = local.task = None

    def invoke_counters(self, records: list[dict[str, Any]]) -> bool:
        """One counters invocation over stream records; False when it failed."""
        self.local.actor = "counters"
        try:
            self.counters.lambda_handler({"Records": records}, FakeLambdaContext("counters"))
            return True
        except ClientError:
            return False
        finally:
            self.local.actor = None

    def invoke_dlq(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        self.local.actor = "dlq"
        try:
            return self.dlq.lambda_handler(sqs_event(records), FakeLambdaContext())  # type: ignore[no-any-return]
        finally:
            self.local.actor = None

    # ---------------------------------------------------------------- the user

    def api(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        task_id: str | None = None,
        attempts: int = 6,
    ) -> ApiResponse:
        """One request as a careful client sends it: repeated on 5xx (same key, same body),
        except, now and then, after the API died under it: that client gives up (status 0)."""
        saved = self.actor
        response = ApiResponse(0, None, {})
        for _ in range(attempts):
            local = self.local
            local.actor, local.api_task = "api", task_id
            local.api_faulted = local.api_wrote = local.api_kill_armed = False
            self.api_calls, local.api_kill_after, local.api_kill_at = 0, False, -1
            if self.forced_api is not None:
                local.api_kill_at = self.forced_api[0]
                local.api_kill_after = self.forced_api[1] == "kill-after"
            elif self.enabled and self.rng.random() < self.rates.api_killed:
                local.api_kill_at = self.rng.randint(1, 4)
                local.api_kill_after = self.rng.random() < 0.5
            try:
                response = call_api(http_event(method, path, body=body, headers=headers, sub=OWNER))
            except ApiKilled:
                response = ApiResponse(0, {"killed": True}, {})
                if self.forced_api is not None or self.rng.random() < self.rates.client_gives_up:
                    return response
            except Exception as exc:  # an unhandled error: API Gateway answers 500
                response = ApiResponse(500, {"exception": repr(exc)}, {})
            finally:
                local.actor = saved
            if 0 < response.status < 500:
                return response
        return response

    def schedule(self, kind: str, task_id: str, delay: int, restart: bool = False) -> None:
        due = self.opportunities + delay
        heapq.heappush(
            self.actions, UserAction(due, next(self.action_order), kind, task_id, restart)
        )

    def user_moment(self, force: bool = False) -> None:
        """A moment at which a user request may arrive (between or inside AWS calls)."""
        self.opportunities += 1
        if self.actions and (force or self.actions[0].due <= self.opportunities):
            action = heapq.heappop(self.actions)
            if action.kind == "cancel":
                self.cancel(action.task_id)
            else:
                self.retry(action.task_id, action.restart)

    def cancel(self, task_id: str) -> ApiResponse:
        part = parse_part_id(task_id)
        if part is not None:  # a part's chunk: its owner cancels the task it is part of
            task_id = part[0]
        response = self.api("DELETE", f"/tasks/{task_id}", task_id=task_id)
        self.ledger.action(task_id, "cancel", response.status)
        return response

    def retry(self, task_id: str, restart: bool) -> ApiResponse:
        response = self.api(
            "POST", f"/tasks/{task_id}/retry", body={"restart": restart}, task_id=task_id
        )
        self.ledger.action(task_id, "retry", response.status, restart)
        return response

    def submit(self, body: dict[str, Any], key: str) -> str:
        """Submit until the task exists and is queued; an EnqueueFailed task is retried (unless
        the client gave up after the API died). The faults of its requests count as the task's
        once its id is known."""
        task_id = self._submit(body, key)
        faults = self.ledger.task_faults.pop(f"submit:{key}", Counter())
        self.ledger.task_faults[task_id].update(faults)
        return task_id

    def _submit(self, body: dict[str, Any], key: str) -> str:
        for _ in range(10):
            response = self.api(
                "POST",
                "/tasks",
                body=body,
                headers={"Idempotency-Key": key},
                task_id=f"submit:{key}",
            )
            if response.status == 0:
                # The API died and the client gave up: the task exists if the write landed
                # (the sweeper then sends its message); if not, there is nothing to strand,
                # and the client submits again.
                task_id = self.written_by(key)
                if task_id is not None:
                    self.ledger.action(task_id, "submit", 0)
                    return task_id
                continue
            if response.status in (200, 201):
                task = response.body
                self.ledger.action(task["id"], "submit", response.status)
                if task["status"] == "FAILED" and (task["error"] or {}).get("type") == (
                    "EnqueueFailed"
                ):
                    self._requeue(task["id"])
                return str(task["id"])
            assert response.status >= 500, f"submit answered {response.status}: {response.body}"
        raise AssertionError(f"submit with key {key} kept failing")

    def written_by(self, key: str) -> str | None:
        """The id of the task a submit with this Idempotency-Key created, if any."""
        store = self.engine.store
        item = store.table.get_item(serialize(idempotency_key(OWNER, key)))
        return None if item is None else str(item["task_id"]["S"])

    def sweep(self, grace_seconds: int) -> int:
        """The sweeper's scheduled run, once the grace period has passed."""
        self.clock.advance(grace_seconds + 1)
        self.local.actor = "sweeper"
        try:
            return self.sweeper()
        finally:
            self.local.actor = None

    def _requeue(self, task_id: str) -> None:
        for _ in range(10):
            response = self.retry(task_id, restart=False)
            if response.status == 200 or response.status == 409:
                return
        raise AssertionError(f"task {task_id} could not be queued again")


def _client_error(code: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "injected fault"}, "ResponseMetadata": {}}, operation
    )


def countdown(chunks: int) -> Callable[[], int]:
    """Remaining time for `chunks` chunk checks, then none (the invocation runs out)."""
    calls = itertools.count()

    def remaining() -> int:
        call = next(calls)  # call 0 sizes the lease; later calls follow chunks
        return INVOCATION_MS if call <= chunks else -1

    return remaining


# ------------------------------------------------------------------ delivery


@dataclass
class Queue:
    url: str
    arn: str
    batch_size: int = 10  # the event source mapping's BatchSize (1: an isolation queue)


@dataclass
class Delivery:
    """SQS and the event source mapping, with the liberties SQS is allowed to take."""

    sqs: Any
    chaos: Chaos
    rng: random.Random
    rates: Rates
    clock: SimClock
    task_queues: list[Queue]
    dead_letter_queues: list[Queue]
    visibility_timeout: int
    stream: Any  # devstack.streams.StreamReader of the table, for the counters function
    figures: Counter[str] = field(default_factory=Counter)
    unacknowledged: list[dict[str, Any]] = field(default_factory=list)  # a failed stream batch
    late: list[tuple[int, Queue, dict[str, Any]]] = field(default_factory=list)
    rounds: int = 0
    full_batches: bool = False  # every batch as large as the queue's BatchSize allows

    def receive(self, queue: Queue, limit: int = 300) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            got = self.sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                VisibilityTimeout=self.visibility_timeout,
            ).get("Messages", [])
            if not got:
                break
            messages += got
        return messages

    def record(self, queue: Queue, message: dict[str, Any], receipt: str = "") -> dict[str, Any]:
        return sqs_record(
            message["Body"],
            queue_arn=queue.arn,
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            message_id=message["MessageId"],
            receipt=receipt or message["ReceiptHandle"],
        )

    def resend(self, queue: Queue, task_id: str) -> None:
        self.sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"task_id": task_id}))

    def round(self) -> bool:
        """Deliver everything visible once; False when there was nothing to deliver."""
        self.rounds += 1
        redeliver: list[tuple[Queue, dict[str, Any]]] = []
        delivered = False
        for queue in self.task_queues:
            due = [m for r, q, m in self.late if q is queue and r <= self.rounds]
            self.late = [
                (r, q, m) for r, q, m in self.late if not (q is queue and r <= self.rounds)
            ]
            fresh = []
            for message in self.receive(queue):
                if self.rng.random() < self.rates.late:
                    self.late.append((self.rounds + self.rng.randint(1, 3), queue, message))
                    self.figures["delivered late"] += 1
                else:
                    fresh.append(message)
            batch_source = fresh + due
            self.rng.shuffle(batch_source)  # SQS standard queues do not keep order
            while batch_source:
                size = (
                    queue.batch_size if self.full_batches else self.rng.randint(1, queue.batch_size)
                )
                batch, batch_source = batch_source[:size], batch_source[size:]
                delivered = True
                self.chaos.user_moment()
                redeliver += self.invoke(queue, batch)
        for queue in self.dead_letter_queues:
            for message in self.receive(queue):
                delivered = True
                self.figures["dead letters handled"] += 1
                response = self.chaos.invoke_dlq([self.record(queue, message)])
                if response["batchItemFailures"]:
                    redeliver.append((queue, message))
                else:
                    self.sqs.delete_message(
                        QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"]
                    )
        self.count_stream()
        if redeliver:
            for queue, message in redeliver:
                self.sqs.change_message_visibility(
                    QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            # They reappear only after the visibility timeout: leases held by dead workers
            # have expired by then (the timeout outlasts the longest lease).
            self.clock.advance(self.visibility_timeout)
            self.figures["redeliveries"] += len(redeliver)
            # ~1 simulated day per 1,000 tasks: past the 30-day retention, finished tasks
            # would expire and the recount would fail for the wrong reason.
            assert self.clock.offset < MAX_SIMULATED, (
                f"simulated time {self.clock.offset} nears the retention period: "
                "use fewer RELIABILITY_TASKS (up to ~15,000) per run"
            )
        return delivered or bool(self.late)

    def count_stream(self) -> None:
        """The stream's event source mapping: everything new, in batches of random size; a
        failed batch is retried from its first record (sometimes with more records), and a
        counted one is now and then delivered again."""
        while True:
            batch = self.unacknowledged or self.stream.read(self.rng.randint(1, 200))
            if not batch:
                return
            self.figures["counters invocations"] += 1
            if not self.chaos.invoke_counters(batch):
                self.figures["counters batches retried"] += 1
                if self.rng.random() < self.rates.stream_longer_retry:
                    batch = batch + self.stream.read(self.rng.randint(1, 50))
                self.unacknowledged = batch
                continue
            self.unacknowledged = []
            if self.rng.random() < self.rates.stream_duplicate:
                self.figures["counters batches delivered twice"] += 1
                while not self.chaos.invoke_counters(batch):
                    self.figures["counters batches retried"] += 1

    def invoke(
        self, queue: Queue, batch: list[dict[str, Any]]
    ) -> list[tuple[Queue, dict[str, Any]]]:
        records = [self.record(queue, m) for m in batch]
        if self.rng.random() < self.rates.batch_duplicate:
            twin = dict(self.rng.choice(records), receiptHandle=f"dup-{uuid.uuid4().hex}")
            records.insert(self.rng.randint(0, len(records)), twin)
            self.figures["duplicates in one batch"] += 1
        self.figures["worker invocations"] += 1
        self.figures["records delivered"] += len(records)
        response = self.chaos.invoke_worker(records)
        if response is None:
            self.figures["invocations killed"] += 1
            return [(queue, m) for m in batch]
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        self.figures["records failed"] += len(failed)
        redeliver = []
        for message in batch:
            if message["MessageId"] in failed:
                redeliver.append((queue, message))
            elif self.rng.random() < self.rates.lost_delete:
                self.figures["deletes lost (redelivered)"] += 1
                redeliver.append((queue, message))
            else:
                self.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
                if self.rng.random() < self.rates.sqs_duplicate:
                    self.figures["duplicate copies sent"] += 1
                    self.sqs.send_message(QueueUrl=queue.url, MessageBody=message["Body"])
        return redeliver

    def depth(self) -> int:
        total = 0
        for queue in self.task_queues + self.dead_letter_queues:
            attributes = self.sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])[
                "Attributes"
            ]
            total += sum(
                int(attributes[name])
                for name in (
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                )
            )
        return total


# ------------------------------------------------------------------ harness


@dataclass
class Harness:
    resources: Any
    env: dict[str, str]
    worker: Any
    api: Any
    dlq: Any
    engine: Any
    store: Store  # the test's own reader, on the simulated clock
    clock: SimClock
    ledger: Ledger
    chunksum: ChunkSum
    partsum: PartSum
    sqs: Any
    visibility_timeout: int
    counters: Any
    stream: Any  # devstack.streams.StreamReader of the table

    def queues(self, *logical_ids: str, batch_size: int = 10) -> list[Queue]:
        return [
            Queue(self.resources.queues[name], self.resources.arns[name], batch_size)
            for name in logical_ids
        ]


def make_chaos(harness: Harness, rng: random.Random, rates: Rates) -> tuple[Chaos, Delivery]:
    chaos = Chaos(
        rng=rng,
        rates=rates,
        ledger=harness.ledger,
        clock=harness.clock,
        engine=harness.engine,
        worker=harness.worker,
        dlq=harness.dlq,
        counters=harness.counters,
        lease_max_seconds=INVOCATION_MS // 1000 + harness.engine.lease_grace_seconds,
        clients=[aws_client(name) for name in ("dynamodb", "sqs", "s3", "sesv2")],
    )
    harness.chunksum.during_chunk = chaos.during_chunk
    harness.partsum.during_chunk = chaos.during_chunk
    delivery = Delivery(
        harness.sqs,
        chaos,
        rng,
        rates,
        harness.clock,
        [
            *harness.queues("HighPriorityQueue", "TaskQueue"),
            *harness.queues(
                "PartsQueue", "HighPriorityIsolationQueue", "TaskIsolationQueue", batch_size=1
            ),
        ],
        harness.queues("HighPriorityDeadLetterQueue", "TaskDeadLetterQueue"),
        harness.visibility_timeout,
        harness.stream,
    )
    chaos.resend = lambda task_id: delivery.resend(delivery.task_queues[1], task_id)
    service = wiring.service()
    # A repeated submit or retry waits for a first call's mark on the simulated clock: the
    # user's calls run one at a time here, so no mark can arrive while it waits, and real
    # sleeps (seconds a run) bought nothing.
    service.sleep, service.monotonic = harness.clock.advance, harness.clock.monotonic
    chaos.sweeper = lambda: service.send_unsent(wiring.settings().sweep_grace_seconds)
    return chaos, delivery


# ------------------------------------------------------------------ invariants

# Event-log messages that move a task between statuses: prefix -> (allowed from, to).
TRANSITIONS: list[tuple[str, frozenset[TaskStatus], TaskStatus]] = [
    ("started (attempt ", frozenset({TaskStatus.PENDING}), TaskStatus.RUNNING),
    ("finished", frozenset({TaskStatus.RUNNING}), TaskStatus.SUCCESS),
    ("failed after ", frozenset({TaskStatus.RUNNING}), TaskStatus.FAILED),
    ("cancelled before it started", frozenset({TaskStatus.PENDING}), TaskStatus.CANCELLED),
    ("cancelled", frozenset({TaskStatus.RUNNING}), TaskStatus.CANCELLED),
    ("retry requested: ", frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED}), TaskStatus.PENDING),
    ("failed: ", frozenset({TaskStatus.PENDING, TaskStatus.RUNNING}), TaskStatus.FAILED),
]
RUNNING_ONLY = ("cancel requested", "took over from", "% done")


def replay_history(messages: list[str]) -> tuple[TaskStatus | None, list[str]]:
    """The status the event log leads to, and any step the lifecycle does not allow."""
    problems: list[str] = []
    if not messages or messages[0] != "submitted":
        return None, [f"history does not start with 'submitted': {messages[:3]}"]
    status = TaskStatus.PENDING
    for message in messages[1:]:
        if "attempt " in message and "retry in" in message:
            step: tuple[frozenset[TaskStatus], TaskStatus] | None = (
                frozenset({TaskStatus.RUNNING}),
                TaskStatus.PENDING,
            )
        else:
            step = next(
                (
                    (allowed, to)
                    for prefix, allowed, to in TRANSITIONS
                    if message.startswith(prefix)
                ),
                None,
            )
        if step is None:
            if any(marker in message for marker in RUNNING_ONLY) and status != TaskStatus.RUNNING:
                problems.append(f"{message!r} while {status}")
            continue
        allowed, to = step
        if status not in allowed:
            problems.append(f"{message!r} while {status}")
        status = to
    return status, problems


@dataclass
class TaskSpec:
    key: str
    task_type: str
    params: dict[str, Any]
    task_id: str = ""
    then: list[dict[str, Any]] = field(default_factory=list)  # a chain's later steps


def chain_steps(specs: list[TaskSpec], store: Store) -> tuple[list[TaskSpec], list[str]]:
    """The later steps of the chains among `specs` that must exist (their first step
    succeeded: each started exactly once, its id derived from its predecessor's), as specs to
    check like the others; and the problems of chains that started a step they must not have
    (a step after one that did not succeed) or never started one."""
    steps: list[TaskSpec] = []
    problems: list[str] = []
    for spec in specs:
        previous = spec
        for position, step in enumerate(spec.then, start=2):
            task_id = successor_id(previous.task_id)
            succeeded = store.tasks.get(previous.task_id).status == TaskStatus.SUCCESS
            exists = bool(store.tasks.batch_get([task_id], consistent=True))
            if exists != succeeded:
                what = "never started" if succeeded else "started after no SUCCESS"
                problems.append(f"{spec.task_id}: chain step {position} {what}")
            if not exists:
                break
            following = TaskSpec(f"{spec.key}/{position}", step["type"], step["params"], task_id)
            steps.append(following)
            previous = following
    return steps, problems


def normalize(summary: Any, task_id: str) -> Any:
    """A result with the task's own id taken out, to compare with another task's."""
    return json.loads(json.dumps(summary).replace(task_id, "<task>"))


def check_task(
    spec: TaskSpec,
    store: Store,
    ledger: Ledger,
    expected: dict[str, Any],
    tally: Counter[str],
) -> list[str]:
    task_id = spec.task_id
    task, events = store.tasks.get_with_events(task_id, OWNER, event_limit=2000)
    problems: list[str] = []
    if not task.status.is_terminal:
        problems.append(f"ended {task.status}, not in a terminal state")
    derived, steps = replay_history([e.message for e in events])
    problems += [f"history: {step}" for step in steps]
    if derived != task.status:
        problems.append(f"history leads to {derived} but the task is {task.status}")
    faults = ledger.task_faults.get(task_id, Counter())
    requests = Counter(kind for _, kind, _, _ in ledger.actions.get(task_id, []))
    if task.status == TaskStatus.SUCCESS:
        result = normalize(task.result, task_id)
        if result != expected[spec.key]:
            problems.append(f"result {result} differs from the fault-free {expected[spec.key]}")
        if task.progress != 100 or task.units_done != task.units_total:
            problems.append(f"SUCCESS at {task.progress}% ({task.units_done}/{task.units_total})")
    elif task.status == TaskStatus.FAILED:
        reason = task.error.type if task.error else ""
        allowed = {
            "RuntimeError": faults["chunk_error"] > 0,  # the task's own code failed
            # Its message died after 3 deliveries and 3 more alone (an isolation queue): only
            # a fault that hit this very task does that, never a poison neighbour's.
            "DeadLetter": sum(faults.values()) > 0,
            "EnqueueFailed": faults["api_sqs_send_failure"] > 0,
            # a part failed for a reason allowed itself, or was cancelled by its owner
            "part_failed": reason == "part_failed"
            and parts_failed_for_a_reason(store, task, ledger, bool(requests["cancel"])),
            # SES failed (5xx) on every attempt the task had: retried, then FAILED, not lost
            "transient_error": faults["ses_error"] > 0,
        }
        if not allowed.get(reason, False):
            problems.append(f"FAILED with {task.error} although no such fault was injected")
    elif task.status == TaskStatus.CANCELLED and not requests["cancel"]:
        problems.append("CANCELLED although its owner never asked")
    if task.status.is_terminal and (task.lease_expires_at != 0 or task.finished_at is None):
        problems.append(f"terminal with lease {task.lease_expires_at}, finished {task.finished_at}")
    if spec.task_type == "CHUNKSUM":
        problems += check_chunks(spec, task.status, events, ledger, tally)
    if spec.task_type == "PARTSUM":
        problems += check_parts(spec, task, events, tally)
    return problems


def parts_failed_for_a_reason(store: Store, task: Any, ledger: Ledger, cancelled: bool) -> bool:
    """Whether every part that did not succeed has a reason: a fault in its own chunk or a
    dead message (FAILED), or a cancel of its parent (CANCELLED)."""
    for part in store.parts.get(task):
        faults = ledger.task_faults.get(part.task_id, Counter())
        if part.status == TaskStatus.CANCELLED and not cancelled:
            return False
        if part.status == TaskStatus.FAILED:
            kind = part.error.type if part.error else ""
            if not (kind == "DeadLetter" or (kind == "RuntimeError" and faults["chunk_error"])):
                return False
    return True


def check_parts(
    spec: TaskSpec, task: Any, events: list[TaskEvent], tally: Counter[str]
) -> list[str]:
    """A parallel task: every part finished and counted once, and a SUCCESS merged once.

    The merge's result is checked with every other result (a part lost, counted twice or
    merged twice changes the sum); here: each part in the parent's count once, no part
    left unfinished, and one "finished" line per run (a second merge that committed would
    write a second one).
    """
    problems: list[str] = []
    tally["parallel tasks"] += 1
    tally[f"parallel tasks {task.status}"] += 1
    if task.status == TaskStatus.SUCCESS and task.parts_in != list(range(task.parts_total)):
        problems.append(f"parts counted {task.parts_in} of {task.parts_total}")
    restarts = [i for i, e in enumerate(events) if e.message.startswith("retry requested")]
    last_run = events[restarts[-1] + 1 :] if restarts else events
    finished = sum(1 for e in last_run if e.message == "finished")
    if task.status == TaskStatus.SUCCESS and finished != 1:
        problems.append(f"{finished} merges committed in its last run")
    return problems


def check_chunks(
    spec: TaskSpec,
    status: TaskStatus,
    events: list[TaskEvent],
    ledger: Ledger,
    tally: Counter[str],
) -> list[str]:
    """No chunk lost, at most one repeat per fault, nothing run after a cancel took effect.

    Moments come from the task's own event log (same simulated clock as the executions), not
    from the answers the client saw: a request whose answer was lost may still have acted.
    """
    problems: list[str] = []
    runs = ledger.executions.get(spec.task_id, [])
    restarts = [e.time for e in events if e.message == "retry requested: restart"]
    bounds = [datetime.min.replace(tzinfo=UTC), *restarts, datetime.max.replace(tzinfo=UTC)]
    epochs = [[i for _, i, t in runs if lo < t < hi] for lo, hi in itertools.pairwise(bounds)]
    if status == TaskStatus.SUCCESS:
        missing = sorted(set(range(spec.params["chunks"])) - set(epochs[-1]))
        if missing:
            problems.append(f"chunks never executed: {missing}")
    repeats = sum(n - 1 for epoch in epochs for n in Counter(epoch).values() if n > 1)
    faults = ledger.task_faults.get(spec.task_id, Counter())
    allowed = sum(n for kind, n in faults.items() if kind in REPEAT_ALLOWING)
    tally["chunks executed"] += len(runs)
    tally["chunks repeated"] += repeats
    tally["repeats allowed (faults that hit those tasks)"] += allowed
    tally["chunks re-run by restarts"] += sum(map(len, epochs[:-1]))
    if repeats > allowed:
        problems.append(
            f"{repeats} repeated chunk(s) but only {allowed} fault(s) hit the task "
            f"({dict(faults)}); executions {[i for _, i, _ in runs]}"
        )
    retries = [e.time for e in events if e.message.startswith("retry requested")]
    for event in events:
        # A cancel of a PENDING task ends it at once; of a RUNNING one, at the next checkpoint
        # (the chunk in flight, or the first one of a worker that claimed just before).
        limit = {"cancelled before it started": 0, "cancelled": 0, "cancel requested": 1}.get(
            event.message
        )
        if limit is None:
            continue
        until = min((t for t in retries if t > event.time), default=bounds[-1])
        after = [i for _, i, t in runs if event.time < t < until]
        if len(after) > limit:
            problems.append(f"{len(after)} chunk(s) started after '{event.message}': {after}")
    return problems


def recount(store: Store) -> tuple[Counter[tuple[str, str]], list[str]]:
    """Every task of the owner, from the list pages (index Query + BatchGetItem)."""
    counts: Counter[tuple[str, str]] = Counter()
    ids: list[str] = []
    cursor = None
    while True:
        page = store.listing.list_tasks(OWNER, limit=500, cursor=cursor)  # 1 index read per shard
        for task in page.tasks:
            counts[(task.status.value, task.task_type)] += 1
            ids.append(task.task_id)
        cursor = page.next_cursor
        if cursor is None:
            return counts, ids


def count_stream(harness: Harness) -> None:
    """The counters function over everything new in the stream, without faults."""
    CounterStream(harness.stream, batch_size=1000).drain()


def counters(store: Store) -> Counter[tuple[str, str]]:
    raw = store.counters.stats(OWNER).counts
    return Counter(
        {(status, kind): n for status, by_type in raw.items() for kind, n in by_type.items() if n}
    )
