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
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from taskqueue.chains import Chains
from taskqueue.dispatch import MAX_DELAY_SECONDS, Dispatcher
from taskqueue.errors import (
    AllItemsFailed,
    GuardFailed,
    InvalidTransition,
    LeaseLost,
    PartsFailed,
    TaskNotFound,
    TaskTypeFailure,
    TransitionConflict,
    error_code,
    is_permanent,
)
from taskqueue.fanout import FanOut, queue_of
from taskqueue.lifecycle import Action, Guard, Transition, decide, row
from taskqueue.models import (
    ChunkState,
    Task,
    TaskError,
    TaskMessage,
    TaskResult,
    TaskStatus,
    new_generation,
    next_generation,
    utcnow,
)
from taskqueue.observability import logger, metrics
from taskqueue.store import Store
from taskqueue.task_types import REGISTRY
from taskqueue.task_types.base import Splits, TaskContext, TaskType, guarded, splits

RemainingMillis = Callable[[], int]
# The claims a message can ask for without a read: start a run, or resume a handed-over one.
START = row(Action.CLAIM, TaskStatus.PENDING)
RESUME = row(Action.CLAIM, TaskStatus.RUNNING, Guard.LEASE_RELEASED)
MILESTONES = (25, 50, 75)
# A chunk starts only with this multiple of the task's chunk time left (chunks vary), and
# never with less than the engine's floor (`min_chunk_ms`) left: a first chunk has no measure.
CHUNK_TIME_FACTOR = 1.5
CHUNK_TIME_WEIGHT = 0.5  # of the newest chunk in the mean: recent chunks predict the next best


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
    SPLIT = "split"  # a parallel task's parts were planned and started: it waits for them
    WAITING = "waiting"  # a parallel task looked: some parts are still running


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
    min_chunk_ms: int = 1_000
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic  # chunk timing and time slices
    max_parallel: int = 64
    # A record's time slice while other records of its batch wait (WORKER_QUANTUM_SECONDS).
    quantum_seconds: float = 10.0
    fanout: FanOut = field(init=False)
    chains: Chains = field(init=False)

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
        end = self.monotonic() + self.quantum_seconds
        # `_run` keeps safety_margin_ms in hand: the slice ends at `end`, not a margin before.
        margin = self.safety_margin_ms
        return lambda: min(remaining_ms(), int((end - self.monotonic()) * 1000) + margin)

    def __post_init__(self) -> None:
        self.fanout = FanOut(self.store, self.dispatcher, self.max_parallel)
        self.chains = Chains(self.store, self.dispatcher)

    def process(
        self, message: TaskMessage, remaining_ms: RemainingMillis, message_id: str | None = None
    ) -> Outcome:
        """Run what `message` asks for; `message_id`, SQS's id of this delivery, makes a
        schedule hop repeatable by a redelivery of the same message."""
        lease = secrets.token_hex(8)  # a 64-bit fencing token
        budget_ms = remaining_ms()
        received = self.monotonic()
        # The lease outlives this invocation, so only a worker that died loses it.
        lease_seconds = budget_ms // 1000 + self.lease_grace_seconds
        claimed = self._claim(message, lease, lease_seconds, message_id)
        if isinstance(claimed, Outcome):
            return claimed

        def left_ms() -> float:
            # What was left at the message, less the time since: no second call to Lambda's
            # clock before the first chunk.
            return budget_ms - (self.monotonic() - received) * 1000

        try:
            return self._run(claimed, lease, lease_seconds, remaining_ms, left_ms)
        except LeaseLost:
            logger.warning("lease lost: another worker owns the task now")
            return Outcome.LEASE_LOST

    def _claim(
        self, message: TaskMessage, lease: str, lease_seconds: int, message_id: str | None
    ) -> Task | Outcome:
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
                    guess,
                    message.task_id,
                    message.owner,
                    message.task_type,
                    lease,
                    lease_seconds,
                    message.generation,
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
            return self._hop(current, message, message_id, now)
        except InvalidTransition:
            if current.part is not None:
                # A finished part's message again (a duplicate, or a redelivery after a crash
                # before its count): count it again (refused if counted) and send what follows.
                self.fanout.part_finished(current, current.status == TaskStatus.SUCCESS)
            elif current.status == TaskStatus.SUCCESS:
                self._after_success_again(current)
            return Outcome.DROPPED  # finished already
        try:
            claimed = self.store.tasks.claim(
                transition,
                current.task_id,
                current.owner,
                current.task_type,
                lease,
                lease_seconds,
                message.generation,
            )
        except TransitionConflict:
            logger.info("duplicate or stale message dropped")
            return Outcome.DROPPED
        return self._claimed(claimed, transition)

    def _after_success_again(self, task: Task) -> None:
        """A finished task's message again (a duplicate, or a redelivery after a crash that
        followed its SUCCESS): what follows a SUCCESS is repeated, each part idempotent."""
        if task.parts_total:
            # The parts' objects: deleted by the first run unless it died first.
            result = TaskResult(location=task.result_location, outputs=task.outputs)
            self.fanout.discard_parts(self.context_factory(task), result)
        if task.chain_next:
            # The next step of its chain: created once, sent if unsent.
            self.chains.start_next(task, task.result_location)

    def _hop(
        self, task: Task, message: TaskMessage, message_id: str | None, now: datetime
    ) -> Outcome:
        """Not due yet: only the task's current message hands on a next one (a new
        generation, written before it is sent), so a duplicate never doubles the chain."""
        generation = next_generation(message.generation, message_id)
        try:
            self.store.tasks.hop(task, message.generation, generation)
        except TransitionConflict:
            logger.info("duplicate or stale message of a scheduled task dropped")
            return Outcome.DROPPED
        assert task.run_at is not None
        wait = (task.run_at - now).total_seconds()
        hop = int(min(MAX_DELAY_SECONDS, wait + 0.999))
        message = TaskMessage.of(task, generation=generation)
        self.dispatcher.send(message, queue_of(task), hop)
        return Outcome.SCHEDULED

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
        self,
        task: Task,
        lease: str,
        lease_seconds: int,
        remaining_ms: RemainingMillis,
        left_at_first_chunk: Callable[[], float],
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
        splitter = splits(task_type) if task.part is None else None
        if splitter is not None and task.parts_total:
            return self._gather(task, lease, splitter, params)
        ctx = self.context_factory(task)
        saved = task.state
        slowest_ms = 0.0
        ran = 0
        try:
            state = saved or guarded(partial(task_type.start, params, ctx))
            # This task's chunk time, measured by earlier invocations (None: no chunk yet).
            estimate = state.chunk_ms
            while not state.done:
                if splitter is not None:
                    plan = guarded(partial(splitter.plan, params, state, ctx))
                    if plan is not None:
                        self.fanout.split(task, lease, state, plan)
                        return Outcome.SPLIT
                if task.timed_out(self.clock()):
                    return self._fail(task, lease, saved, _timeout_error(task))
                if (
                    ran == 0
                    and not state.deferred
                    and self._too_little_time(left_at_first_chunk(), estimate)
                ):
                    # Too late in this invocation (a record late in its batch) for this
                    # task's chunk: hand over before starting one that could not finish.
                    state = state.model_copy(update={"deferred": True})
                    wait, hand_over, milestone = 0, True, None
                else:
                    started = self.monotonic()
                    state = guarded(partial(task_type.run_chunk, params, state, ctx))
                    elapsed_ms = (self.monotonic() - started) * 1000
                    ran += 1
                    slowest_ms = max(slowest_ms, elapsed_ms)
                    estimate = _mean_chunk_ms(estimate, elapsed_ms)
                    state = state.model_copy(update={"chunk_ms": estimate, "deferred": False})
                    metrics.add_metric(name="ChunkDuration", unit="Milliseconds", value=elapsed_ms)
                    if state.done:
                        break
                    wait = self._wait_seconds(state)
                    out_of_time = self._too_little_time(remaining_ms(), max(estimate, slowest_ms))
                    hand_over = out_of_time or wait > 0
                    milestone = _milestone(saved, state)
                generation = new_generation() if hand_over else None
                current = self.store.tasks.checkpoint(
                    task,
                    lease,
                    state,
                    lease_seconds,
                    release=hand_over,
                    generation=generation,
                    milestone=milestone,
                )
                saved = state
                if current.cancel_requested:
                    # The lease token is still ours even when just released, so this is fenced.
                    return self._cancel(task, lease, state)
                if hand_over:
                    # Paced types (EMAIL) wait in the queue, not in a billed invocation.
                    # `current` carries the state: a started task's queue (fanout.queue_of).
                    self._send_owed(
                        current, TaskMessage.of(task, resume=True, generation=generation), wait
                    )
                    return Outcome.CONTINUED
            finish = task_type.finish
            if task.part is not None:
                finish = splits(task_type).finish_part  # type: ignore[union-attr]
            result = guarded(partial(finish, params, state, ctx))
        except TaskTypeFailure as failure:
            # The task's own code failed: that is data (retry or FAILED), not a worker crash.
            # AWS errors of our own writes propagate instead, so SQS redelivers the message.
            logger.exception("chunk failed")
            return self._chunk_failed(task, lease, saved, failure.cause)
        return self._succeed(task, lease, state, result)

    def _gather(self, task: Task, lease: str, splitter: Splits, params: Any) -> Outcome:
        """A split task claimed: merge when its parts are all in, else wait again."""
        try:
            result = self.fanout.gather(task, lease, splitter, params, self.context_factory)
        except PartsFailed as failed:
            return self._fail(task, lease, task.state, _task_error(failed))
        except TaskTypeFailure as failure:
            logger.exception("merge failed")
            return self._chunk_failed(task, lease, task.state, failure.cause)
        if result is None:
            return Outcome.WAITING
        assert task.state is not None
        # Every part's units are done: the parent's state says so (SUCCESS means all of it).
        done = {"done": True, "units_done": task.state.units_total}
        outcome = self._succeed(task, lease, task.state.model_copy(update=done), result)
        if outcome == Outcome.SUCCEEDED:
            self.fanout.discard_parts(self.context_factory(task), result)
        return outcome

    def _succeed(self, task: Task, lease: str, state: ChunkState, result: TaskResult) -> Outcome:
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
        if task.part is not None:
            self.fanout.part_finished(task, succeeded=True)
        if task.chain_next:
            self.chains.start_next(task, result.location)
        return Outcome.SUCCEEDED

    def _too_little_time(self, left_ms: float, chunk_ms: float | None) -> bool:
        """Whether a chunk expected to take `chunk_ms` could not finish in `left_ms`."""
        expected = max(float(self.min_chunk_ms), CHUNK_TIME_FACTOR * (chunk_ms or 0.0))
        return left_ms - self.safety_margin_ms < expected

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
        generation = new_generation()
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
            generation,
        )
        # Its queue goes by the state it saved (fanout.queue_of), not the one it was claimed with.
        routed = task.model_copy(update={"state": saved})
        self._send_owed(routed, TaskMessage.of(task, generation=generation), delay)
        metrics.add_metric(name="TasksRetried", unit="Count", value=1)
        return Outcome.RETRYING

    def _send_owed(self, task: Task, message: TaskMessage, delay: int) -> None:
        """Send the message of a write that released the task for it (its generation). If the
        send fails, the task is put in the sweeper's index before the error goes on: the
        earlier message is then no longer the current one, and should it die without
        claiming again, nothing else would ever send this one."""
        try:
            self.dispatcher.send(message, queue_of(task), delay)
        except (ClientError, BotoCoreError):
            assert message.generation is not None
            due = self.clock() + timedelta(seconds=delay)
            self.store.tasks.owe_send(task.task_id, message.generation, due)
            raise

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
        if task.part is not None:
            self.fanout.part_finished(task, succeeded=False)
        return Outcome.FAILED

    def _cancel(self, task: Task, lease: str, state: ChunkState | None) -> Outcome:
        self.store.tasks.finish(Action.STOP, task, lease, state=state)
        metrics.add_metric(name="TasksCancelled", unit="Count", value=1)
        if task.part is not None:
            self.fanout.part_finished(task, succeeded=False)
        return Outcome.CANCELLED


def _task_error(exc: Exception) -> TaskError:
    code = error_code(exc)
    return TaskError(type=code, message=str(exc)[:1000] or code)


def _timeout_error(task: Task) -> TaskError:
    return TaskError(
        type="TaskTimeout", message=f"ran longer than its timeout of {task.timeout_seconds} s"
    )


def _mean_chunk_ms(mean: int | None, elapsed_ms: float) -> int:
    """The task's chunk time with one more chunk measured (whole ms: the checkpoint stays small)."""
    if mean is None:
        return round(elapsed_ms)
    return round((1 - CHUNK_TIME_WEIGHT) * mean + CHUNK_TIME_WEIGHT * elapsed_ms)


def _milestone(before: ChunkState | None, after: ChunkState) -> dict[str, int] | None:
    """The fields of a checkpoint's event line when it crossed 25, 50 or 75 %."""
    old = before.progress if before else 0
    crossed = [m for m in MILESTONES if old < m <= after.progress]
    if not crossed:
        return None
    return {"percent": crossed[-1], "done": after.units_done, "total": after.units_total}
