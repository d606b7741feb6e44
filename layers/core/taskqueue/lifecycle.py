"""The task lifecycle as data: every move of a task's status or of its flags, one row each.

A row says which action moves a task from which statuses to which (or leaves the status as
it is), under what extra condition, and which line it writes in the task's event log.
`decide` picks the row for a task and an action, or refuses the move; the store executes a
row as one conditional write (the row's statuses and guard are its condition, the event line
rides on the same write). Nothing else changes a status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from string import Formatter
from typing import Literal

from taskqueue.errors import GuardFailed, InvalidTransition
from taskqueue.models import Task, TaskStatus

PENDING, RUNNING = TaskStatus.PENDING, TaskStatus.RUNNING
SUCCESS, FAILED, CANCELLED = TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED
Level = Literal["INFO", "WARNING", "ERROR"]


class Action(StrEnum):
    SUBMIT = "submit"
    CLAIM = "claim"  # a worker takes the task for a run (or the rest of one)
    CHECKPOINT = "checkpoint"  # a worker saves a chunk's state (and may hand over)
    CANCEL = "cancel"  # its owner asks
    SUCCEED = "succeed"
    FAIL = "fail"  # the worker gives up: a permanent error, no attempts left, a timeout
    STOP = "stop"  # the worker honours a cancel request at a checkpoint
    RETRY_LATER = "retry_later"  # a chunk failed: back to the queue, resuming later
    RETRY = "retry"  # its owner retries a failed or cancelled task
    DEAD_LETTER = "dead_letter"  # its message died in a DLQ
    ENQUEUE_FAILED = "enqueue_failed"  # its message could not be sent
    SPLIT = "split"  # a parallel task's worker wrote its parts: it waits for them
    REDO = "redo"  # a finished part runs again from a corrected state (start or column modes)
    HOP = "hop"  # a message arrived before the task is due: the next one, a hop later


class Guard(StrEnum):
    """A row's condition beyond the status; the store has one expression for each."""

    NEW = "the task does not exist yet"
    NONE = "-"
    DUE = "run_at is not in the future"
    LEASE_RELEASED = "lease released (handed over)"
    LEASE_EXPIRED = "lease expired (its worker died)"
    LEASE_HELD = "lease token is the worker's own"
    CURRENT_MESSAGE = "the message's generation is the task's"
    CURRENT_UNLEASED = "the message's generation is the task's, and no live lease"


class Flag(StrEnum):
    CANCEL_REQUESTED = "cancel_requested"


@dataclass(frozen=True)
class Transition:
    action: Action
    sources: frozenset[TaskStatus]  # empty for a submit: the task does not exist yet
    target: TaskStatus | None  # None: the status stays as it is
    guard: Guard
    event: str | None  # the event line; {fields} are filled in by the caller
    level: Level = "INFO"
    flag: Flag | None = None  # set by this move
    optional: bool = False  # the line only when the caller gives its fields (a milestone)

    def line(self, fields: Mapping[str, object] | None = None) -> str | None:
        """The event line of this move (None: this move writes none)."""
        if self.event is None or (self.optional and fields is None):
            return None
        return self.event.format(**(fields or {}))

    @property
    def fields(self) -> frozenset[str]:
        names = (name for _, name, _, _ in Formatter().parse(self.event or "") if name)
        return frozenset(names)

    @property
    def starts_attempt(self) -> bool:
        """A claim from PENDING: the only move that counts an attempt."""
        return self.action == Action.CLAIM and self.sources == {PENDING}


def _row(
    action: Action,
    sources: set[TaskStatus],
    target: TaskStatus | None,
    guard: Guard,
    event: str | None,
    level: Level = "INFO",
    flag: Flag | None = None,
    optional: bool = False,
) -> Transition:
    return Transition(action, frozenset(sources), target, guard, event, level, flag, optional)


# The event line "started" is shown as "started (attempt N of M)": the claim writes it without
# reading the task first, and N is the count of these lines since the submit or the last retry,
# which is exactly what `attempts` counts (see `number_attempts`).
STARTED = "started"
_NUMBERED_START = re.compile(rf"^{STARTED} \(attempt (\d+) ")

TABLE: tuple[Transition, ...] = (
    _row(Action.SUBMIT, set(), PENDING, Guard.NEW, "submitted"),
    _row(Action.CLAIM, {PENDING}, RUNNING, Guard.DUE, STARTED),
    _row(Action.CLAIM, {RUNNING}, None, Guard.LEASE_RELEASED, None),
    _row(
        Action.CLAIM,
        {RUNNING},
        None,
        Guard.LEASE_EXPIRED,
        "took over from a worker that stopped heart-beating",
        "WARNING",
    ),
    _row(
        Action.CHECKPOINT,
        {RUNNING},
        None,
        Guard.LEASE_HELD,
        "{percent}% done ({done} of {total})",
        optional=True,
    ),
    _row(Action.CANCEL, {PENDING}, CANCELLED, Guard.NONE, "cancelled before it started"),
    _row(
        Action.CANCEL, {RUNNING}, None, Guard.NONE, "cancel requested", flag=Flag.CANCEL_REQUESTED
    ),
    _row(Action.SUCCEED, {RUNNING}, SUCCESS, Guard.LEASE_HELD, "finished"),
    _row(
        Action.FAIL,
        {RUNNING},
        FAILED,
        Guard.LEASE_HELD,
        "failed after {attempts} attempt(s): {error}",
        "ERROR",
    ),
    _row(Action.STOP, {RUNNING}, CANCELLED, Guard.LEASE_HELD, "cancelled"),
    _row(
        Action.RETRY_LATER,
        {RUNNING},
        PENDING,
        Guard.LEASE_HELD,
        "attempt {attempts} failed ({error}); retry in {delay} s",
        "WARNING",
    ),
    _row(Action.RETRY, {FAILED, CANCELLED}, PENDING, Guard.NONE, "retry requested: {mode}"),
    _row(Action.SPLIT, {RUNNING}, None, Guard.LEASE_HELD, "split into {parts} parts"),
    _row(Action.REDO, {SUCCESS}, PENDING, Guard.NONE, "runs again: {mode}"),
    # A dead message fails its task only if it is the task's current message and no live
    # worker holds the task (a dead duplicate of the message that worker runs changes nothing).
    _row(
        Action.DEAD_LETTER,
        {PENDING, RUNNING},
        FAILED,
        Guard.CURRENT_UNLEASED,
        "failed: {error}",
        "ERROR",
    ),
    _row(Action.ENQUEUE_FAILED, {PENDING}, FAILED, Guard.NONE, "failed: {error}", "ERROR"),
    # Only the current message hops, handing on a new generation: a duplicate of it, or a
    # stale message, is dropped instead of starting a second chain of hops.
    _row(Action.HOP, {PENDING}, None, Guard.CURRENT_MESSAGE, None),
)


# What the API answers (409) when its owner asks for a move the table does not have.
REFUSALS = {
    Action.CANCEL: "task {task_id} is {status} and cannot be cancelled",
    Action.RETRY: "task {task_id} is {status}; only FAILED or CANCELLED tasks can be retried",
}


def rows(action: Action) -> tuple[Transition, ...]:
    return tuple(row for row in TABLE if row.action == action)


def row(action: Action, source: TaskStatus | None, guard: Guard | None = None) -> Transition:
    """The one row of `action` from `source` (and `guard`, where the source has several)."""
    found = [
        r
        for r in rows(action)
        if (source in r.sources if source else not r.sources) and guard in (None, r.guard)
    ]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows for {action} from {source} under {guard}")
    return found[0]


def holds(
    guard: Guard,
    task: Task,
    now: datetime,
    lease_token: str | None = None,
    generation: str | None = None,
) -> bool:
    """Whether `task` as read meets `guard` at `now` (the store checks the same at the write).
    A message without a generation (older than generations) is taken as the current one."""
    epoch = int(now.timestamp())
    current = generation is None or task.generation == generation
    match guard:
        case Guard.NEW:
            return False  # a task that was read exists
        case Guard.NONE:
            return True
        case Guard.DUE:
            return task.run_at is None or task.run_at <= now
        case Guard.LEASE_RELEASED:
            return task.lease_expires_at == 0
        case Guard.LEASE_EXPIRED:
            return 0 < task.lease_expires_at < epoch
        case Guard.LEASE_HELD:
            return lease_token is not None and task.lease_token == lease_token
        case Guard.CURRENT_MESSAGE:
            return current
        case Guard.CURRENT_UNLEASED:
            return current and not (task.status == RUNNING and task.lease_expires_at >= epoch)


def decide(
    task: Task,
    action: Action,
    now: datetime,
    lease_token: str | None = None,
    generation: str | None = None,
) -> Transition:
    """The row that moves `task` by `action` at `now`.

    Raises InvalidTransition (409 in the API) when no row of the action starts from the
    task's status, and GuardFailed (one of them) when rows do but their guards refuse.
    """
    candidates = [r for r in rows(action) if task.status in r.sources]
    if not candidates:
        refusal = REFUSALS.get(action, "task {task_id} is {status}: it cannot {action}")
        raise InvalidTransition(
            refusal.format(task_id=task.task_id, status=task.status.value, action=action.value)
        )
    for candidate in candidates:
        if holds(candidate.guard, task, now, lease_token, generation):
            return candidate
    refused = candidates[-1].guard
    raise GuardFailed(
        f"task {task.task_id} is {task.status} but not {refused.value}: it cannot {action}",
        guard=refused,
    )


def number_attempts(messages: list[str], max_attempts: int) -> list[str]:
    """The event log's messages as shown: each "started" line of a claim numbered within its
    run (the attempts since the submit or the last retry request), "of max_attempts"."""
    shown = []
    attempt = 0
    retry = row(Action.RETRY, FAILED).event or ""
    restarted = retry.split("{", 1)[0]
    for message in messages:
        numbered = _NUMBERED_START.match(message)
        if message.startswith(restarted):
            attempt = 0
        elif numbered:
            # Stored numbered (lines moved off a bounded log): the count goes on from there.
            attempt = int(numbered.group(1))
        elif message == STARTED:
            attempt += 1
            message = f"{STARTED} (attempt {attempt} of {max_attempts})"
        shown.append(message)
    return shown


def describe() -> list[list[str]]:
    """The table as rows of text: action, from, to, condition, event line."""
    return [
        [
            r.action.value,
            ", ".join(sorted(r.sources)) or "(new)",
            (r.target.value if r.target else "(unchanged)")
            + (f", sets {r.flag.value}" if r.flag else ""),
            r.guard.value,
            f"{r.level} {r.event}" if r.event else "-",
        ]
        for r in TABLE
    ]
