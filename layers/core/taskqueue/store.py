"""DynamoDB access: the only module that speaks DynamoDB. Every state change is conditional."""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from taskqueue.aws import client as aws_client
from taskqueue.counters import (
    ACTIVE_BUCKET,
    STATS_SHARDS,
    THROUGHPUT_SHARDS,
    Change,
    CounterBatch,
    batches,
)
from taskqueue.errors import (
    InvalidRequest,
    InvalidTransition,
    LeaseLost,
    TaskNotFound,
    TransitionConflict,
)
from taskqueue.models import (
    ChunkState,
    Task,
    TaskError,
    TaskEvent,
    TaskStatus,
    format_time,
    parse_optional_time,
    parse_time,
    utcnow,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

META = "META"
PARALLEL_READS = 8  # concurrent Queries of one list page or stats read
INDEXES = {
    # (filter by status, filter by type) -> (index name, partition key attribute)
    (False, False): ("by_owner", "gsi1pk"),
    (False, True): ("by_owner_type", "gsi2pk"),
    (True, False): ("by_owner_status", "gsi3pk"),
    (True, True): ("by_owner_status_type", "gsi4pk"),
}
_CK_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#[0-9a-f]{32}$")
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Clock = Callable[[], datetime]


def task_key(task_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"TASK#{task_id}"}, "sk": {"S": META}}


def shard_of(task_id: str, shard_count: int) -> int:
    return int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) % shard_count


def index_keys(owner: str, task_type: str, status: TaskStatus, shard: int) -> dict[str, str]:
    return {
        "gsi1pk": f"OWNER#{owner}#{shard}",
        "gsi2pk": f"OWNER#{owner}#TYPE#{task_type}#{shard}",
        **status_index_keys(owner, task_type, status, shard),
    }


# A task's short id (the first characters of its id, as the page shows it) finds it through the
# by_owner_id index. Its partition key `idpk` is 4 hex characters of a hash of the owner and
# the id's first ID_PREFIX_LENGTH characters: nearly unique, so no partition is hot, and 16
# bytes on the item, which every checkpoint rewrites (a task item stays under 1 KB). Another
# owner's task may share a key: the items read are checked for their owner, as every read is.
# Written once at creation and never changed, so checkpoints never write this index.
ID_PREFIX_LENGTH = 8
ID_INDEX = "by_owner_id"


def id_index_key(owner: str, task_id_prefix: str) -> str:
    owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:4]
    return owner_hash + task_id_prefix[:ID_PREFIX_LENGTH]


def status_index_keys(owner: str, task_type: str, status: TaskStatus, shard: int) -> dict[str, str]:
    return {
        "gsi3pk": f"OWNER#{owner}#STATUS#{status}#{shard}",
        "gsi4pk": f"OWNER#{owner}#STATUS#{status}#TYPE#{task_type}#{shard}",
    }


def serialize(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _line(now: datetime, message: str, level: str = "INFO") -> str:
    """An event line as stored on the task item: "<time> <LEVEL> <message>", a third of the
    size of a map with named fields (the item is rewritten by every checkpoint, and each
    started KB of it is a write unit)."""
    return f"{format_time(now)} {level} {message[:2000]}"


def _event(line: str | dict[str, Any]) -> TaskEvent:
    """An event line of the item's log (or an EVENT# item) as a TaskEvent."""
    if isinstance(line, str):
        time, level, message = line.split(" ", 2)
        line = {"time": time, "level": level, "message": message}
    return TaskEvent.model_validate(line)


def task_to_item(task: Task, shard_count: int) -> dict[str, Any]:
    """The stored shape of a new task (the data-access layer owns this conversion)."""
    shard = shard_of(task.task_id, shard_count)
    values: dict[str, Any] = {
        "pk": f"TASK#{task.task_id}",
        "sk": META,
        "owner": task.owner,
        "task_type": task.task_type,
        "params": json.dumps(task.params, separators=(",", ":"), sort_keys=True),
        "priority": task.priority.value,
        "status": task.status.value,
        "created_at": format_time(task.created_at),
        "updated_at": format_time(task.updated_at),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "units_done": task.units_done,
        "units_total": task.units_total,
        "progress": task.progress,
        "lease_expires_at": 0,
        "ck": f"{format_time(task.created_at)}#{task.task_id}",
        "idpk": id_index_key(task.owner, task.task_id),
        **index_keys(task.owner, task.task_type, task.status, shard),
    }
    if task.run_at:
        values["run_at"] = format_time(task.run_at)
    if task.timeout_seconds:
        values["timeout_seconds"] = task.timeout_seconds
    return serialize(values)


def item_to_task(item: dict[str, Any]) -> Task:
    raw = deserialize(item)
    error = json.loads(raw["error"]) if raw.get("error") else None
    state = ChunkState.model_validate_json(raw["state"]) if raw.get("state") else None
    return Task(
        task_id=raw["pk"].removeprefix("TASK#"),
        owner=raw["owner"],
        task_type=raw["task_type"],
        params=json.loads(raw["params"]),
        status=TaskStatus(raw["status"]),
        priority=raw.get("priority", "normal"),
        progress=raw.get("progress", 0),
        units_done=raw.get("units_done", 0),
        units_total=raw.get("units_total", 0),
        attempts=raw.get("attempts", 0),
        max_attempts=raw.get("max_attempts", 3),
        cancel_requested=raw.get("cancel_requested", False),
        created_at=parse_time(raw["created_at"]),
        updated_at=parse_time(raw["updated_at"]),
        started_at=parse_optional_time(raw.get("started_at")),
        finished_at=parse_optional_time(raw.get("finished_at")),
        run_at=parse_optional_time(raw.get("run_at")),
        error=TaskError.model_validate(error) if error else None,
        result=json.loads(raw["result"]) if raw.get("result") else None,
        result_location=raw.get("result_location"),
        outputs=raw.get("outputs", []),
        failed_items=raw.get("failed_items", 0),
        state=state,
        lease_token=raw.get("lease_token"),
        lease_expires_at=raw.get("lease_expires_at", 0),
        expires_at=raw.get("expires_at"),
        timeout_seconds=raw.get("timeout_seconds"),
        retried_at=parse_optional_time(raw.get("retried_at")),
        enqueued_at=parse_optional_time(raw.get("enqueued_at")),
    )


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


@dataclass
class _Update:
    """Builds one UpdateItem's expression, names and values without string juggling."""

    sets: list[str] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def set(self, **attributes: Any) -> _Update:
        for name, value in attributes.items():
            self.names[f"#{name}"] = name
            self.values[f":{name}"] = value
            self.sets.append(f"#{name} = :{name}")
        return self

    def remove(self, *attributes: str) -> _Update:
        for name in attributes:
            self.names[f"#{name}"] = name
            self.removes.append(f"#{name}")
        return self

    def append(self, attribute: str, entries: list[Any]) -> _Update:
        """Append to a list attribute, creating it on first use."""
        self.names[f"#{attribute}"] = attribute
        self.values[f":{attribute}_new"] = entries
        self.values[":empty_list"] = []
        self.sets.append(
            f"#{attribute} = list_append(if_not_exists(#{attribute}, :empty_list), :{attribute}_new)"
        )
        return self

    def log(self, now: datetime, message: str, level: str = "INFO") -> _Update:
        """An event line kept on the task item itself: it costs no extra request."""
        return self.append("log", [_line(now, message, level)])

    def value(self, **values: Any) -> _Update:
        self.values.update({f":{name}": value for name, value in values.items()})
        return self

    def name(self, *names: str) -> _Update:
        self.names.update({f"#{name}": name for name in names})
        return self

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)

    def request(self, key: dict[str, Any], condition: str) -> dict[str, Any]:
        return {
            "Key": key,
            "UpdateExpression": self.expression(),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": serialize(self.values),
        }


@dataclass
class ListPage:
    tasks: list[Task]
    next_cursor: str | None


@dataclass
class _ShardReader:
    """Reads one index shard newest-first in small batches, for a k-way merge."""

    shard: int
    partition: str
    after_ck: str | None
    buffer: list[str] = field(default_factory=list)
    last_key: dict[str, Any] | None = None
    exhausted: bool = False
    consumed_ck: str | None = None


class TaskStore:
    """Tasks, their events and idempotency records in one DynamoDB table."""

    def __init__(
        self,
        table_name: str,
        shard_count: int = 32,
        retention_days: int = 30,
        client: DynamoDBClient | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.table_name = table_name
        self.shard_count = shard_count
        self.retention_days = retention_days
        self._client = client
        self.clock = clock

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_client("dynamodb")
        return self._client

    # ------------------------------------------------------------------ helpers

    def _now(self) -> datetime:
        return self.clock()

    def _expiry(self, now: datetime) -> int:
        return int((now + timedelta(days=self.retention_days)).timestamp())

    def _update(self, key: dict[str, Any], update: _Update, condition: str) -> Task:
        response = self.client.update_item(
            TableName=self.table_name,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **update.request(key, condition),
        )
        return item_to_task(response["Attributes"])

    def _visible(self, task: Task, owner: str | None, now: datetime) -> bool:
        if owner is not None and task.owner != owner:
            return False
        return not (task.expires_at is not None and task.expires_at <= int(now.timestamp()))

    # ------------------------------------------------------------------ create & read

    def create_task(
        self, task: Task, idempotency_key: str | None = None, request_hash: str = ""
    ) -> tuple[Task, bool]:
        """Write a new task (and its idempotency record, atomically with it).

        Returns the task and whether it was created now; with an idempotency key already
        used by this owner, returns the task created the first time instead.
        """
        now = task.created_at
        item = task_to_item(task, self.shard_count)
        item["log"] = {"L": [{"S": _line(now, "submitted")}]}
        if not idempotency_key:
            # One write: the counters follow from the stream (taskqueue.counters).
            self.client.put_item(
                TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
            return task, True
        record = serialize(
            {
                "pk": f"IDEMP#{task.owner}#{idempotency_key}",
                "sk": "IDEMP",
                "task_id": task.task_id,
                "request_hash": request_hash,
                "expires_at": self._expiry(now),
            }
        )
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": record,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        old = self._transact_new(writes, {"pk": record["pk"], "sk": record["sk"]})
        if old is None:
            return task, True
        previous = deserialize(old)
        if previous.get("request_hash", request_hash) != request_hash:
            raise InvalidTransition(
                "this Idempotency-Key was already used with a different request"
            )
        return self.get_task(previous["task_id"], task.owner), False

    def _transact_new(
        self, writes: list[dict[str, Any]], first_key: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A transaction whose first write creates an item that must not exist yet: None
        when it went through, else the existing item (nothing was written)."""
        try:
            self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons", [])
            if not (reasons and reasons[0].get("Code") == "ConditionalCheckFailed"):
                raise
            return dict(reasons[0].get("Item") or self._get_item(first_key) or {})
        return None

    def _get_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True)
        return response.get("Item")

    def get_task(self, task_id: str, owner: str | None = None) -> Task:
        """The task, or TaskNotFound when it is missing, expired or not the owner's."""
        item = self._get_item(task_key(task_id))
        if item is None:
            raise TaskNotFound(f"task {task_id} not found")
        task = item_to_task(item)
        if not self._visible(task, owner, self._now()):
            raise TaskNotFound(f"task {task_id} not found")
        return task

    def get_task_with_events(
        self, task_id: str, owner: str, event_limit: int = 50
    ) -> tuple[Task, list[TaskEvent]]:
        """The task and its newest events in one Query (META sorts after EVENT#...)."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"TASK#{task_id}"}},
            ScanIndexForward=False,
            Limit=event_limit + 1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        if not items or items[0]["sk"]["S"] != META:
            raise TaskNotFound(f"task {task_id} not found")
        task = item_to_task(items[0])
        if not self._visible(task, owner, self._now()):
            raise TaskNotFound(f"task {task_id} not found")
        lines = [*map(deserialize, items[1:]), *deserialize(items[0]).get("log", [])]
        events = sorted(map(_event, lines), key=lambda event: event.time)
        return task, events[-event_limit:]

    # ------------------------------------------------------------------ list

    def list_tasks(
        self,
        owner: str,
        *,
        status: TaskStatus | None = None,
        task_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> ListPage:
        """Newest first, merged across the index shards; the cursor holds each shard's place."""
        index, attribute = INDEXES[(status is not None, task_type is not None)]
        fingerprint = hashlib.sha256(
            json.dumps(
                [owner, index, status, task_type, str(created_after), str(created_before)]
            ).encode()
        ).hexdigest()[:16]
        positions = self._decode_cursor(cursor, fingerprint) if cursor else {}
        lower = format_time(created_after) if created_after else None
        upper = format_time(created_before) if created_before else None
        batch = max(1, -(-limit // self.shard_count))
        readers = []
        for shard in range(self.shard_count):
            position = positions.get(str(shard), "")
            if position is None:
                continue  # this shard was exhausted on an earlier page
            partition = self._partition(owner, status, task_type, shard, attribute)
            readers.append(_ShardReader(shard, partition, position or None))

        def fill(reader: _ShardReader) -> None:
            self._read_shard(index, attribute, reader, lower, upper, batch)

        # The first read of every shard is independent: in parallel, so a page costs about
        # one round trip plus refills, not one per shard.
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            list(pool.map(fill, readers))
        heap = [(_desc(r.buffer[0]), r.shard, r) for r in readers if r.buffer]
        heapq.heapify(heap)
        picked: list[str] = []
        while heap and len(picked) < limit:
            _, _, reader = heapq.heappop(heap)
            ck = reader.buffer.pop(0)
            reader.consumed_ck = ck
            picked.append(ck)
            if not reader.buffer and not reader.exhausted:
                fill(reader)
            if reader.buffer:
                heapq.heappush(heap, (_desc(reader.buffer[0]), reader.shard, reader))
        tasks = self.batch_get([ck.split("#", 1)[1] for ck in picked])
        now = self._now()
        visible = [
            t
            for t in tasks
            if self._visible(t, owner, now)
            and (status is None or t.status == status)
            and (task_type is None or t.task_type == task_type)
        ]
        more = any(r.buffer or not r.exhausted for r in readers)
        next_cursor = None
        if more:
            state: dict[str, str | None] = {}
            for reader in readers:
                if reader.exhausted and not reader.buffer:
                    state[str(reader.shard)] = None
                elif reader.consumed_ck or reader.after_ck:
                    state[str(reader.shard)] = reader.consumed_ck or reader.after_ck
            for shard_name, position in positions.items():
                if position is None:
                    state[shard_name] = None
            next_cursor = self._encode_cursor(fingerprint, state)
        return ListPage(visible, next_cursor)

    def _partition(
        self,
        owner: str,
        status: TaskStatus | None,
        task_type: str | None,
        shard: int,
        attribute: str,
    ) -> str:
        if attribute == "gsi1pk":
            return f"OWNER#{owner}#{shard}"
        if attribute == "gsi2pk":
            return f"OWNER#{owner}#TYPE#{task_type}#{shard}"
        if attribute == "gsi3pk":
            return f"OWNER#{owner}#STATUS#{status}#{shard}"
        return f"OWNER#{owner}#STATUS#{status}#TYPE#{task_type}#{shard}"

    def _read_shard(
        self,
        index: str,
        attribute: str,
        reader: _ShardReader,
        lower: str | None,
        upper: str | None,
        batch: int,
    ) -> None:
        values: dict[str, Any] = {":p": {"S": reader.partition}}
        condition = "#p = :p"
        if lower and upper:
            condition += " AND ck BETWEEN :lo AND :hi"
            values.update({":lo": {"S": lower}, ":hi": {"S": upper}})
        elif lower:
            condition += " AND ck >= :lo"
            values[":lo"] = {"S": lower}
        elif upper:
            condition += " AND ck < :hi"
            values[":hi"] = {"S": upper}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#p": attribute},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": batch,
        }
        start = reader.last_key
        if start is None and reader.after_ck:
            task_id = reader.after_ck.split("#", 1)[1]
            start = {
                **task_key(task_id),
                attribute: {"S": reader.partition},
                "ck": {"S": reader.after_ck},
            }
        if start is not None:
            request["ExclusiveStartKey"] = start
        response = self.client.query(**request)
        reader.buffer.extend(item["ck"]["S"] for item in response.get("Items", []))
        reader.last_key = response.get("LastEvaluatedKey")
        reader.exhausted = reader.last_key is None

    def find_by_id_prefix(self, owner: str, prefix: str, limit: int) -> list[Task]:
        """The owner's tasks whose id starts with `prefix` (at least ID_PREFIX_LENGTH
        characters), newest first: one Query of a near-unique partition, then the items."""
        if len(prefix) < ID_PREFIX_LENGTH:
            raise ValueError(f"an id prefix has at least {ID_PREFIX_LENGTH} characters")
        response = self.client.query(
            TableName=self.table_name,
            IndexName=ID_INDEX,
            KeyConditionExpression="idpk = :p AND begins_with(pk, :task)",
            ExpressionAttributeValues={
                ":p": {"S": id_index_key(owner, prefix)},
                ":task": {"S": f"TASK#{prefix}"},
            },
            # Other owners' tasks may share the key: read past them (a handful at most).
            Limit=limit + 10,
        )
        ids = [item["pk"]["S"].removeprefix("TASK#") for item in response.get("Items", [])]
        now = self._now()
        found = [t for t in self.batch_get(ids) if self._visible(t, owner, now)]
        return sorted(found, key=lambda t: t.created_at, reverse=True)[:limit]

    def batch_get(self, task_ids: list[str]) -> list[Task]:
        if not task_ids:
            return []
        found: dict[str, Task] = {}
        keys = [task_key(task_id) for task_id in dict.fromkeys(task_ids)]  # no duplicate keys
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.table_name: {"Keys": keys[start : start + 100]}}
            for _ in range(8):
                response = self.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    task = item_to_task(item)
                    found[task.task_id] = task
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
        return [found[task_id] for task_id in task_ids if task_id in found]

    @staticmethod
    def _encode_cursor(fingerprint: str, positions: dict[str, str | None]) -> str:
        raw = json.dumps({"v": 1, "f": fingerprint, "p": positions}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _decode_cursor(self, cursor: str, fingerprint: str) -> dict[str, str | None]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            positions = raw["p"]
            valid = (
                raw.get("v") == 1
                and raw.get("f") == fingerprint
                and isinstance(positions, dict)
                and all(
                    key.isdigit()
                    and int(key) < self.shard_count
                    and (value is None or (isinstance(value, str) and _CK_RE.match(value)))
                    for key, value in positions.items()
                )
            )
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest("cursor is not valid", {"cursor": cursor[:100]}) from exc
        if not valid:
            raise InvalidRequest(
                "cursor is not valid for this list (it belongs to other filters)",
                {"cursor": cursor[:100]},
            )
        return positions

    # ------------------------------------------------------------------ transitions

    def _transition(
        self,
        task: Task,
        new_status: TaskStatus,
        update: _Update,
        condition: str,
        *,
        event: tuple[str, str] | None = None,
        extra: list[dict[str, Any]] | None = None,
    ) -> None:
        """One status change: a conditional write of the task item, its event line on it.

        The status counters follow from the table's stream (taskqueue.counters). `extra`
        writes (a dead letter) go in the same transaction. Raises TransitionConflict when
        the condition fails (the task moved on meanwhile).
        """
        now = self._now()
        shard = shard_of(task.task_id, self.shard_count)
        update.set(
            status=new_status.value,
            updated_at=format_time(now),
            **status_index_keys(task.owner, task.task_type, new_status, shard),
        )
        if new_status.is_terminal:
            update.set(
                finished_at=format_time(now), expires_at=self._expiry(now), lease_expires_at=0
            )
            # Of no use once finished (a retry sets them anew), and the item stays under 1 KB.
            update.remove("lease_token", "enqueued_at")
        if event is not None:
            update.log(now, *event)
        try:
            if not extra:
                self.client.update_item(
                    TableName=self.table_name, **update.request(task_key(task.task_id), condition)
                )
                return
            items = [
                {
                    "Update": {
                        "TableName": self.table_name,
                        **update.request(task_key(task.task_id), condition),
                    }
                },
                *extra,
            ]
            self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons", [])
            if _is_condition_failure(exc) or (
                reasons and reasons[0].get("Code") == "ConditionalCheckFailed"
            ):
                raise TransitionConflict(f"task {task.task_id} changed state meanwhile") from exc
            raise

    # ------------------------------------------------------------------ counters

    def apply_changes(self, changes: list[Change]) -> int:
        """Add a stream batch's changes to the counters, once; returns the items written.

        Each group of changes is one transaction with its marker. A marker already there
        means this batch (or its beginning) was counted by an earlier delivery: the changes
        it covers are skipped and the rest grouped again from the next record on.
        """
        written = 0
        pending = sorted(changes, key=lambda change: change.sequence)
        while pending:
            for batch in batches(pending):
                counted = self._add_counts(batch)
                if counted is not None:
                    pending = [c for c in pending if c.sequence > counted]
                    break
                written += len(batch.items)
            else:
                pending = []
        return written

    def _add_counts(self, batch: CounterBatch) -> int | None:
        """One group's ADDs and its marker; None, or the last sequence an earlier
        delivery already counted under this marker."""
        now = self._now()
        epoch = int(now.timestamp())
        marker = {"pk": {"S": f"COUNTED#{batch.marker}"}, "sk": {"S": "COUNTED"}}
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    # Lambda keeps retrying a batch for as long as the stream keeps it (24 h).
                    "Item": {
                        **marker,
                        "last_sequence": {"S": str(batch.last_sequence)},
                        "records": {"N": str(batch.records)},
                        "expires_at": {"N": str(epoch + 2 * 86400)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        ]
        for (pk, sk), counters in sorted(batch.items.items()):
            names = {f"#c{i}": name for i, name in enumerate(counters)}
            values: dict[str, Any] = {
                f":c{i}": {"N": str(v)} for i, v in enumerate(counters.values())
            }
            expression = "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counters)))
            if sk != ACTIVE_BUCKET:
                lifetime = 2 * 3600 if sk.startswith("MIN#") else (self.retention_days + 2) * 86400
                names["#ttl"] = "expires_at"
                values[":ttl"] = {"N": str(epoch + lifetime)}
                expression += " SET #ttl = :ttl"
            writes.append(
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                        "UpdateExpression": expression,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        old = self._transact_new(writes, marker)
        return None if old is None else int(old["last_sequence"]["S"])

    # ------------------------------------------------------------------ user actions

    def cancel(self, task_id: str, owner: str) -> Task:
        """PENDING -> CANCELLED at once; RUNNING -> cancel requested (the worker stops)."""
        for _ in range(5):
            task = self.get_task(task_id, owner)
            try:
                if task.status == TaskStatus.PENDING:
                    update = _Update().value(expected=task.status.value).name("status")
                    self._transition(
                        task,
                        TaskStatus.CANCELLED,
                        update,
                        "#status = :expected",
                        event=("cancelled before it started", "INFO"),
                    )
                elif task.status == TaskStatus.RUNNING:
                    update = _Update().set(
                        cancel_requested=True, updated_at=format_time(self._now())
                    )
                    update.log(self._now(), "cancel requested")
                    update.value(expected=TaskStatus.RUNNING.value).name("status")
                    self._update(task_key(task_id), update, "#status = :expected")
                else:
                    raise InvalidTransition(
                        f"task {task_id} is {task.status} and cannot be cancelled"
                    )
            except TransitionConflict:
                continue  # the status moved under us: decide again on the fresh item
            except ClientError as exc:
                if not _is_condition_failure(exc):
                    raise
                continue
            return self.get_task(task_id, owner)
        raise InvalidTransition(f"task {task_id} keeps changing state; try again")

    def retry(self, task_id: str, owner: str, restart: bool) -> Task:
        """FAILED or CANCELLED -> PENDING, resuming from the checkpoint unless restarting."""
        return self.retry_task(task_id, owner, restart)[0]

    def retry_task(self, task_id: str, owner: str, restart: bool) -> tuple[Task, bool]:
        """`retry`, and whether this call made the transition (False: a repeat of a retry
        whose task has not been claimed since, which the caller may need to re-send)."""
        task = self.get_task(task_id, owner)
        if task.retried_at is not None and task.awaiting_first_claim:
            return task, False
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise InvalidTransition(
                f"task {task_id} is {task.status}; only FAILED or CANCELLED tasks can be retried"
            )
        update = _Update().set(
            attempts=0,
            lease_expires_at=0,
            retried_at=format_time(self._now()),
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
        update.value(expected=task.status.value).name("status")
        try:
            self._transition(
                task,
                TaskStatus.PENDING,
                update,
                "#status = :expected",
                event=("retry requested: " + ("restart" if restart else "resume"), "INFO"),
            )
        except TransitionConflict as exc:
            raise InvalidTransition(f"task {task_id} changed state; try again") from exc
        return self.get_task(task_id, owner), True

    def fail_pending(
        self, task_id: str, error: TaskError, dead_letter: DeadLetter | None = None
    ) -> Task | None:
        """Mark a task that never reached a worker, or whose messages died, FAILED.

        With `dead_letter`, the owner's dead-letter record is written in the same request.
        """
        for _ in range(5):
            try:
                task = self.get_task(task_id)
            except TaskNotFound:
                return None
            if task.status.is_terminal:
                return None
            update = _Update().set(error=error.model_dump_json())
            update.value(expected=task.status.value).name("status")
            try:
                self._transition(
                    task,
                    TaskStatus.FAILED,
                    update,
                    "#status = :expected",
                    event=(f"failed: {error.message}", "ERROR"),
                    extra=[self._dead_letter_put(task, dead_letter)] if dead_letter else [],
                )
            except TransitionConflict:
                continue
            return self.get_task(task_id)
        return None

    # ------------------------------------------------------------------ dead letters

    def _dead_letter_put(self, task: Task, letter: DeadLetter) -> dict[str, Any]:
        now = self._now()
        item = serialize(
            {
                "pk": f"DEAD#{task.owner}",
                "sk": f"{format_time(now)}#{letter.message_id}",
                "task_id": task.task_id,
                "task_type": task.task_type,
                "queue": letter.queue,
                "reason": letter.reason[:1000],
                "receive_count": letter.receive_count,
                "dead_at": format_time(now),
                "expires_at": self._expiry(now),
            }
        )
        return {"Put": {"TableName": self.table_name, "Item": item}}

    def dead_letters(self, owner: str, limit: int = 100) -> list[dict[str, Any]]:
        """The owner's dead letters, newest first."""
        response = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"DEAD#{owner}"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        now = int(self._now().timestamp())
        letters = [deserialize(item) for item in response.get("Items", [])]
        return [d for d in letters if d.get("expires_at", now + 1) > now]

    def delete_dead_letter(self, owner: str, sk: str) -> None:
        self.client.delete_item(
            TableName=self.table_name, Key={"pk": {"S": f"DEAD#{owner}"}, "sk": {"S": sk}}
        )

    def mark_enqueued(self, task_id: str) -> None:
        """Note that the message of a submit or retry went out (repeats then send none)."""
        self.client.update_item(
            TableName=self.table_name,
            Key=task_key(task_id),
            UpdateExpression="SET enqueued_at = :now",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":now": {"S": format_time(self._now())}},
        )

    # ------------------------------------------------------------------ worker side

    def claim(self, task: Task, lease_token: str, lease_seconds: int) -> Task | None:
        """PENDING, or RUNNING with an expired lease -> RUNNING under a fresh lease.

        `task` is the snapshot the worker just read; the write is conditional on it being
        unchanged, so None means the message is a duplicate or stale.
        """
        now = self._now()
        epoch = int(now.timestamp())
        changes: dict[str, Any] = {
            "status": TaskStatus.RUNNING,
            "lease_token": lease_token,
            "lease_expires_at": epoch + lease_seconds,
            "updated_at": now,
            "started_at": task.started_at or now,
        }
        update = _Update().set(
            lease_token=lease_token,
            lease_expires_at=epoch + lease_seconds,
            started_at=format_time(changes["started_at"]),
        )
        update.value(expected=task.status.value, seen=task.attempts)
        update.name("status", "attempts")
        if task.status == TaskStatus.PENDING:
            # A claim from PENDING starts an attempt; taking over an expired lease does not.
            changes["attempts"] = task.attempts + 1
            update.set(attempts=task.attempts + 1)
            update.log(now, f"started (attempt {task.attempts + 1} of {task.max_attempts})")
            # Every write moves updated_at, so this fences out a worker whose snapshot is
            # stale even when the task went round to the same status and attempts (a cancel
            # and a retry in between).
            update.value(seen_updated=format_time(task.updated_at))
            condition = "#status = :expected AND #attempts = :seen AND #updated_at = :seen_updated"
            try:
                self._transition(task, TaskStatus.RUNNING, update, condition)
            except TransitionConflict:
                return None
            return task.model_copy(update=changes)
        if task.status != TaskStatus.RUNNING or task.lease_expires_at >= epoch:
            return None
        if task.lease_expires_at:
            update.log(now, "took over from a worker that stopped heart-beating", "WARNING")
        update.set(updated_at=format_time(now)).name("lease_expires_at").value(epoch=epoch)
        condition = "#status = :expected AND #attempts = :seen AND #lease_expires_at < :epoch"
        try:
            return self._update(task_key(task.task_id), update, condition)
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            return None

    def checkpoint(
        self,
        task_id: str,
        lease_token: str,
        state: ChunkState,
        lease_seconds: int,
        *,
        release: bool = False,
        log: str | None = None,
    ) -> Task:
        """Save a chunk's state under the lease; the returned task carries cancel_requested.

        `release` hands the task over (lease 0) for the continuation message to claim.
        """
        now = self._now()
        update = _Update().set(
            state=state.model_dump_json(),
            units_done=state.units_done,
            units_total=state.units_total,
            progress=state.progress,
            updated_at=format_time(now),
            lease_expires_at=0 if release else int(now.timestamp()) + lease_seconds,
        )
        if log:
            update.log(now, log)
        update.value(token=lease_token, running=TaskStatus.RUNNING.value)
        update.name("lease_token", "status")
        try:
            return self._update(
                task_key(task_id), update, "#lease_token = :token AND #status = :running"
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            raise LeaseLost(f"task {task_id}: lease lost") from exc

    def _fenced_transition(
        self,
        task: Task,
        lease_token: str,
        new_status: TaskStatus,
        update: _Update,
        event: tuple[str, str],
    ) -> None:
        update.value(token=lease_token, running=TaskStatus.RUNNING.value)
        update.name("lease_token", "status")
        running = task.model_copy(update={"status": TaskStatus.RUNNING})
        try:
            self._transition(
                running,
                new_status,
                update,
                "#lease_token = :token AND #status = :running",
                event=event,
            )
        except TransitionConflict as exc:
            raise LeaseLost(f"task {task.task_id}: lease lost") from exc

    def finish(
        self,
        task: Task,
        lease_token: str,
        status: TaskStatus,
        message: str,
        *,
        state: ChunkState | None = None,
        result: dict[str, Any] | None = None,
        result_location: str | None = None,
        outputs: Iterable[str] = (),
        error: TaskError | None = None,
        failed_items: int = 0,
    ) -> None:
        """RUNNING -> a terminal status, fenced by the lease, with its event, in one request."""
        update = _Update()
        if state is not None:
            update.set(
                state=state.model_dump_json(),
                units_done=state.units_done,
                units_total=state.units_total,
                progress=100 if status == TaskStatus.SUCCESS else state.progress,
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
        elif status == TaskStatus.SUCCESS:
            update.remove("failed_items")
        if error is not None:
            update.set(error=error.model_dump_json())
        elif status == TaskStatus.SUCCESS:
            update.remove("error")  # an earlier attempt's error no longer describes the task
        level = "ERROR" if status == TaskStatus.FAILED else "INFO"
        self._fenced_transition(task, lease_token, status, update, (message, level))

    def release_for_retry(
        self, task: Task, lease_token: str, error: TaskError, run_at: datetime, message: str
    ) -> None:
        """RUNNING -> PENDING after a failed chunk, keeping the checkpoint, until run_at."""
        update = _Update().set(
            run_at=format_time(run_at), error=error.model_dump_json(), lease_expires_at=0
        )
        self._fenced_transition(task, lease_token, TaskStatus.PENDING, update, (message, "WARNING"))

    # ------------------------------------------------------------------ stats

    def stats(self, owner: str) -> OwnerStats:
        """Counts by status and type, and finishes per minute over the last hour.

        Reads the owner's counter partitions (one Query each, in parallel).
        """
        now = self._now()
        day_cutoff = f"DAY#{(now - timedelta(days=self.retention_days)).date().isoformat()}"
        minute_cutoff = f"MIN#{format_time(now - timedelta(minutes=60))[:16]}"

        def read(pk: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": pk}},
            }
            while True:
                response = self.client.query(**request)
                items += [deserialize(item) for item in response.get("Items", [])]
                if "LastEvaluatedKey" not in response:
                    return items
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            partitions = [f"STATS#{owner}#{s}" for s in range(STATS_SHARDS)]
            partitions += [f"TPUT#{owner}#{s}" for s in range(THROUGHPUT_SHARDS)]
            shards = list(pool.map(read, partitions))
        counts: dict[str, dict[str, int]] = {}
        minutes: dict[str, dict[str, int]] = {}
        for item in (item for shard in shards for item in shard):
            sk = item["sk"]
            counters = {k: v for k, v in item.items() if k not in ("pk", "sk", "expires_at")}
            if sk == ACTIVE_BUCKET or (sk.startswith("DAY#") and sk >= day_cutoff):
                for name, value in counters.items():
                    status, task_type = name.split("#", 1)
                    by_type = counts.setdefault(status, {})
                    by_type[task_type] = by_type.get(task_type, 0) + int(value)
            elif sk.startswith("MIN#") and sk > minute_cutoff:
                bucket = minutes.setdefault(sk[4:], {})
                for name, value in counters.items():
                    bucket[name] = bucket.get(name, 0) + int(value)
        return OwnerStats(counts=counts, minutes=minutes)


@dataclass
class OwnerStats:
    counts: dict[str, dict[str, int]]  # status -> type -> count
    minutes: dict[str, dict[str, int]]  # "YYYY-MM-DDTHH:MM" -> status -> finished


@dataclass
class DeadLetter:
    message_id: str
    queue: str
    reason: str
    receive_count: int


def _desc(ck: str) -> tuple[int, ...]:
    """Heap key that pops the newest `ck` first (heapq is a min-heap)."""
    return tuple(-b for b in ck.encode())
