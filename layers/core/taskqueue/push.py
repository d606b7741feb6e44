"""Push: changes of tasks, read from the table's stream, sent to their owners' open pages.

A batch of stream records becomes at most one message per owner: the latest state of each
of the owner's tasks that changed in a way a page shows (a checkpoint that moved progress,
a status change, a new task), superseded states of the same task dropped, at most
MAX_TASKS_PER_MESSAGE tasks in at most MAX_MESSAGE_BYTES (``more: true`` tells the page to
read its list again instead).
Each owner's connections are found with one Query of the owner's partition, so a message
reaches that owner's pages and no one else's; a connection API Gateway reports gone is
forgotten. Posting is best effort: a page that misses a message still catches up when it
reconnects or polls (see docs/architecture.md, "Push").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel

from taskqueue.aws import client as aws_client
from taskqueue.models import Task, TaskView
from taskqueue.observability import logger
from taskqueue.store.connections import Connection, ConnectionStore
from taskqueue.store.items import deserialize, is_task_item, item_to_task

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

# A message stays far below API Gateway's 32 KB frame (about 450 bytes a task).
MAX_TASKS_PER_MESSAGE = 50
# Within one 32 KB WebSocket frame of API Gateway (a PostToConnection may carry 128 KB, sent
# as several frames): tasks past this size wait for the page's own read ("more").
MAX_MESSAGE_BYTES = 30 * 1024
MAX_ERROR_CHARS = 300
# Queries and posts of one batch run this many at a time (each is one HTTPS round trip).
PARALLEL_CALLS = 16


# ---------------------------------------------------------------- messages


# What a message says of a task: the fields of the API's TaskView that a list row, the
# dashboard and the detail panel's head draw; not params, result or events (the page reads
# those itself when it shows them), so that a message stays small.
SUMMARY_FIELDS = frozenset(
    {
        "id",
        "type",
        "status",
        "priority",
        "progress",
        "units_done",
        "units_total",
        "attempts",
        "max_attempts",
        "cancel_requested",
        "failed_items",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "run_at",
        "duration_seconds",
        "error",
        # A list row's folds: a parallel task's parts count, a chain step's position.
        "parts_total",
        "parts_done",
        "chain_id",
        "chain_position",
        "chain_length",
    }
)
# Derived from the times, so it changes with the clock, not with the task.
DERIVED_FIELDS = frozenset({"duration_seconds"})


def summary_of(task: Task) -> dict[str, Any]:
    """The task as a pushed message shows it: the API's view, cut down to SUMMARY_FIELDS."""
    summary = TaskView.of(task).model_dump(mode="json", include=set(SUMMARY_FIELDS))
    error = summary.get("error")
    if error and len(error["message"]) > MAX_ERROR_CHARS:
        summary["error"] = {**error, "message": error["message"][:MAX_ERROR_CHARS] + "…"}
    return summary


def shown(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in summary.items() if name not in DERIVED_FIELDS}


class TasksMessage(BaseModel):
    """The one kind of message the server pushes: tasks of the receiving owner that changed."""

    type: Literal["tasks"] = "tasks"
    tasks: list[dict[str, Any]]  # summary_of each task
    more: bool = False  # changes were left out: the page reads its list again

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


@dataclass(frozen=True)
class Update:
    """One stream record's visible change of a task."""

    owner: str
    summary: dict[str, Any]


def update_of(record: dict[str, Any]) -> Update | None:
    """The change a page would show for one stream record (Lambda's shape, images in
    DynamoDB JSON), or None: not a task item, removed, or nothing shown changed (such as the
    enqueue mark a submit writes after its message went out)."""
    data = record.get("dynamodb") or {}
    keys = data.get("Keys") or {}
    new = data.get("NewImage")
    if not new or not is_task_item(deserialize(keys)):
        return None
    task = item_to_task(new)
    summary = summary_of(task)
    old = data.get("OldImage")
    if old and shown(summary_of(item_to_task(old))) == shown(summary):
        return None
    return Update(owner=task.owner, summary=summary)


def messages_of(
    updates: Iterable[Update], max_tasks: int = MAX_TASKS_PER_MESSAGE
) -> dict[str, TasksMessage]:
    """One message per owner: each task's latest state (updates in stream order, a later one
    supersedes), the most recently changed of them that fit in `max_tasks` and
    MAX_MESSAGE_BYTES."""
    latest: dict[str, dict[str, dict[str, Any]]] = {}
    for update in updates:
        tasks = latest.setdefault(update.owner, {})
        task_id = update.summary["id"]
        tasks.pop(task_id, None)  # re-inserted last: the most recent change
        tasks[task_id] = update.summary
    messages = {}
    for owner, tasks in latest.items():
        kept: list[dict[str, Any]] = []
        size = len(TasksMessage(tasks=[], more=True).encode())
        for summary in reversed(tasks.values()):  # the most recent first
            size += len(json.dumps(summary, ensure_ascii=False, separators=(",", ":")).encode()) + 1
            if len(kept) == max_tasks or size > MAX_MESSAGE_BYTES:
                break
            kept.append(summary)
        kept.reverse()
        messages[owner] = TasksMessage(tasks=kept, more=len(tasks) > len(kept))
    return messages


# ---------------------------------------------------------------- delivery


class PostOutcome(StrEnum):
    SENT = "sent"
    GONE = "gone"  # the page closed without $disconnect reaching us: forget the connection
    FAILED = "failed"


class ManagementApi:
    """PostToConnection on the WebSocket API's management endpoint (the API's own URL)."""

    def __init__(
        self, endpoint_url: str, client: ApiGatewayManagementApiClient | None = None
    ) -> None:
        self.endpoint_url = endpoint_url
        self._client = client

    @property
    def client(self) -> ApiGatewayManagementApiClient:
        if self._client is None:
            self._client = aws_client("apigatewaymanagementapi", self.endpoint_url)
        return self._client

    def post(self, connection_id: str, data: bytes) -> tuple[PostOutcome, str]:
        """Outcome and, when it failed, the error code."""
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "GoneException":
                return PostOutcome.GONE, code
            return PostOutcome.FAILED, code or "unknown"
        return PostOutcome.SENT, ""


@dataclass
class PushReport:
    owners: int = 0
    connections: int = 0
    sent: int = 0
    gone: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # error code -> posts

    def as_dict(self) -> dict[str, Any]:
        return {
            "owners": self.owners,
            "connections": self.connections,
            "sent": self.sent,
            "gone": self.gone,
            "failed": sum(self.failed.values()),
        }


class Pusher:
    """Messages -> the owners' connections: one Query per owner, one post per connection."""

    def __init__(
        self, connections: ConnectionStore, api: ManagementApi, parallel: int = PARALLEL_CALLS
    ) -> None:
        self.connections = connections
        self.api = api
        self.parallel = parallel

    def push(self, messages: dict[str, TasksMessage]) -> PushReport:
        report = PushReport(owners=len(messages))
        if not messages:
            return report
        # The clients are made before the threads share them: making one is not thread-safe.
        _ = self.connections.table.client, self.api.client
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            found = dict(zip(messages, pool.map(self.connections.of_owner, messages), strict=True))
            posts = [
                (connection, messages[owner].encode())
                for owner, connections in found.items()
                for connection in connections
            ]
            report.connections = len(posts)
            outcomes = list(
                pool.map(lambda post: self.api.post(post[0].connection_id, post[1]), posts)
            )
            gone: list[Connection] = []
            for (connection, _), (outcome, code) in zip(posts, outcomes, strict=True):
                if outcome is PostOutcome.SENT:
                    report.sent += 1
                elif outcome is PostOutcome.GONE:
                    report.gone += 1
                    gone.append(connection)
                else:
                    report.failed[code] = report.failed.get(code, 0) + 1
            list(pool.map(lambda c: self.connections.remove(c.owner, c.connection_id), gone))
        if report.failed:
            # Best effort: the page reads its list again when it reconnects or polls.
            logger.warning("posts to connections failed", failed=report.failed)
        return report


def updates_of(records: Iterable[Any]) -> list[Update]:
    """The visible changes of a batch of records; a record that cannot be read is logged and
    skipped (no retry would make it readable)."""
    updates = []
    for record in records:
        try:
            update = update_of(record) if isinstance(record, dict) else None
        except (KeyError, TypeError, ValueError) as exc:
            event_id = record.get("eventID") if isinstance(record, dict) else None
            logger.error("stream record skipped", event_id=str(event_id), error=str(exc)[:500])
            continue
        if update is not None:
            updates.append(update)
    return updates
