"""A task's event log, bounded: the newest lines on the task item, older ones as `EVENT#` items.

Every transition appends its line to the item (`log`), at no extra request. Once the log passes
`MAX_LINES` lines or `MAX_CHARS` characters, the write that made it so moves all but the
newest lines (at most `KEEP_LINES`, `KEEP_CHARS`) to one `EVENT#<time>#<seq>` item each (one
BatchWriteItem), then drops them from the item in a write conditioned on the log being the one
it read. So however many cancel/retry cycles a task goes through, its item stays a few KB,
and `GET /tasks/{id}` pages through the older lines (`events_before`).

Exactly once in effect: the item counts the lines it has moved (`log_moved`); an `EVENT#` item
whose `seq` is not below that count belongs to a move that did not finish and is not read (its
key is the same when the move is made again). The lines are stored numbered ("started
(attempt 3 of 5)"), so the attempts shown stay right when the retry line that restarts the
count has moved off the item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from taskqueue.lifecycle import number_attempts
from taskqueue.models import TaskEvent
from taskqueue.store.items import (
    deserialize,
    event_line,
    parse_event,
    serialize,
    task_key,
    task_pk,
)
from taskqueue.store.table import Table, is_condition_failure

MAX_LINES = 40
MAX_CHARS = 8_000
KEEP_LINES = 20
KEEP_CHARS = 4_000
EVENT_PREFIX = "EVENT#"
# A key after every event's: the first page of a task whose item lines fill it pages on here.
AFTER_EVERY_EVENT = "EVENT#9999-12-31T23:59:59.999999Z#999999999999"
BATCH = 25  # BatchWriteItem's limit


def event_key(time: str, seq: int) -> str:
    return f"{EVENT_PREFIX}{time}#{seq:08d}"


class EventLog:
    """Moves a task's older event lines off its item, and reads them back a page at a time."""

    def __init__(self, table: Table) -> None:
        self.table = table

    # ------------------------------------------------------------------ bounding the item

    def bound(self, task_id: str, item: Mapping[str, Any]) -> None:
        """After a write that returned the item (`ALL_NEW`, DynamoDB's shape): move its older
        lines out if the log has grown past its bounds. A move that loses a race is left to
        the next write."""
        lines = [_as_line(entry) for entry in item.get("log", {}).get("L", [])]
        if len(lines) <= MAX_LINES and sum(map(len, lines)) <= MAX_CHARS:
            return
        moved = int(item["log_moved"]["N"]) if "log_moved" in item else None
        max_attempts = int(item.get("max_attempts", {}).get("N", "0"))
        numbered = _numbered(lines, max_attempts)
        keep = _newest(numbered)
        out = numbered[: len(numbered) - keep]
        first = moved or 0
        expires_at = self.table.expiry(self.table.now())
        requests = [
            {"PutRequest": {"Item": _event_item(task_id, line, first + n, expires_at)}}
            for n, line in enumerate(out)
        ]
        for start in range(0, len(requests), BATCH):
            if not self._batch_write(requests[start : start + BATCH]):
                return  # throttled: the lines stay on the item for the next write to move
        condition = "size(#log) = :seen"
        values: dict[str, Any] = {":seen": len(lines), ":kept": numbered[-keep:]}
        if moved is None:
            condition += " AND attribute_not_exists(#log_moved)"
        else:
            condition += " AND #log_moved = :moved"
            values[":moved"] = moved
        values[":now_moved"] = first + len(out)
        try:
            self.table.client.update_item(
                TableName=self.table.name,
                Key=task_key(task_id),
                UpdateExpression="SET #log = :kept, #log_moved = :now_moved",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#log": "log", "#log_moved": "log_moved"},
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            # Another write appended (or moved) meanwhile: the next write moves the lines.

    def _batch_write(self, requests: list[dict[str, Any]]) -> bool:
        """Whether every item was written (BatchWriteItem leaves some when throttled)."""
        pending: dict[str, Any] = {self.table.name: requests}
        for _ in range(4):
            response = self.table.client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return True
        return False

    # ------------------------------------------------------------------ reading

    def before(
        self, task_id: str, item: Mapping[str, Any], before: str, limit: int
    ) -> tuple[list[TaskEvent], str | None]:
        """Up to `limit` events older than the event keyed `before`, oldest first, and the
        key to page on from (None: no older events)."""
        response = self.table.client.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :before",
            ExpressionAttributeValues={
                ":pk": {"S": task_pk(task_id)},
                ":first": {"S": EVENT_PREFIX},
                ":before": {"S": before},
            },
            ScanIndexForward=False,
            Limit=limit + 2,  # `before` itself, the page, and one to tell whether more follow
            ConsistentRead=True,
        )
        raws = [raw for raw in response.get("Items", []) if raw["sk"]["S"] != before]
        return self.page(item, raws, limit, "LastEvaluatedKey" in response)

    @staticmethod
    def page(
        item: Mapping[str, Any], raws: list[dict[str, Any]], limit: int, more: bool
    ) -> tuple[list[TaskEvent], str | None]:
        """The newest `limit` of these EVENT# items (newest first, as a Query read them), as
        events oldest first, and the key to page on from (None: no older events). Items of a
        move that has not finished are skipped."""
        moved = int(item["log_moved"]["N"]) if "log_moved" in item else 0
        committed = [
            raw
            for raw in raws
            if raw["sk"]["S"].startswith(EVENT_PREFIX)
            and not ("seq" in raw and int(raw["seq"]["N"]) >= moved)
        ]
        shown = committed[:limit]
        cursor = None
        if more or len(committed) > limit:
            cursor = shown[-1]["sk"]["S"] if shown else AFTER_EVERY_EVENT
        return [parse_event(deserialize(raw)) for raw in reversed(shown)], cursor


def _as_line(entry: Mapping[str, Any]) -> str:
    """A stored log entry as a line (older items kept maps of time, level and message)."""
    if "S" in entry:
        return str(entry["S"])
    fields = deserialize(entry["M"])
    return event_line(str(fields["time"]), str(fields["message"]), str(fields.get("level", "INFO")))


def _numbered(lines: list[str], max_attempts: int) -> list[str]:
    events = [parse_event(line) for line in lines]
    shown = number_attempts([event.message for event in events], max_attempts)
    return [
        event_line(line.split(" ", 1)[0], message, event.level)
        for line, event, message in zip(lines, events, shown, strict=True)
    ]


def _newest(lines: list[str]) -> int:
    """How many of the newest lines stay on the item (at least one)."""
    kept, chars = 0, 0
    for line in reversed(lines):
        if kept and (kept >= KEEP_LINES or chars + len(line) > KEEP_CHARS):
            break
        kept += 1
        chars += len(line)
    return kept


def _event_item(task_id: str, line: str, seq: int, expires_at: int) -> dict[str, Any]:
    event = parse_event(line)
    time = line.split(" ", 1)[0]
    return serialize(
        {
            "pk": task_pk(task_id),
            "sk": event_key(time, seq),
            "time": time,
            "level": event.level,
            "message": event.message,
            "seq": seq,
            "expires_at": expires_at,
        }
    )
