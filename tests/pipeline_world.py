"""The shared in-process world of the pipeline tests: a controllable task type, the worker
with its event source mapping stand-in, clocks that can be moved, crashes on demand."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
from pydantic import BaseModel, Field

from devstack.harness import (
    Pipeline,
    StreamDrain,
    every_invocation_fresh,
    load_function,
    reset_caches,
)
from taskqueue import wiring
from taskqueue.engine import Outcome
from taskqueue.errors import InvalidInput
from taskqueue.fanout import queue_of
from taskqueue.models import (
    ChunkState,
    Task,
    TaskMessage,
    TaskResult,
    TaskStatus,
    new_generation,
    utcnow,
)
from taskqueue.store import Store
from taskqueue.task_types import REGISTRY
from taskqueue.task_types.base import TaskContext

OWNER = "user-123"


class CountingParams(BaseModel):
    chunks: int = Field(ge=1, le=1000)
    fail_on_chunk: int | None = None
    fail_times: int = 0
    permanent: bool = False  # the failure on fail_on_chunk is a PermanentError
    pace_seconds: float = 0  # each chunk asks the engine to wait this long before the next
    failed_items: int = 0  # the result counts `chunks` items, this many of them failed


@dataclass
class CountingType:
    """A task type whose every chunk is observable: it records each execution."""

    name: str = "COUNTING"
    description: str = "counts chunks"
    progress_unit: str = "chunks"
    params_model: type[BaseModel] = CountingParams
    executions: list[tuple[str, int]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    after_chunk: Callable[[str, int], None] | None = None

    def start(self, params: CountingParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=params.chunks, cursor=0, data={"sum": 0, "seen": []})

    def run_chunk(self, params: CountingParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        index = int(state.cursor)
        self.executions.append((ctx.task_id, index))
        if index == params.fail_on_chunk and self.failures[ctx.task_id] < params.fail_times:
            self.failures[ctx.task_id] += 1
            if params.permanent:
                raise InvalidInput(f"chunk {index} has input no attempt can read")
            raise RuntimeError(f"chunk {index} broke")
        data = {"sum": state.data["sum"] + index, "seen": [*state.data["seen"], index]}
        new = ChunkState(
            units_total=params.chunks,
            units_done=index + 1,
            cursor=index + 1,
            data=data,
            done=index + 1 >= params.chunks,
            resume_at=utcnow() + timedelta(seconds=params.pace_seconds)
            if params.pace_seconds
            else None,
        )
        if self.after_chunk:
            self.after_chunk(ctx.task_id, index)
        return new

    def finish(self, params: CountingParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        summary = {"sum": state.data["sum"], "seen": state.data["seen"]}
        if not params.failed_items:
            return TaskResult(summary=summary)
        return TaskResult(
            summary=summary, total_items=params.chunks, failed_items=params.failed_items
        )


@dataclass
class World:
    resources: Any
    worker: Any
    store: Store
    counting: CountingType
    sqs: Any
    queue_url: str
    high_queue_url: str
    dlq_url: str
    counters: StreamDrain
    parts_queue_url: str = ""

    def submit(
        self, params: dict[str, Any], task_type: str = "COUNTING", max_attempts: int = 3
    ) -> str:
        now = utcnow()
        task = Task(
            task_id=uuid.uuid4().hex,
            owner=OWNER,
            task_type=task_type,
            params=params,
            status=TaskStatus.PENDING,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
            generation=new_generation(),
        )
        self.store.tasks.create(task)
        # As the API sends it: a parallel task's first message to the parts' queue.
        wiring.engine().dispatcher.send(TaskMessage.of(task), queue_of(task))
        return task.task_id

    def message(self, task_id: str, *, hinted: bool = True, resume: bool = False) -> TaskMessage:
        """The task's message as the API or the engine sends it (owner and type: claimed in
        one write), or bare, as messages sent before those were (a read, then the claim)."""
        if not hinted:
            return TaskMessage(task_id=task_id)
        return TaskMessage.of(self.task(task_id), resume=resume)

    _pipeline: Pipeline | None = None

    def pipeline(self, budget: Callable[[], Callable[[], int]] | None = None) -> Pipeline:
        """The one event source mapping of this world (it remembers invisible messages)."""
        if self._pipeline is None:
            queues = [self.high_queue_url, self.queue_url, self.parts_queue_url]
            self._pipeline = Pipeline(self.sqs, [url for url in queues if url])
        self._pipeline.budget = budget or every_invocation_fresh
        return self._pipeline

    def redeliver_after_crash(self) -> None:
        """Time passes beyond the lease and the visibility timeout: SQS redelivers."""
        self.advance_clock(2000)
        self.pipeline().expire_visibility()

    def task(self, task_id: str) -> Task:
        return self.store.tasks.get(task_id)

    def cancel(self, task_id: str) -> Task:
        """DELETE /tasks/{id}, as the API does it."""
        return wiring.service().cancel(OWNER, task_id)

    def retry(self, task_id: str, restart: bool) -> Task:
        """POST /tasks/{id}/retry, as the API does it (the message included)."""
        return wiring.service().retry(OWNER, task_id, restart)

    def advance_clock(self, seconds: float) -> None:
        """Move the engine's and the store's time forward (leases, schedules)."""
        engine = wiring.engine()
        moved = engine.clock() + timedelta(seconds=seconds)
        offset = moved - utcnow()
        engine.clock = engine.store.table.clock = lambda: utcnow() + offset
        self.store.table.clock = engine.clock


def make_world(aws: Any, function_env: Callable[[str], dict[str, str]]) -> Iterator[World]:
    env = function_env("WorkerFunction")
    reset_caches()
    worker = load_function("worker")
    engine = wiring.engine()
    counting = CountingType()
    engine.registry = {**REGISTRY, "COUNTING": counting}
    engine.safety_margin_ms = 0
    engine.backoff_base_seconds = 0  # retried messages are due at once in tests
    store = wiring.new_store(wiring.settings())
    yield World(
        aws,
        worker,
        store,
        counting,
        boto3.client("sqs"),
        env["QUEUE_URL"],
        env["HIGH_PRIORITY_QUEUE_URL"],
        env["DLQ_URL"],
        StreamDrain.of(env["TABLE_NAME"]),
        env["PARTS_QUEUE_URL"],
    )
    reset_caches()


def countdown(chunks_per_invocation: int) -> Callable[[], Callable[[], int]]:
    """Each invocation gets time for `chunks_per_invocation` chunks, then runs out."""

    def new_invocation() -> Callable[[], int]:
        calls = itertools.count()

        def remaining() -> int:
            call = next(calls)  # call 0 sizes the lease; call k follows chunk k
            if call == 0:
                return 300_000
            return 60_000 if call < chunks_per_invocation else -1

        return remaining

    return new_invocation


def in_other_worker(work: Callable[[], Outcome]) -> Outcome:
    """Run `work` as a second, concurrent worker would: on its own thread and stack."""
    result: list[Outcome] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join(timeout=60)
    assert result, "the second worker did not finish"
    return result[0]


class Crash(Exception):
    """A worker dying between two AWS calls (raised from a botocore hook)."""


@contextmanager
def crash_once(
    client: Any, operation: str, hits: Callable[[dict[str, Any]], bool]
) -> Iterator[list[str]]:
    """Within the block, the worker dies at the first call of `operation` ("dynamodb.PutItem")
    whose parameters `hits`, before the call is made. Yields the list that records it."""
    crashed: list[str] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        if not crashed and hits(params):
            crashed.append(operation)
            raise Crash(f"worker killed before its {operation}")

    client.meta.events.register(f"before-parameter-build.{operation}", before)
    try:
        yield crashed
    finally:
        client.meta.events.unregister(f"before-parameter-build.{operation}", before)


def crash_on_checkpoint(client: Any, number: int, *, after: bool) -> Callable[[], None]:
    """Crash the worker at its `number`-th checkpoint write, before or after it lands."""
    seen = {"n": 0, "armed": False}

    def before(params: dict[str, Any], **_: Any) -> None:
        if "#state = :state" in (params.get("UpdateExpression") or ""):
            seen["n"] += 1
            if seen["n"] == number:
                if not after:
                    raise Crash(f"worker killed before checkpoint {number} was written")
                seen["armed"] = True

    def after_call(**_: Any) -> None:
        if seen["armed"]:
            seen["armed"] = False
            raise Crash(f"worker killed after checkpoint {number} was written")

    client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", before)
    client.meta.events.register("after-call.dynamodb.UpdateItem", after_call)

    def undo() -> None:
        client.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", before)
        client.meta.events.unregister("after-call.dynamodb.UpdateItem", after_call)

    return undo
