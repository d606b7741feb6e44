"""The chunk engine: claim -> run chunks -> checkpoint -> finish, continue or fail."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TypeVar

from pydantic import ValidationError

from taskqueue.dispatch import MAX_DELAY_SECONDS, Dispatcher
from taskqueue.errors import (
    AllItemsFailed,
    GuardFailed,
    InvalidTransition,
    LeaseLost,
    TaskNotFound,
    TaskTypeFailure,
    TransitionConflict,
    error_code,
    is_permanent,
)
from taskqueue.lifecycle import Action, Guard, Transition, decide, row
from taskqueue.models import (
    ChunkState,
    Task,
    TaskError,
    TaskMessage,
    TaskResult,
    TaskStatus,
    utcnow,
)
from taskqueue.observability import logger, metrics
from taskqueue.store import Store
from taskqueue.task_types import REGISTRY
from taskqueue.task_types.base import TaskContext, TaskType

RemainingMillis = Callable[[], int]
# The claims a message can ask for without a read: start a run, or resume a handed-over one.
START = row(Action.CLAIM, TaskStatus.PENDING)
RESUME = row(Action.CLAIM, TaskStatus.RUNNING, Guard.LEASE_RELEASED)
T = TypeVar("T")
MILESTONES = (25, 50, 75)


class Outcome(StrEnum):
    """What one message led to; the worker acknowledges the message in every case."""

    MISSING = "missing"
    DROPPED = "dropped"  # terminal already, or a duplicate that lost the claim
    SCHEDULED = "scheduled"  # not due yet: re-sent in a hop of at most 900 s
    CONTINUED = "continued"  # out of time: a continuation message carries on
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRYING = "retrying"
    LEASE_LOST = "lease_lost"


def backoff_seconds(attempt: int, rng: random.Random, base: float = 5.0) -> int:
    """Exponential backoff with equal jitter, capped at SQS's 900 s."""
    ceiling = min(float(MAX_DELAY_SECONDS), base * 2 ** max(0, attempt - 1))
    return int(min(MAX_DELAY_SECONDS, ceiling / 2 + rng.uniform(0, ceiling / 2)))


@dataclass
class Engine:
    store: Store
    dispatcher: Dispatcher
    context_factory: Callable[[Task], TaskContext]
    registry: Mapping[str, TaskType] = field(default_factory=lambda: REGISTRY)
    lease_grace_seconds: int = 60
    backoff_base_seconds: float = 5.0
    safety_margin_ms: int = 5_000
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    # A record's time slice while other records of its batch wait (WORKER_QUANTUM_SECONDS).
    quantum_seconds: float = 10.0
    ticks: Callable[[], float] = time.monotonic  # the slice's clock (a test's fake one)

    def time_slice(self, remaining_ms: RemainingMillis, others_waiting: bool) -> RemainingMillis:
        """A record's budget: the invocation's time left, cut to one quantum from now while
        other records of the batch wait behind it.

        When the slice is spent the task checkpoints and continues through its continuation
        message (as when the invocation runs out), so a small task behind a long one starts
        within a quantum plus one chunk, not after the long task's whole run. The last record
        of a batch keeps the rest of the invocation: nobody waits behind it.
        """
        if not others_waiting:
            return remaining_ms
        end = self.ticks() + self.quantum_seconds
        # `_run` keeps safety_margin_ms in hand: the slice ends at `end`, not a margin before.
        margin = self.safety_margin_ms
        return lambda: min(remaining_ms(), int((end - self.ticks()) * 1000) + margin)

    def process(self, message: TaskMessage, remaining_ms: RemainingMillis) -> Outcome:
        lease = secrets.token_hex(8)  # a 64-bit fencing token
        # The lease outlives this invocation, so only a worker that died loses it.
        lease_seconds = remaining_ms() // 1000 + self.lease_grace_seconds
        claimed = self._claim(message, lease, lease_seconds)
        if isinstance(claimed, Outcome):
            return claimed
        try:
            return self._run(claimed, lease, lease_seconds, remaining_ms)
        except LeaseLost:
            logger.warning("lease lost: another worker owns the task now")
            return Outcome.LEASE_LOST

    def _claim(self, message: TaskMessage, lease: str, lease_seconds: int) -> Task | Outcome:
        """The task under a fresh lease, or what became of the message.

        Commonly one conditional write, returning the task: the message says whose task it
        is and whether it starts a run (PENDING and due) or continues a handed-over one. A
        refused write returns the task as it found it, from which the lifecycle decides: a
        claim after all (a take-over of an expired lease, a wrong guess: a second write), a
        schedule hop, or a duplicate or finished message to drop.
        """
        current: Task | None
        if message.owner and message.task_type:
            guess = RESUME if message.resume else START
            try:
                claimed = self.store.tasks.claim(
                    guess, message.task_id, message.owner, message.task_type, lease, lease_seconds
                )
                return self._claimed(claimed, guess)
            except TransitionConflict as refused:
                current = refused.current
        else:
            current = self._read(message.task_id)  # a message from before the hints
        if current is None:
            logger.warning("message for a task that does not exist", task_id=message.task_id)
            return Outcome.MISSING
        logger.append_keys(task_id=current.task_id, task_type=current.task_type)
        now = self.clock()
        try:
            transition = decide(current, Action.CLAIM, now)
        except GuardFailed as refused:
            if refused.guard != Guard.DUE:
                logger.info("duplicate or stale message dropped")
                return Outcome.DROPPED
            assert current.run_at is not None
            wait = (current.run_at - now).total_seconds()
            hop = int(min(MAX_DELAY_SECONDS, wait + 0.999))
            self.dispatcher.send(TaskMessage.of(current), current.priority.value, hop)
            return Outcome.SCHEDULED
        except InvalidTransition:
            return Outcome.DROPPED  # finished already
        try:
            claimed = self.store.tasks.claim(
                transition, current.task_id, current.owner, current.task_type, lease, lease_seconds
            )
        except TransitionConflict:
            logger.info("duplicate or stale message dropped")
            return Outcome.DROPPED
        return self._claimed(claimed, transition)

    def _read(self, task_id: str) -> Task | None:
        try:
            return self.store.tasks.get(task_id)
        except TaskNotFound:
            return None

    def _claimed(self, task: Task, transition: Transition) -> Task:
        logger.append_keys(task_id=task.task_id, task_type=task.task_type)
        if transition.starts_attempt:
            metrics.add_metric(name="TasksStarted", unit="Count", value=1)
        return task

    def _run(
        self, task: Task, lease: str, lease_seconds: int, remaining_ms: RemainingMillis
    ) -> Outcome:
        task_type = self.registry.get(task.task_type)
        if task_type is None:
            return self._fail(
                task, lease, task.state, TaskError(type="UnknownTaskType", message=task.task_type)
            )
        try:
            params = task_type.params_model.model_validate(task.params)
        except ValidationError as exc:
            return self._fail(
                task, lease, task.state, TaskError(type="InvalidParams", message=str(exc)[:1000])
            )
        if task.cancel_requested:
            return self._cancel(task, lease, task.state)
        if task.timed_out(self.clock()):
            return self._fail(task, lease, task.state, _timeout_error(task))
        ctx = self.context_factory(task)
        saved = task.state
        slowest_ms = 0.0
        try:
            state = saved or _guarded(partial(task_type.start, params, ctx))
            while not state.done:
                if task.timed_out(self.clock()):
                    return self._fail(task, lease, saved, _timeout_error(task))
                started = time.monotonic()
                state = _guarded(partial(task_type.run_chunk, params, state, ctx))
                elapsed_ms = (time.monotonic() - started) * 1000
                slowest_ms = max(slowest_ms, elapsed_ms)
                metrics.add_metric(name="ChunkDuration", unit="Milliseconds", value=elapsed_ms)
                if state.done:
                    break
                wait = self._wait_seconds(state)
                out_of_time = remaining_ms() - self.safety_margin_ms < slowest_ms * 1.5
                hand_over = out_of_time or wait > 0
                current = self.store.tasks.checkpoint(
                    task,
                    lease,
                    state,
                    lease_seconds,
                    release=hand_over,
                    milestone=_milestone(saved, state),
                )
                saved = state
                if current.cancel_requested:
                    # The lease token is still ours even when just released, so this is fenced.
                    return self._cancel(task, lease, state)
                if hand_over:
                    # Paced types (EMAIL) wait in the queue, not in a billed invocation.
                    self.dispatcher.send(
                        TaskMessage.of(task, resume=True), task.priority.value, wait
                    )
                    return Outcome.CONTINUED
            result = _guarded(partial(task_type.finish, params, state, ctx))
        except TaskTypeFailure as failure:
            # The task's own code failed: that is data (retry or FAILED), not a worker crash.
            # AWS errors of our own writes propagate instead, so SQS redelivers the message.
            logger.exception("chunk failed")
            return self._chunk_failed(task, lease, saved, failure.cause)
        if result.total_items and result.failed_items >= result.total_items:
            # Not a success of any kind: FAILED, with the per-item errors kept in the result.
            failed = AllItemsFailed(f"all {result.total_items} items failed; see the result")
            return self._fail(task, lease, state, _task_error(failed), result)
        self.store.tasks.finish(
            Action.SUCCEED,
            task,
            lease,
            state=state,
            result=result.summary,
            result_location=result.location,
            outputs=result.outputs,
            failed_items=result.failed_items,
        )
        metrics.add_metric(name="TasksSucceeded", unit="Count", value=1)
        return Outcome.SUCCEEDED

    def _wait_seconds(self, state: ChunkState) -> int:
        """Seconds until a paced state may run its next chunk; 0 when it may run now (a wait
        under a second is slept here: a message round trip costs more than that)."""
        if state.resume_at is None:
            return 0
        left = (state.resume_at - self.clock()).total_seconds()
        if left <= 0:
            return 0
        if left < 1:
            self.sleep(left)
            return 0
        return int(min(MAX_DELAY_SECONDS, left + 0.999))

    def _chunk_failed(
        self, task: Task, lease: str, saved: ChunkState | None, exc: Exception
    ) -> Outcome:
        error = _task_error(exc)
        if is_permanent(exc) or task.attempts >= task.max_attempts:
            # A permanent error would fail the same way on every attempt: no retries.
            return self._fail(task, lease, saved, error)
        delay = backoff_seconds(task.attempts, self.rng, self.backoff_base_seconds)
        retry_at = self.clock() + timedelta(seconds=delay)
        self.store.tasks.release_for_retry(
            task,
            lease,
            error,
            retry_at,
            {
                "attempts": task.attempts,
                "error": f"{error.type}: {error.message[:200]}",
                "delay": delay,
            },
        )
        self.dispatcher.send(TaskMessage.of(task), task.priority.value, delay)
        metrics.add_metric(name="TasksRetried", unit="Count", value=1)
        return Outcome.RETRYING

    def _fail(
        self,
        task: Task,
        lease: str,
        state: ChunkState | None,
        error: TaskError,
        result: TaskResult | None = None,
    ) -> Outcome:
        self.store.tasks.finish(
            Action.FAIL,
            task,
            lease,
            fields={"attempts": task.attempts, "error": f"{error.type}: {error.message[:300]}"},
            state=state,
            error=error,
            result=result.summary if result else None,
            result_location=result.location if result else None,
            outputs=result.outputs if result else (),
            failed_items=result.failed_items if result else 0,
        )
        metrics.add_metric(name="TasksFailed", unit="Count", value=1)
        return Outcome.FAILED

    def _cancel(self, task: Task, lease: str, state: ChunkState | None) -> Outcome:
        self.store.tasks.finish(Action.STOP, task, lease, state=state)
        metrics.add_metric(name="TasksCancelled", unit="Count", value=1)
        return Outcome.CANCELLED


def _guarded(call: Callable[[], T]) -> T:
    """Run task-type code, marking its exceptions apart from the engine's own."""
    try:
        return call()
    except Exception as exc:
        raise TaskTypeFailure(exc) from exc


def _task_error(exc: Exception) -> TaskError:
    code = error_code(exc)
    return TaskError(type=code, message=str(exc)[:1000] or code)


def _timeout_error(task: Task) -> TaskError:
    return TaskError(
        type="TaskTimeout", message=f"ran longer than its timeout of {task.timeout_seconds} s"
    )


def _milestone(before: ChunkState | None, after: ChunkState) -> dict[str, int] | None:
    """The fields of a checkpoint's event line when it crossed 25, 50 or 75 %."""
    old = before.progress if before else 0
    crossed = [m for m in MILESTONES if old < m <= after.progress]
    if not crossed:
        return None
    return {"percent": crossed[-1], "done": after.units_done, "total": after.units_total}
