"""The transition executor: every write that sets a task's status, built from a lifecycle row.

One conditional write per transition: the row's statuses and guard (plus the task's identity,
from which the index keys are derived) are its condition, and the row's event line rides on
it. The store's other modules never write `status`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from taskqueue.errors import InvalidTransition, TransitionConflict
from taskqueue.lifecycle import Action, Guard, Transition, row
from taskqueue.models import Task, TaskStatus, format_time, parse_part_id
from taskqueue.store.event_log import EventLog
from taskqueue.store.expressions import Update
from taskqueue.store.items import (
    UNSENT_KEYS,
    TaskItem,
    event_line,
    idempotency_key,
    item_to_task,
    serialize,
    shard_of,
    status_index_keys,
    status_partition,
    task_key,
)
from taskqueue.store.table import Table, first_write_refused, is_condition_failure

SUBMIT = row(Action.SUBMIT, None)


class TransitionWriter:
    """Executes lifecycle rows; `TaskStore` calls it with what each move changes besides."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.events = EventLog(table)

    # ------------------------------------------------------------------ the executor

    def execute(
        self,
        transition: Transition,
        task_id: str,
        owner: str,
        task_type: str,
        update: Update | None = None,
        *,
        lease_token: str | None = None,
        generation: str | None = None,
        fields: Mapping[str, object] | None = None,
        also: Iterable[dict[str, Any]] = (),
    ) -> Task | None:
        """Apply `transition` to the task in one conditional write; the task as written (None
        when `also` made it a transaction, which returns no item).

        Raises TransitionConflict, carrying the task as the write found it, when the row's
        condition does not hold.
        """
        update = update or Update()
        now = self.table.now()
        time = format_time(now)
        sources = {f"c_from_{status.lower()}": status.value for status in transition.sources}
        update.name("status").require(
            f"#status IN ({', '.join(f':{name}' for name in sources)})", **sources
        )
        self._guard(update, transition.guard, lease_token, generation, time, int(now.timestamp()))
        update.set(updated_at=time)  # every write moves it
        if transition.target is not None:
            # The index keys follow from the task's identity: the write checks it is this one.
            update.name("owner", "task_type").require(
                "#owner = :c_owner AND #task_type = :c_task_type",
                c_owner=owner,
                c_task_type=task_type,
            )
            update.set(status=transition.target.value)
            # A part has no index keys; a move within one status partition (PENDING and
            # RUNNING share ACTIVE) keeps them, and writes no index entry.
            if parse_part_id(task_id) is None and moves_partition(transition):
                shard = shard_of(task_id, self.table.shard_count)
                update.set(**status_index_keys(owner, task_type, transition.target, shard))
            if transition.target.is_terminal:
                update.set(finished_at=time, expires_at=self.table.expiry(now), lease_expires_at=0)
                # Of no use once finished (a retry sets them anew), and the item stays < 1 KB.
                update.remove("lease_token", "enqueued_at", *UNSENT_KEYS)
        if transition.flag is not None:
            update.set(**{transition.flag.value: True})
        line = transition.line(fields)
        if line is not None:
            update.log(time, line, transition.level)
        request = update.request(task_key(task_id))
        extra = list(also)
        try:
            if extra:
                first = {"TableName": self.table.name, **request}
                first["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
                items: list[Any] = [{"Update": first}, *extra]
                self.table.client.transact_write_items(TransactItems=items)
                return None
            response = self.table.client.update_item(
                TableName=self.table.name,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **request,
            )
        except ClientError as exc:
            error: dict[str, Any] = dict(exc.response)
            if is_condition_failure(exc):
                old = error.get("Item")
            elif first_write_refused(exc):
                old = error["CancellationReasons"][0].get("Item")
            else:
                raise
            current = item_to_task(old) if old else None
            raise TransitionConflict(
                f"task {task_id}: {transition.action} refused", current
            ) from exc
        # The transition stands whatever the move does: an AWS error leaves the lines on the
        # item, for the next write to move.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.events.bound(task_id, response["Attributes"])
        return item_to_task(response["Attributes"])

    @staticmethod
    def _guard(
        update: Update,
        guard: Guard,
        token: str | None,
        generation: str | None,
        time: str,
        epoch: int,
    ) -> None:
        if guard in (Guard.CURRENT_MESSAGE, Guard.CURRENT_UNLEASED) and generation is not None:
            # A message older than generations carries none: it is taken as the current one.
            update.name("generation").require(
                "#generation = :c_generation", c_generation=generation
            )
        match guard:
            case Guard.DUE:
                update.name("run_at").require(
                    "attribute_not_exists(#run_at) OR #run_at <= :c_now", c_now=time
                )
            case Guard.LEASE_RELEASED:
                update.name("lease_expires_at").require("#lease_expires_at = :c_zero", c_zero=0)
            case Guard.LEASE_EXPIRED:
                update.name("lease_expires_at").require(
                    "#lease_expires_at BETWEEN :c_one AND :c_before", c_one=1, c_before=epoch - 1
                )
            case Guard.LEASE_HELD:
                update.name("lease_token").require("#lease_token = :c_token", c_token=token)
            case Guard.CURRENT_UNLEASED:
                # Not RUNNING under a live lease: PENDING, or the lease released or expired.
                update.name("lease_expires_at").require(
                    "#status = :c_pending OR #lease_expires_at < :c_epoch",
                    c_pending=TaskStatus.PENDING.value,
                    c_epoch=epoch,
                )
            case Guard.NONE | Guard.CURRENT_MESSAGE:
                pass
            case Guard.NEW:
                raise ValueError("a new task is written by create")

    # ------------------------------------------------------------------ submit

    def create(self, task: Task, idempotency_key_: str | None, request_hash: str) -> str | None:
        """Write a new task (and its idempotency record, atomically with it): None, or the id
        of the task an earlier request with this owner's idempotency key created (and then
        nothing is written)."""
        now = task.created_at
        line = event_line(format_time(now), SUBMIT.event or "", SUBMIT.level)
        status = SUBMIT.target or TaskStatus.PENDING
        item = TaskItem.new(task, self.table.shard_count, status=status, log=[line]).dynamodb()
        if not idempotency_key_:
            # One write: the counters follow from the stream (taskqueue.counters).
            self.table.client.put_item(
                TableName=self.table.name, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
            return None
        key = idempotency_key(task.owner, idempotency_key_)
        record = serialize(
            {
                **key,
                "task_id": task.task_id,
                "request_hash": request_hash,
                "expires_at": self.table.expiry(now),
            }
        )
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": record,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        old = self.table.transact_new(writes, serialize(key))
        if old is None:
            return None
        return earlier_task_id(old, request_hash)

    def created_with_key(self, owner: str, key: str, request_hash: str) -> str | None:
        """The id of the task an earlier request with this owner's idempotency key created
        (None: no such request)."""
        old = self.table.get_item(serialize(idempotency_key(owner, key)))
        return None if old is None else earlier_task_id(old, request_hash)


def moves_partition(transition: Transition) -> bool:
    """Whether a transition may move the task to another status-index partition."""
    assert transition.target is not None
    target = status_partition(transition.target)
    return any(status_partition(source) != target for source in transition.sources)


def earlier_task_id(record: dict[str, Any], request_hash: str) -> str:
    """The task of an idempotency record, if it was made for the same request."""
    if record.get("request_hash", {}).get("S", request_hash) != request_hash:
        raise InvalidTransition("this Idempotency-Key was already used with a different request")
    return str(record["task_id"]["S"])
