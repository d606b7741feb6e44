"""The parts of a parallel task: their items, and the parent's count of the finished ones.

A part is a task item of its own (`TASK#<parent>.<n>`, no index keys), so its checkpoints
write its own item: the parts of one parent never share one item per chunk. The parent item
holds the fan-in: `parts_total`, and `parts_in`, a number set of the finished parts' indexes,
each added once by a conditional write (`NOT contains`), so a duplicate count is refused and
its refusal still returns the count; the write that completes the set is seen by exactly one
caller as the one that completed it, and every later repeat sees it complete.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from taskqueue.lifecycle import Action, row
from taskqueue.models import ChunkState, Task, TaskStatus, format_time, part_id
from taskqueue.store.expressions import Update
from taskqueue.store.items import TaskItem, event_line, item_to_task, task_key
from taskqueue.store.table import Table, is_condition_failure
from taskqueue.store.tasks import TaskStore

# BatchWriteItem's limit per request.
BATCH_WRITE = 25


class PartStore:
    """Create, read, count and reset the parts of parallel tasks."""

    def __init__(self, table: Table, tasks: TaskStore) -> None:
        self.table = table
        self.tasks = tasks

    def create(self, parent: Task, states: list[ChunkState]) -> None:
        """Write every part PENDING with its planned first state, 25 to a request.

        Unconditional: a plan repeated after a crash before the parent recorded it rewrites
        the same parts, none of which has been sent a message yet.
        """
        line = event_line(format_time(self.table.now()), "planned as a part", "INFO")
        requests = [
            {"PutRequest": {"Item": TaskItem.new_part(parent, index, state, [line]).dynamodb()}}
            for index, state in enumerate(states)
        ]
        for start in range(0, len(requests), BATCH_WRITE):
            pending: dict[str, Any] = {self.table.name: requests[start : start + BATCH_WRITE]}
            for _ in range(8):
                response = self.table.client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
            if pending:
                raise RuntimeError("DynamoDB left part items unwritten; the plan is retried")

    def get(self, parent: Task) -> list[Task]:
        """The parent's parts, in index order (strongly consistent: read after the count)."""
        ids = [part_id(parent.task_id, index) for index in range(parent.parts_total)]
        found = {task.task_id: task for task in self.tasks.batch_get(ids, consistent=True)}
        return [found[task_id] for task_id in ids if task_id in found]

    def count(self, part: Task, succeeded: bool) -> Task | None:
        """Add a finished part to its parent's set: the parent as written, or, when this part
        was counted before (a duplicate, a redelivery), as it is. None without a parent."""
        assert part.part is not None
        parent_id, index = part.part
        expression = "ADD #parts_in :index" + (" , #parts_failed :one" if not succeeded else "")
        values: dict[str, Any] = {":index": {"NS": [str(index)]}, ":i": {"N": str(index)}}
        if not succeeded:
            values[":one"] = {"N": "1"}
        names = {"#parts_in": "parts_in"}
        if not succeeded:
            names["#parts_failed"] = "parts_failed"
        try:
            response = self.table.client.update_item(
                TableName=self.table.name,
                Key=task_key(parent_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk) AND NOT contains(#parts_in, :i)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            error: dict[str, Any] = dict(exc.response)
            old = error.get("Item")
            return item_to_task(old) if old else None
        return item_to_task(response["Attributes"])

    def record_plan(
        self, parent: Task, lease_token: str, state: ChunkState, parts_total: int
    ) -> Task:
        """The parent's checkpoint after its parts are written: their number, its fan-out
        state, and its lease released (the last part's message claims it for the merge)."""
        update = Update().set(
            state=state.model_dump_json(),
            units_done=state.units_done,
            units_total=state.units_total,
            progress=state.progress,
            parts_total=parts_total,
            lease_expires_at=0,
        )
        update.remove("parts_in", "parts_failed")
        # The store's own fenced write (the lease token is the condition), by the SPLIT row.
        return self.tasks._fenced(Action.SPLIT, parent, lease_token, update, {"parts": parts_total})

    def release(self, parent: Task, lease_token: str) -> Task:
        """Hand the waiting parent back, provided no part was counted since it was read: a
        part counted meanwhile sent its message while the parent was held (and lost it), so
        the refusal (TransitionConflict with the parent as it is) tells the holder to look
        again instead of leaving the last count unanswered."""
        update = Update().set(lease_expires_at=0)
        if parent.parts_in:
            update.name("parts_in").require("size(#parts_in) = :c_seen", c_seen=parent.parts_done)
        else:
            update.name("parts_in").require("attribute_not_exists(#parts_in)")
        written = self.tasks.writer.execute(
            row(Action.CHECKPOINT, TaskStatus.RUNNING),
            parent.task_id,
            parent.owner,
            parent.task_type,
            update,
            lease_token=lease_token,
        )
        assert written is not None
        return written

    def reset(self, part: Task, parent: Task, state: ChunkState | None) -> None:
        """A finished part back to PENDING and out of its parent's count, in one transaction:
        a part to run again (its parent retried, or its start found wrong). With `state`, it
        starts from that state; without, it resumes from its checkpoint."""
        assert part.part is not None
        index = part.part[1]
        transition = row(Action.RETRY if state is None else Action.REDO, part.status)
        update = Update().set(
            attempts=0, lease_expires_at=0, retried_at=format_time(self.table.now())
        )
        update.remove("cancel_requested", "finished_at", "expires_at", "error", "run_at")
        update.remove("lease_token", "started_at", "enqueued_at", "result")
        if state is not None:
            update.set(
                state=state.model_dump_json(),
                units_done=state.units_done,
                units_total=state.units_total,
                progress=state.progress,
            )
        failed = part.status != TaskStatus.SUCCESS
        expression = "DELETE #parts_in :index" + (" ADD #parts_failed :minus" if failed else "")
        names = {"#parts_in": "parts_in"}
        values = {":index": {"NS": [str(index)]}, ":i": {"N": str(index)}}
        if failed:
            names["#parts_failed"] = "parts_failed"
            values[":minus"] = {"N": "-1"}
        uncount = {
            "Update": {
                "TableName": self.table.name,
                "Key": task_key(parent.task_id),
                "UpdateExpression": expression,
                "ConditionExpression": "contains(#parts_in, :i)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
        mode = "redo from a corrected state" if state is not None else "resume"
        self.tasks.writer.execute(
            transition,
            part.task_id,
            part.owner,
            part.task_type,
            update,
            fields={"mode": mode},
            also=[uncount],
        )
