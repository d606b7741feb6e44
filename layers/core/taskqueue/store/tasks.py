"""One task's item: create, read, and every move of the lifecycle, each as the fields it
changes handed to the transition executor (`TransitionWriter`), which writes the status."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from taskqueue.errors import LeaseLost, TaskNotFound, TransitionConflict
from taskqueue.lifecycle import Action, Transition, row
from taskqueue.models import ChunkState, Task, TaskError, TaskEvent, TaskStatus, format_time
from taskqueue.quotas import Quota
from taskqueue.store.dead_letters import DeadLetterStore, DeadMessage
from taskqueue.store.expressions import Update
from taskqueue.store.items import META, TaskItem, deserialize, parse_event, task_key, task_pk
from taskqueue.store.quotas import QuotaStore
from taskqueue.store.table import Table
from taskqueue.store.transitions import TransitionWriter


class TaskStore:
    """Tasks, their events and idempotency records in one DynamoDB table."""

    def __init__(self, table: Table, dead_letters: DeadLetterStore, quotas: QuotaStore) -> None:
        self.table = table
        self.writer = TransitionWriter(table)
        self.dead_letters = dead_letters
        self.quotas = quotas

    # ------------------------------------------------------------------ create & read

    def create(
        self,
        task: Task,
        idempotency_key: str | None = None,
        request_hash: str = "",
        quota: tuple[Mapping[Quota, int], Mapping[Quota, int]] | None = None,
    ) -> tuple[Task, bool]:
        """Write a new task (and its idempotency record, atomically with it).

        Returns the task and whether it was created now; with an idempotency key already
        used by this owner, returns the task created the first time instead (taking nothing).
        `quota` (amounts, limits) is taken in the same transaction: QuotaExceeded, and nothing
        written, when one of them would pass its limit.
        """
        takes: list[dict[str, Any]] = []
        if quota is not None:
            amounts, limits = quota
            takes = self.quotas.take_writes(task.owner, amounts, limits, task.created_at)
        try:
            earlier = self.writer.create(task, idempotency_key, request_hash, takes)
        except ClientError as exc:
            refused = (
                self.quotas.refused(exc, takes, 2 if idempotency_key else 1) if takes else None
            )
            if refused is None:
                raise
            assert quota is not None
            raise self.quotas.exceeded(refused, quota[1][refused], task.created_at) from exc
        if earlier is None:
            return task, True
        return self.get(earlier, task.owner), False

    def get(self, task_id: str, owner: str | None = None) -> Task:
        """The task, or TaskNotFound when it is missing, expired or not the owner's."""
        item = self.table.get_item(task_key(task_id))
        if item is None:
            raise TaskNotFound(f"task {task_id} not found")
        task = TaskItem.from_dynamodb(item).task()
        if not self.visible(task, owner, self.table.now()):
            raise TaskNotFound(f"task {task_id} not found")
        return task

    def get_with_events(
        self, task_id: str, owner: str, event_limit: int = 50
    ) -> tuple[Task, list[TaskEvent]]:
        """The task and its newest events in one Query (META sorts after EVENT#...)."""
        response = self.table.client.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": task_pk(task_id)}},
            ScanIndexForward=False,
            Limit=event_limit + 1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        if not items or items[0]["sk"]["S"] != META:
            raise TaskNotFound(f"task {task_id} not found")
        stored = TaskItem.from_dynamodb(items[0])
        task = stored.task()
        if not self.visible(task, owner, self.table.now()):
            raise TaskNotFound(f"task {task_id} not found")
        # EVENT# items: lines of tasks written before the lines moved onto the item.
        older = [parse_event(deserialize(item)) for item in items[1:]]
        events = sorted([*older, *stored.events()], key=lambda event: event.time)
        return task, events[-event_limit:]

    def batch_get(self, task_ids: list[str]) -> list[Task]:
        """The tasks of these ids that exist, in the order asked for."""
        if not task_ids:
            return []
        found: dict[str, Task] = {}
        keys = [task_key(task_id) for task_id in dict.fromkeys(task_ids)]  # no duplicate keys
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.table.name: {"Keys": keys[start : start + 100]}}
            for _ in range(8):
                response = self.table.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table.name, []):
                    task = TaskItem.from_dynamodb(item).task()
                    found[task.task_id] = task
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
        return [found[task_id] for task_id in task_ids if task_id in found]

    @staticmethod
    def visible(task: Task, owner: str | None, now: datetime) -> bool:
        """Its owner's (when one is given), and not past its retention (TTL lags by hours)."""
        if owner is not None and task.owner != owner:
            return False
        return not (task.expires_at is not None and task.expires_at <= int(now.timestamp()))

    def mark_enqueued(self, task_id: str) -> None:
        """Note that the message of a submit or retry went out (repeats then send none)."""
        self.table.client.update_item(
            TableName=self.table.name,
            Key=task_key(task_id),
            UpdateExpression="SET enqueued_at = :now",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":now": {"S": format_time(self.table.now())}},
        )

    # ------------------------------------------------------------------ the worker's moves

    def claim(
        self,
        transition: Transition,
        task_id: str,
        owner: str,
        task_type: str,
        lease_token: str,
        lease_seconds: int,
    ) -> Task:
        """A claim row: RUNNING under a fresh lease, in one write that returns the task."""
        now = self.table.now()
        update = Update().set(
            lease_token=lease_token, lease_expires_at=int(now.timestamp()) + lease_seconds
        )
        # A retried task's timeout counts from its new start: retry removes started_at.
        update.set_expression(
            "started_at", "if_not_exists(#started_at, :started)", started=format_time(now)
        )
        if transition.starts_attempt:
            update.set_expression("attempts", "#attempts + :one", one=1)
        task = self.writer.execute(transition, task_id, owner, task_type, update)
        assert task is not None
        return task

    def checkpoint(
        self,
        task: Task,
        lease_token: str,
        state: ChunkState,
        lease_seconds: int,
        *,
        release: bool = False,
        milestone: Mapping[str, object] | None = None,
    ) -> Task:
        """Save a chunk's state under the lease; the returned task carries cancel_requested.

        `release` hands the task over (lease 0) for the continuation message to claim.
        """
        now = self.table.now()
        update = Update().set(
            state=state.model_dump_json(),
            units_done=state.units_done,
            units_total=state.units_total,
            progress=state.progress,
            lease_expires_at=0 if release else int(now.timestamp()) + lease_seconds,
        )
        return self._fenced(Action.CHECKPOINT, task, lease_token, update, milestone)

    def finish(
        self,
        action: Action,
        task: Task,
        lease_token: str,
        *,
        fields: Mapping[str, object] | None = None,
        state: ChunkState | None = None,
        result: dict[str, Any] | None = None,
        result_location: str | None = None,
        outputs: Iterable[str] = (),
        error: TaskError | None = None,
        failed_items: int = 0,
    ) -> None:
        """RUNNING -> SUCCESS, FAILED or CANCELLED (`action`), fenced by the lease."""
        success = action == Action.SUCCEED
        update = Update()
        if state is not None:
            update.set(
                state=state.model_dump_json(),
                units_done=state.units_done,
                units_total=state.units_total,
                progress=100 if success else state.progress,
            )
        if result is not None:
            update.set(result=json.dumps(result, separators=(",", ":")))
        if result_location:
            update.set(result_location=result_location)
        outputs = list(outputs)
        if outputs:
            update.set(outputs=outputs)
        if failed_items:
            update.set(failed_items=failed_items)
        elif success:
            update.remove("failed_items")
        if error is not None:
            update.set(error=error.model_dump_json())
        elif success:
            update.remove("error")  # an earlier attempt's error no longer describes the task
        self._fenced(action, task, lease_token, update, fields)

    def release_for_retry(
        self,
        task: Task,
        lease_token: str,
        error: TaskError,
        run_at: datetime,
        fields: Mapping[str, object],
    ) -> None:
        """RUNNING -> PENDING after a failed chunk, keeping the checkpoint, until run_at."""
        update = Update().set(
            run_at=format_time(run_at), error=error.model_dump_json(), lease_expires_at=0
        )
        self._fenced(Action.RETRY_LATER, task, lease_token, update, fields)

    def _fenced(
        self,
        action: Action,
        task: Task,
        lease_token: str,
        update: Update,
        fields: Mapping[str, object] | None,
    ) -> Task:
        transition = row(action, TaskStatus.RUNNING)
        try:
            written = self.writer.execute(
                transition,
                task.task_id,
                task.owner,
                task.task_type,
                update,
                lease_token=lease_token,
                fields=fields,
            )
        except TransitionConflict as exc:
            raise LeaseLost(f"task {task.task_id}: lease lost") from exc
        assert written is not None
        return written

    # ------------------------------------------------------------------ owner and system moves

    def cancel(self, task: Task, transition: Transition) -> Task:
        """A cancel row: PENDING -> CANCELLED, or RUNNING with cancel_requested set."""
        written = self.writer.execute(transition, task.task_id, task.owner, task.task_type)
        assert written is not None
        return written

    def retry(
        self, task: Task, transition: Transition, restart: bool, active_limit: int | None = None
    ) -> Task:
        """FAILED or CANCELLED -> PENDING, resuming from the checkpoint unless restarting.

        With `active_limit`, the task takes its slot of the owner's active-tasks quota back in
        the same transaction (the stream released it when the task finished).
        """
        update = Update().set(
            attempts=0, lease_expires_at=0, retried_at=format_time(self.table.now())
        )
        # started_at goes too: a retried task's timeout counts from its new start.
        update.remove(
            "cancel_requested",
            "finished_at",
            "expires_at",
            "error",
            "run_at",
            "lease_token",
            "started_at",
            "enqueued_at",
        )
        if restart:
            update.set(units_done=0, progress=0)
            update.remove("state", "result", "result_location", "outputs", "failed_items")
        mode = "restart" if restart else "resume"
        now = self.table.now()
        takes: list[dict[str, Any]] = []
        if active_limit is not None:
            limits = {Quota.ACTIVE_TASKS: active_limit}
            takes = self.quotas.take_writes(task.owner, {Quota.ACTIVE_TASKS: 1}, limits, now)
        try:
            written = self.writer.execute(
                transition,
                task.task_id,
                task.owner,
                task.task_type,
                update,
                fields={"mode": mode},
                also=takes,
            )
        except ClientError as exc:
            if not takes or self.quotas.refused(exc, takes, 1) is None:
                raise
            assert active_limit is not None
            raise self.quotas.exceeded(Quota.ACTIVE_TASKS, active_limit, now) from exc
        return written or self.get(task.task_id)  # a transaction returns no item

    def fail(
        self,
        task: Task,
        transition: Transition,
        error: TaskError,
        dead_message: DeadMessage | None = None,
    ) -> None:
        """A task that never finished -> FAILED (a dead letter, a failed enqueue); the owner's
        dead-letter record, when given, in the same request."""
        also = []
        if dead_message is not None:
            also.append(self.dead_letters.put_request(task, dead_message, self.table.now()))
        update = Update().set(error=error.model_dump_json())
        self.writer.execute(
            transition,
            task.task_id,
            task.owner,
            task.task_type,
            update,
            fields={"error": error.message},
            also=also,
        )
