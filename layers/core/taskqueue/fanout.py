"""Parallel tasks: split a task into parts, start them in lanes, count them in, merge once.

The parts are tasks of their own (ids "<parent>.<n>"): the engine claims, checkpoints,
leases and retries each like any task. What this module adds:

- split: the parts' items are written, then the parent records their number and releases
  its lease (it waits, costing nothing), then the first `max_parallel` parts are sent
  (each held back by SQS as long as the plan's `start_after` says, 15 minutes at most).
- a part that finishes (succeeded, failed or cancelled) is counted on its parent by one
  conditional write (store.parts.count: each index once). If that completes the count, the
  part sends its parent's message; otherwise it sends the next part of its lane. A message
  of a finished part (a duplicate, or a redelivery after a crash between the part's finish
  and its count) repeats exactly that, so neither count nor message is ever lost. The
  parent's message goes to the parts' queue too: on its priority's queue a lone message
  waits out the batching window (a second) before the merge can start.
- gather: the parent, claimed by that message, merges when every part is in (once: its
  claim is exclusive and its SUCCESS is fenced by its lease); else it relaunches what is
  missing and releases itself, on the condition that no part was counted since it read
  itself, so a count racing the release is never left unanswered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskqueue.dispatch import Dispatcher
from taskqueue.errors import LeaseLost, PartsFailed, TransitionConflict
from taskqueue.models import ChunkState, Task, TaskMessage, TaskResult, TaskStatus, part_id
from taskqueue.observability import logger, metrics
from taskqueue.store import Store
from taskqueue.task_types import _s3
from taskqueue.task_types.base import Plan, Splits, TaskContext

FANOUT = "fanout"  # the key of the parent's state data that says it was split
DEFAULT_MAX_PARALLEL = 64
# Parts go to a queue of their own, read one message per invocation (template.yaml): sent
# together, they must not run one after another in one batch.
PARTS_QUEUE = "parts"


def queue_of(task: Task) -> str:
    """The queue of a task's messages: its priority's, or the parts' for a part and for a
    parallel task's first claim (`max_parallel` over 1, not started: the claim that plans
    it). Every hop of a fan-out skips the priority queues' batching window, which holds a
    lone message a second on a quiet system; a parent that did not split goes on from its
    priority's queue."""
    if task.part is not None:
        return PARTS_QUEUE
    if task.state is None and _asks_parallel(task.params):
        return PARTS_QUEUE
    return task.priority.value


def _asks_parallel(params: dict[str, Any]) -> bool:
    value = params.get("max_parallel")
    return isinstance(value, int) and value > 1


@dataclass
class FanOut:
    store: Store
    dispatcher: Dispatcher
    # The most parts of one task that may run at once, whatever its params ask for.
    max_parallel: int = DEFAULT_MAX_PARALLEL

    # ------------------------------------------------------------------ split

    def split(self, task: Task, lease: str, state: ChunkState, plan: Plan) -> None:
        """Write the parts, record them on the parent (lease released), start the lanes."""
        parallel = max(1, min(plan.max_parallel, self.max_parallel, len(plan.parts)))
        units = sum(part.units_total for part in plan.parts)
        waiting = ChunkState(
            units_total=state.units_done + units,
            units_done=state.units_done,
            cursor=state.cursor,
            data={**state.data, FANOUT: {"parts": len(plan.parts), "max_parallel": parallel}},
        )
        self.store.parts.create(task, plan.parts)
        parent = self.store.parts.record_plan(task, lease, waiting, len(plan.parts))
        for index in range(parallel):
            # A planned wait rides on the first message (SQS holds it, up to 15 minutes);
            # a longer one is finished by the part's own hand-over, as any paced chunk's.
            self._send_part(parent, index, math.ceil(plan.delay_of(index)))
        metrics.add_metric(name="PartsPlanned", unit="Count", value=len(plan.parts))

    # ------------------------------------------------------------------ a part finished

    def part_finished(self, part: Task, succeeded: bool) -> None:
        """Count the part on its parent; then the parent's message, or the lane's next part."""
        parent = self.store.parts.count(part, succeeded)
        if parent is None or parent.status != TaskStatus.RUNNING or part.part is None:
            return  # a parent gone, or finished (cancelled): nothing waits for this part
        if parent.parts_done >= parent.parts_total:
            self.dispatcher.send(TaskMessage.of(parent, resume=True), PARTS_QUEUE)
            return
        following = self._next_in_lane(parent, part.part[1])
        if following is not None:
            self._send_part(parent, following)

    # ------------------------------------------------------------------ the parent

    def gather(
        self,
        task: Task,
        lease: str,
        task_type: Splits,
        params: Any,
        ctx: Callable[[Task], TaskContext],
    ) -> TaskResult | None:
        """The parent claimed while split: its merged result when every part is in and
        exact (None: it waits again, its lease released). Raises PartsFailed when a part
        failed or was cancelled, naming the first."""
        while True:
            if task.parts_done >= task.parts_total:
                parts = self.store.parts.get(task)
                unfinished = [part for part in parts if part.status != TaskStatus.SUCCESS]
                if unfinished:
                    raise PartsFailed(_failure(unfinished[0], len(parts)))
                results = [part.result or {} for part in parts]
                redo = task_type.verify(params, results, ctx(task))
                if not redo:
                    assert task.state is not None
                    return task_type.merge(params, task.state, results, ctx(task))
                for index, state in redo.items():
                    logger.info("part run again from a corrected state", part=index)
                    self.store.parts.reset(parts[index], task, state)
                    metrics.add_metric(name="PartsRedone", unit="Count", value=1)
                task = self.store.tasks.get(task.task_id)
            # Parts may be missing their message (a crash, a retry): send each lane's first
            # unfinished part (one already running loses the duplicate's claim).
            for lane in range(self._lanes(task)):
                following = self._unfinished_from(task, lane)
                if following is not None:
                    self._send_part(task, following)
            try:
                self.store.parts.release(task, lease)
                return None
            except TransitionConflict as refused:
                current = refused.current
                if current is None or current.lease_token != lease:
                    raise LeaseLost(f"task {task.task_id}: lease lost") from refused
                task = current  # a part was counted meanwhile: look again

    def discard_parts(self, ctx: TaskContext, result: TaskResult) -> None:
        """After the parent's SUCCESS is written (never before: a crash must not lose what
        the merge read), the objects its parts wrote, all under "results/<owner>/<parent>."
        (a part's prefix is its id's), deleted in one listing; but any the parent's result
        names. Repeated by a redelivery of the parent's message: it then finds nothing."""
        prefix = ctx.results_prefix.removesuffix("/") + "."
        keep = [*result.outputs]
        if result.location:
            keep.append(result.location.removeprefix(f"s3://{ctx.bucket}/"))
        deleted = _s3.delete_under(ctx.s3, ctx.bucket, prefix, keep)
        if deleted:
            logger.info("parts' objects deleted", objects=deleted)

    def _lanes(self, parent: Task) -> int:
        state = parent.state.data.get(FANOUT, {}) if parent.state else {}
        return int(state.get("max_parallel", 1))

    def _next_in_lane(self, parent: Task, index: int) -> int | None:
        """The next part after `index` in its lane that has not finished."""
        return self._unfinished_from(parent, index + self._lanes(parent))

    def _unfinished_from(self, parent: Task, index: int) -> int | None:
        """The first part from `index` on in its lane that has not finished."""
        lanes = self._lanes(parent)
        finished = set(parent.parts_in)
        while index < parent.parts_total:
            if index not in finished:
                return index
            index += lanes
        return None

    def _send_part(self, parent: Task, index: int, delay_seconds: int = 0) -> None:
        message = TaskMessage(
            task_id=part_id(parent.task_id, index), owner=parent.owner, task_type=parent.task_type
        )
        self.dispatcher.send(message, PARTS_QUEUE, delay_seconds)


def _failure(part: Task, total: int) -> str:
    assert part.part is not None
    index = part.part[1]
    if part.status == TaskStatus.CANCELLED:
        return f"part {index + 1} of {total} was cancelled"
    error = part.error
    reason = f"{error.type}: {error.message}" if error else part.status.value
    return f"part {index + 1} of {total} failed: {reason}"
