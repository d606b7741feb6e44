"""Chains: the tasks a submit names in `then`, each started once its predecessor succeeded.

Each step is a task of its own (owner-scoped, listed, cancelled and retried like any), whose
id is derived from its predecessor's (`successor_id`). The hand-off after a SUCCESS is a
conditional create of that id, then the step's message, then its enqueue mark:

- a duplicate delivery of the predecessor's message, or its redelivery after a crash between
  its SUCCESS and the hand-off, repeats the hand-off: the create finds the step, and sends
  its message again only while it is unmarked and unclaimed (a duplicate loses the claim);
- a crash between the create and the send leaves the step on the awaiting-enqueue index,
  which the sweeper reads, as it does for a submit that died before its send.

A step that fails or is cancelled starts nothing: the chain stops there, and a retry of that
step that succeeds carries the chain on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from taskqueue.dispatch import Dispatcher
from taskqueue.fanout import queue_of
from taskqueue.models import (
    ChainStepView,
    ChainView,
    Task,
    TaskMessage,
    TaskStatus,
    new_generation,
    successor_id,
    utcnow,
)
from taskqueue.observability import metrics
from taskqueue.store import Store


def chain_ids(chain_id: str, length: int) -> list[str]:
    """The ids of a chain's steps, in order, whether created yet or not."""
    ids = [chain_id]
    while len(ids) < length:
        ids.append(successor_id(ids[-1]))
    return ids


def successor(task: Task, result_location: str | None, now: datetime) -> Task | None:
    """The next step of `task`'s chain as it is created, given where `task`'s result is
    (None: `task` is the chain's last step, or in none)."""
    if not task.chain_next:
        return None
    step, *rest = task.chain_next
    return Task(
        task_id=successor_id(task.task_id),
        owner=task.owner,
        task_type=step.type,
        params=step.params,
        status=TaskStatus.PENDING,
        priority=task.priority,
        max_attempts=task.max_attempts,
        created_at=now,
        updated_at=now,
        generation=new_generation(),
        chain_id=task.chain_id,
        chain_position=task.chain_position + 1,
        chain_length=task.chain_length,
        chain_next=rest,
        chain_previous=task.task_id,
        previous_result=result_location,
        # The chain holds one slot of its owner's quota: the step before hands over its own.
        quota_shard=task.quota_shard,
    )


@dataclass
class Chains:
    store: Store
    dispatcher: Dispatcher

    def start_next(self, task: Task, result_location: str | None) -> Task | None:
        """After `task` succeeded: its next step, created once and sent (None: no next)."""
        following = successor(task, result_location, self.store.table.now())
        if following is None:
            return None
        step, created = self.store.tasks.create_once(following)
        if not created and not (step.awaiting_first_claim and step.enqueued_at is None):
            return step  # handed off before: running, finished, or its message marked sent
        self.dispatcher.send(TaskMessage.of(step), queue_of(step))
        self.store.tasks.mark_enqueued(step.task_id, step.generation)
        if created:
            metrics.add_metric(name="ChainStepsStarted", unit="Count", value=1)
        return step


def chain_view(store: Store, task: Task) -> ChainView | None:
    """The chain `task` is a step of: each step's task and status, and where it stopped."""
    if task.chain_id is None or task.chain_length < 2:
        return None
    ids = chain_ids(task.chain_id, task.chain_length)
    found = {
        step.task_id: step
        for step in store.tasks.batch_get(ids)
        if store.tasks.visible(step, task.owner, utcnow())
    }
    steps: list[ChainStepView] = []
    last: Task | None = None  # the last step created: its `chain_next` names the rest
    for position, step_id in enumerate(ids, start=1):
        step = found.get(step_id)
        if step is not None:
            last = step
            steps.append(
                ChainStepView(
                    position=position, type=step.task_type, id=step_id, status=step.status
                )
            )
            continue
        later = last.chain_next if last is not None else []
        index = position - (last.chain_position if last is not None else 0) - 1
        kind = later[index].type if 0 <= index < len(later) else "unknown"
        steps.append(ChainStepView(position=position, type=kind, id=None, status=None))
    return _summary(task.chain_id, steps)


def _summary(chain_id: str, steps: list[ChainStepView]) -> ChainView:
    """The chain's status: where it stopped (the first step that failed or was cancelled),
    or that every step succeeded, or the step it is at."""
    length = len(steps)
    status: TaskStatus
    stopped_at: int | None = None
    stopped = [s for s in steps if s.status in (TaskStatus.FAILED, TaskStatus.CANCELLED)]
    current = next((s for s in steps if s.status != TaskStatus.SUCCESS), None)
    if stopped and stopped[0].status is not None:
        step, status = stopped[0], stopped[0].status
        stopped_at = step.position
        what = "failed" if status == TaskStatus.FAILED else "was cancelled"
        message = f"step {step.position} of {length} ({step.type}) {what}"
        if step.position + 1 == length:
            message += f"; step {length} not run"
        elif step.position < length:
            message += f"; steps {step.position + 1} to {length} not run"
    elif current is None:
        status, message = TaskStatus.SUCCESS, f"all {length} steps succeeded"
    else:
        first_waits = current.position == 1 and current.status == TaskStatus.PENDING
        status = TaskStatus.PENDING if first_waits else TaskStatus.RUNNING
        message = f"at step {current.position} of {length} ({current.type})"
    return ChainView(
        id=chain_id,
        length=length,
        status=status,
        stopped_at=stopped_at,
        message=message,
        steps=steps,
    )
