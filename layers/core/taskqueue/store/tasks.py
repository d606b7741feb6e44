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
from taskqueue.models import (
    ChunkState,
    Task,
    TaskError,
    TaskEvent,
    TaskStatus,
    format_time,
    new_generation,
)
from taskqueue.store.dead_letters import DeadLetterStore, DeadMessage
from taskqueue.store.expressions import Update
from taskqueue.store.items import (
    META,
    TASK_PREFIX,
    UNSENT_INDEX,
    UNSENT_KEYS,
    UNSENT_SHARDS,
    TaskItem,
    task_key,
    task_pk,
    unsent_keys,
    unsent_partition,
)
from taskqueue.store.table import Table, is_condition_failure
from taskqueue.store.transitions import TransitionWriter


class TaskStore:
    """Tasks, their events and idempotency records in one DynamoDB table."""

    def __init__(self, table: Table, dead_letters: DeadLetterStore) -> None:
        self.table = table
        self.writer = TransitionWriter(table)
        self.dead_letters = dead_letters

    # ------------------------------------------------------------------ create & read

    def create(
        self, task: Task, idempotency_key: str | None = None, request_hash: str = ""
    ) -> tuple[Task, bool]:
        """Write a new task (and its idempotency record, atomically with it).

        Returns the task and whether it was created now; with an idempotency key already
        used by this owner, returns the task created the first time instead.
        """
        earlier = self.writer.create(task, idempotency_key, request_hash)
        if earlier is None:
            return task, True
        return self.get(earlier, task.owner), False

    def created_with_key(self, owner: str, key: str, request_hash: str) -> Task | None:
        """The task an earlier submit with this owner's idempotency key created, if any."""
        earlier = self.writer.created_with_key(owner, key, request_hash)
        return None if earlier is None else self.get(earlier, owner)

    def create_once(self, task: Task) -> tuple[Task, bool]:
        """Write a task whose id is derived (a chain's next step), unless it exists: the task
        and whether it was created now, or the one an earlier, identical hand-off wrote."""
        try:
            self.writer.create(task, None, "")
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            return self.get(task.task_id), False
        return task, True

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
        """The task and its newest `event_limit` events, oldest first."""
        task, events, _ = self.get_with_event_page(task_id, owner, event_limit)
        return task, events

    def get_with_event_page(
        self, task_id: str, owner: str, event_limit: int = 50, before: str | None = None
    ) -> tuple[Task, list[TaskEvent], str | None]:
        """The task and its newest events (or, `before` an event's key, the older ones), and
        the key to read older events from (None: there are none).

        The first page is one Query (META sorts after EVENT#...): the item's own lines, the
        newest, then EVENT# items to fill the page. An older page reads the item (whose owner
        it checks) and the page of EVENT# items.
        """
        if before is not None:
            raw = self.table.get_item(task_key(task_id))
            if raw is None:
                raise TaskNotFound(f"task {task_id} not found")
            task = self._visible(TaskItem.from_dynamodb(raw).task(), owner)
            events, cursor = self.writer.events.before(task_id, raw, before, event_limit)
            return task, events, cursor
        response = self.table.client.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": task_pk(task_id)}},
            ScanIndexForward=False,
            Limit=event_limit + 2,  # the item, a page of events, one to tell if more follow
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        if not items or items[0]["sk"]["S"] != META:
            raise TaskNotFound(f"task {task_id} not found")
        stored = TaskItem.from_dynamodb(items[0])
        task = self._visible(stored.task(), owner)
        own = stored.events()[-event_limit:]
        older, cursor = self.writer.events.page(
            items[0], items[1:], event_limit - len(own), "LastEvaluatedKey" in response
        )
        return task, [*older, *own], cursor

    def _visible(self, task: Task, owner: str) -> Task:
        if not self.visible(task, owner, self.table.now()):
            raise TaskNotFound(f"task {task.task_id} not found")
        return task

    def batch_get(self, task_ids: list[str], consistent: bool = False) -> list[Task]:
        """The tasks of these ids that exist, in the order asked for."""
        if not task_ids:
            return []
        found: dict[str, Task] = {}
        keys = [task_key(task_id) for task_id in dict.fromkeys(task_ids)]  # no duplicate keys
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table.name: {"Keys": keys[start : start + 100], "ConsistentRead": consistent}
            }
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

    def mark_enqueued(self, task_id: str, generation: str | None = None) -> bool:
        """Note that the message of a submit or retry went out (repeats then send none, and
        the sweeper leaves it alone). False when the task moved on to another generation
        (retried again): that generation's own send marks it."""
        update = Update().set(enqueued_at=format_time(self.table.now())).remove(*UNSENT_KEYS)
        update.require("attribute_exists(pk)")
        if generation is not None:
            update.name("generation").require(
                "#generation = :c_generation", c_generation=generation
            )
        try:
            self.table.client.update_item(
                TableName=self.table.name, **update.request(task_key(task_id))
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def owe_send(self, task_id: str, generation: str, due: datetime) -> bool:
        """Put a handed-over task (a continuation or a retry wait) whose message could not be
        sent in the awaiting-enqueue index, due at `due`, for the sweeper to send. Only while
        the task is still released for that message's `generation`: a claim by an earlier
        message, or any later write, moved it on (False)."""
        update = Update().set(**unsent_keys(task_id, format_time(due)))
        update.name("generation", "lease_expires_at", "status").require(
            "#generation = :c_generation AND #lease_expires_at = :c_released "
            "AND #status IN (:c_running, :c_pending)",
            c_generation=generation,
            c_released=0,
            c_running=TaskStatus.RUNNING.value,
            c_pending=TaskStatus.PENDING.value,
        )
        try:
            self.table.client.update_item(
                TableName=self.table.name, **update.request(task_key(task_id))
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def unsent(self, written_before: datetime, limit: int) -> list[str]:
        """Ids of tasks whose submit or retry wrote them before `written_before` and never
        marked their message sent: one Query of each awaiting-enqueue index partition
        (oldest first, at most `limit` each), never a Scan."""
        ids: list[str] = []
        for shard in range(UNSENT_SHARDS):
            response = self.table.client.query(
                TableName=self.table.name,
                IndexName=UNSENT_INDEX,
                KeyConditionExpression="unsent_pk = :pk AND unsent_at < :before",
                ExpressionAttributeValues={
                    ":pk": {"S": unsent_partition(shard)},
                    ":before": {"S": format_time(written_before)},
                },
                Limit=limit,
            )
            ids += [item["pk"]["S"].removeprefix(TASK_PREFIX) for item in response["Items"]]
        return ids

    # ------------------------------------------------------------------ the worker's moves

    def claim(
        self,
        transition: Transition,
        task_id: str,
        owner: str,
        task_type: str,
        lease_token: str,
        lease_seconds: int,
        generation: str | None = None,
    ) -> Task:
        """A claim row: RUNNING under a fresh lease, in one write that returns the task.

        The claiming message's generation becomes the task's: it is the message that now
        drives the task (and that the DLQ handler may fail it for), even when it is an older
        one whose successor's send failed. A claimed task no longer awaits its first send.
        """
        now = self.table.now()
        update = Update().set(
            lease_token=lease_token, lease_expires_at=int(now.timestamp()) + lease_seconds
        )
        if generation is not None:
            update.set(generation=generation)
        update.remove(*UNSENT_KEYS)
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
        generation: str | None = None,
        milestone: Mapping[str, object] | None = None,
    ) -> Task:
        """Save a chunk's state under the lease; the returned task carries cancel_requested.

        `release` hands the task over (lease 0) for the continuation message to claim, whose
        `generation` it writes.
        """
        now = self.table.now()
        update = Update().set(
            state=state.model_dump_json(exclude_defaults=True),  # the item stays small
            units_done=state.units_done,
            units_total=state.units_total,
            progress=state.progress,
            lease_expires_at=0 if release else int(now.timestamp()) + lease_seconds,
        )
        if generation is not None:
            update.set(generation=generation)
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
                state=state.model_dump_json(exclude_defaults=True),  # the item stays small
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
        generation: str | None = None,
    ) -> None:
        """RUNNING -> PENDING after a failed chunk, keeping the checkpoint, until run_at, for
        the message of `generation`."""
        update = Update().set(
            run_at=format_time(run_at), error=error.model_dump_json(), lease_expires_at=0
        )
        if generation is not None:
            update.set(generation=generation)
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
        self, task: Task, transition: Transition, restart: bool, quota_shard: int | None = None
    ) -> Task:
        """FAILED or CANCELLED -> PENDING, resuming from the checkpoint unless restarting;
        `quota_shard`: the owner's quota shard the retry took its slot from."""
        time = format_time(self.table.now())
        # A new message generation (older messages no longer hop nor fail it), and the
        # awaiting-enqueue keys until its send is marked.
        update = Update().set(
            attempts=0,
            lease_expires_at=0,
            retried_at=time,
            generation=new_generation(),
            **unsent_keys(task.task_id, time),
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
        if quota_shard is not None:
            update.set(qs=quota_shard)
        if restart:
            update.set(units_done=0, progress=0)
            update.remove("state", "result", "result_location", "outputs", "failed_items")
            # A parallel task plans its parts anew.
            update.remove("parts_total", "parts_in", "parts_failed")
        mode = "restart" if restart else "resume"
        written = self.writer.execute(
            transition, task.task_id, task.owner, task.task_type, update, fields={"mode": mode}
        )
        assert written is not None
        return written

    def fail(
        self,
        task: Task,
        transition: Transition,
        error: TaskError,
        dead_message: DeadMessage | None = None,
        generation: str | None = None,
    ) -> None:
        """A task that never finished -> FAILED (a dead letter, a failed enqueue); the owner's
        dead-letter record, when given, in the same request. A dead letter is conditioned on
        its message's `generation` being the task's."""
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
            generation=generation,
            fields={"error": error.message},
            also=also,
        )

    def hop(self, task: Task, generation: str | None, next_generation: str) -> Task:
        """A schedule hop of the message of `generation`: the task's generation moves to
        `next_generation`. `task` is as the refused claim found it, in the same request: when
        its generation is `next_generation` already, this delivery made the hop before and
        died, and the write is conditioned on that one instead (it sends the hop again).
        TransitionConflict when the message is not the current one."""
        transition = row(Action.HOP, TaskStatus.PENDING)
        if task.generation == next_generation:
            generation = next_generation  # this delivery hopped already, then died: again
        update = Update().set(generation=next_generation)
        written = self.writer.execute(
            transition, task.task_id, task.owner, task.task_type, update, generation=generation
        )
        assert written is not None
        return written
