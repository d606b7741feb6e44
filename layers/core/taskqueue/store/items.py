"""The stored shape: the task item as a pydantic model, and every key format, defined once."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from taskqueue.lifecycle import number_attempts
from taskqueue.models import (
    ChainStep,
    ChunkState,
    Model,
    Priority,
    Task,
    TaskError,
    TaskEvent,
    TaskStatus,
    format_time,
    parse_optional_time,
    parse_part_id,
    parse_time,
    part_id,
)

# ---------------------------------------------------------------- keys

META = "META"
TASK_PREFIX = "TASK#"
IDEMPOTENCY = "IDEMP"
COUNTED = "COUNTED"
CONNECTION_PREFIX = "CONN#"
QUOTA_PREFIX = "QUOTA#"
QUOTA_USED = "USED"
# Counter partitions per owner: a stream batch writes one STATS partition (its ACTIVE and DAY
# items) and one TPUT partition, chosen from the batch, so a busy owner's writes spread.
STATS_SHARDS = 64
THROUGHPUT_SHARDS = 16
INDEXES = {
    # (filter by status, filter by type) -> (index name, partition key attribute)
    (False, False): ("by_owner", "gsi1pk"),
    (False, True): ("by_owner_type", "gsi2pk"),
    (True, False): ("by_owner_status", "gsi3pk"),
    (True, True): ("by_owner_status_type", "gsi4pk"),
}
# The sparse index of tasks whose message of a submit or retry is not known to be sent yet:
# `unsent_pk` (one of UNSENT_SHARDS partitions, by task id) and `unsent_at` (when the write
# happened) exist from that write until the send is marked, the task is claimed or finishes.
# Every submit puts an entry and its mark deletes it, for all owners alike: 64 partitions keep
# each under 1,000 writes a second up to 32,000 submits a second (the sweeper Queries each).
UNSENT_INDEX = "awaiting_enqueue"
UNSENT_SHARDS = 64
UNSENT_KEYS = ("unsent_pk", "unsent_at")
# A task's short id (the first characters of its id, as the page shows it) finds it through the
# by_owner_id index. Its partition key `idpk` is 4 hex characters of a hash of the owner and
# the id's first ID_PREFIX_LENGTH characters: nearly unique, so no partition is hot, and 16
# bytes on the item, which every checkpoint rewrites (a task item stays under 1 KB). Another
# owner's task may share a key: the items read are checked for their owner, as every read is.
# Written once at creation and never changed, so checkpoints never write this index.
ID_INDEX = "by_owner_id"
ID_PREFIX_LENGTH = 8
SORT_KEY_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#[0-9a-f]{32}$")

CounterKey = tuple[str, str]  # (pk, sk) of a counter item
# A counter item's sk, its bucket: active tasks in one, finished ones by day, finishes by minute.
ACTIVE_BUCKET = "ACTIVE"
DAY = "DAY#"
MINUTE = "MIN#"


def task_pk(task_id: str) -> str:
    return f"{TASK_PREFIX}{task_id}"


def task_key(task_id: str) -> dict[str, Any]:
    return {"pk": {"S": task_pk(task_id)}, "sk": {"S": META}}


def is_task_item(keys: Mapping[str, Any]) -> bool:
    """Whether these (deserialized) keys are a task's item, not an event, counter or record,
    nor a part of a parallel task (counted and shown through its parent)."""
    pk = str(keys.get("pk", ""))
    return (
        pk.startswith(TASK_PREFIX)
        and keys.get("sk") == META
        and parse_part_id(pk.removeprefix(TASK_PREFIX)) is None
    )


def idempotency_key(owner: str, key: str) -> dict[str, str]:
    return {"pk": f"{IDEMPOTENCY}#{owner}#{key}", "sk": IDEMPOTENCY}


def dead_letter_pk(owner: str) -> str:
    return f"DEAD#{owner}"


def connection_pk(owner: str) -> str:
    """The partition of an owner's open WebSocket connections (one item per page)."""
    return f"{CONNECTION_PREFIX}{owner}"


def connection_key(owner: str, connection_id: str) -> dict[str, Any]:
    return {"pk": {"S": connection_pk(owner)}, "sk": {"S": connection_id}}


def quota_pk(owner: str, shard: int) -> str:
    """One of an owner's quota counter items (`taskqueue.quotas`)."""
    return f"{QUOTA_PREFIX}{owner}#{shard}"


def quota_key(owner: str, shard: int) -> dict[str, Any]:
    return {"pk": {"S": quota_pk(owner, shard)}, "sk": {"S": QUOTA_USED}}


def counted_key(marker: str) -> dict[str, Any]:
    """The marker item of a counted stream batch, named after its first record."""
    return {"pk": {"S": f"{COUNTED}#{marker}"}, "sk": {"S": COUNTED}}


def counter_key(owner: str, bucket: str, shard: int) -> CounterKey:
    if bucket.startswith(QUOTA_PREFIX):  # a quota shard: the task's own, not the batch's
        return (quota_pk(owner, int(bucket.removeprefix(QUOTA_PREFIX))), QUOTA_USED)
    if bucket.startswith(MINUTE):
        return (f"TPUT#{owner}#{shard % THROUGHPUT_SHARDS}", bucket)
    return (f"STATS#{owner}#{shard}", bucket)


def day_bucket(day: date) -> str:
    return f"{DAY}{day.isoformat()}"


def minute_bucket(moment: datetime) -> str:
    """The bucket of a minute: "MIN#YYYY-MM-DDTHH:MM"."""
    return f"{MINUTE}{moment.isoformat()[:16]}"


def counter_partitions(owner: str) -> list[str]:
    """Every counter partition of an owner: what a stats read queries."""
    return [f"STATS#{owner}#{s}" for s in range(STATS_SHARDS)] + [
        f"TPUT#{owner}#{s}" for s in range(THROUGHPUT_SHARDS)
    ]


def shard_of(task_id: str, shard_count: int) -> int:
    return int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) % shard_count


def sort_key(created_at: str, task_id: str) -> str:
    """`ck`, the sort key of every index: creation time, then id."""
    return f"{created_at}#{task_id}"


# PENDING and RUNNING share one status-index partition, ACTIVE: a claim (and a retry's wait
# back to PENDING) changes no index key, so it writes no index entry (4 write units fewer).
# A list filtered by either status reads ACTIVE and checks each task's status.
ACTIVE_PARTITION = "ACTIVE"
ACTIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})
# Tasks written before the shared partition keep their PENDING or RUNNING key until a write
# moves them out of both (they finish): a list of an active status reads those partitions too
# (docs/operations.md, "Status index: the ACTIVE partition").
LEGACY_ACTIVE_PARTITIONS = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)


def status_partition(status: TaskStatus | str) -> str:
    """The status-index partition name of a status: ACTIVE for PENDING and RUNNING."""
    return ACTIVE_PARTITION if status in ACTIVE_STATUSES else str(status)


def status_partitions_read(status: TaskStatus) -> list[str]:
    """The status-index partition names a list filtered by `status` reads."""
    if status in ACTIVE_STATUSES:
        return [ACTIVE_PARTITION, *LEGACY_ACTIVE_PARTITIONS]
    return [status.value]


def index_partition(
    attribute: str,
    owner: str,
    shard: int,
    status: str | None = None,
    task_type: str | None = None,
) -> str:
    """The partition key an index attribute holds for these filters (write-sharded); a
    status filter's as `status_partition` names it."""
    return {
        "gsi1pk": f"OWNER#{owner}#{shard}",
        "gsi2pk": f"OWNER#{owner}#TYPE#{task_type}#{shard}",
        "gsi3pk": f"OWNER#{owner}#STATUS#{status}#{shard}",
        "gsi4pk": f"OWNER#{owner}#STATUS#{status}#TYPE#{task_type}#{shard}",
    }[attribute]


def unsent_partition(shard: int) -> str:
    return f"UNSENT#{shard}"


def unsent_keys(task_id: str, time: str) -> dict[str, str]:
    """The awaiting-enqueue index keys of a task whose message is about to be sent."""
    return {"unsent_pk": unsent_partition(shard_of(task_id, UNSENT_SHARDS)), "unsent_at": time}


def id_index_key(owner: str, task_id_prefix: str) -> str:
    """`idpk`, the by_owner_id partition of a task id's first ID_PREFIX_LENGTH characters."""
    owner_hash = hashlib.sha256(owner.encode()).hexdigest()[:4]
    return owner_hash + task_id_prefix[:ID_PREFIX_LENGTH]


def status_index_keys(owner: str, task_type: str, status: TaskStatus, shard: int) -> dict[str, str]:
    """The index keys that move with the status (the others never change)."""
    return {
        name: index_partition(name, owner, shard, status_partition(status), task_type)
        for name in ("gsi3pk", "gsi4pk")
    }


# ---------------------------------------------------------------- DynamoDB's attribute values

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
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


# ---------------------------------------------------------------- event lines


def event_line(time: str, message: str, level: str = "INFO") -> str:
    """An event line as stored on the task item: "<time> <LEVEL> <message>", a third of the
    size of a map with named fields (the item is rewritten by every checkpoint, and each
    started KB of it is a write unit)."""
    return f"{time} {level} {message[:2000]}"


def parse_event(line: str | Mapping[str, Any]) -> TaskEvent:
    """An event line of the item's log (or an older EVENT# item) as a TaskEvent."""
    if isinstance(line, str):
        time, level, message = line.split(" ", 2)
        line = {"time": time, "level": level, "message": message}
    return TaskEvent.model_validate(line)


# ---------------------------------------------------------------- the task item


class TaskItem(Model):
    """A task's item (`pk = TASK#<id>`, `sk = META`) as stored: times as fixed-width strings,
    JSON documents as strings. Optional attributes are absent rather than empty, so the item
    stays under 1 KB through a run (every checkpoint rewrites it, a write unit per KB)."""

    pk: str
    sk: str = META
    owner: str
    task_type: str
    params: str
    priority: Priority
    status: TaskStatus
    created_at: str
    updated_at: str
    attempts: int
    max_attempts: int
    units_done: int
    units_total: int
    progress: int
    lease_expires_at: int = 0
    # The index keys; a part of a parallel task has none: it is listed through its parent.
    ck: str | None = None
    gsi1pk: str | None = None
    gsi2pk: str | None = None
    gsi3pk: str | None = None
    gsi4pk: str | None = None
    # Absent on tasks created before the by_owner_id index: their short id finds nothing.
    idpk: str | None = None
    run_at: str | None = None
    timeout_seconds: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    state: str | None = None
    cancel_requested: bool | None = None
    lease_token: str | None = None
    error: str | None = None
    result: str | None = None
    result_location: str | None = None
    outputs: list[str] | None = None
    failed_items: int | None = None
    expires_at: int | None = None
    retried_at: str | None = None
    enqueued_at: str | None = None
    parts_total: int | None = None
    parts_in: list[int] | None = None  # a number set: each finished part's index, once
    parts_failed: int | None = None
    generation: str | None = None
    # A chain's step (written at its creation, never changed): `chain_next` is the steps to
    # come as compact JSON, and rides on every checkpoint, so the submit bounds it.
    chain_id: str | None = None
    chain_position: int | None = None
    chain_length: int | None = None
    chain_next: str | None = None
    chain_previous: str | None = None
    previous_result: str | None = None
    unsent_pk: str | None = None
    unsent_at: str | None = None
    # The owner's quota shard the task took its slot from: the counters give it back there.
    # A short name: a task item near 1 KB costs one write unit per checkpoint, two past it.
    qs: int | None = None
    # Lines "<time> <LEVEL> <message>"; maps with those three fields on older items. The
    # newest only: older lines move to EVENT# items (store/event_log.py), `log_moved` of them.
    log: list[str | dict[str, Any]] = []
    log_moved: int | None = None

    @classmethod
    def new(
        cls, task: Task, shard_count: int, status: TaskStatus, log: list[str | dict[str, Any]]
    ) -> TaskItem:
        """The item of a task about to be created, in `status` (the lifecycle's choice)."""
        shard = shard_of(task.task_id, shard_count)
        created = format_time(task.created_at)
        partition = status_partition(status)
        return cls(
            pk=task_pk(task.task_id),
            owner=task.owner,
            task_type=task.task_type,
            params=json.dumps(task.params, separators=(",", ":"), sort_keys=True),
            priority=task.priority,
            status=status,
            created_at=created,
            updated_at=format_time(task.updated_at),
            attempts=task.attempts,
            max_attempts=task.max_attempts,
            units_done=task.units_done,
            units_total=task.units_total,
            progress=task.progress,
            ck=sort_key(created, task.task_id),
            gsi1pk=index_partition("gsi1pk", task.owner, shard),
            gsi2pk=index_partition("gsi2pk", task.owner, shard, task_type=task.task_type),
            gsi3pk=index_partition("gsi3pk", task.owner, shard, partition, task.task_type),
            gsi4pk=index_partition("gsi4pk", task.owner, shard, partition, task.task_type),
            idpk=id_index_key(task.owner, task.task_id),
            run_at=format_time(task.run_at) if task.run_at else None,
            timeout_seconds=task.timeout_seconds or None,
            generation=task.generation,
            chain_id=task.chain_id,
            chain_position=task.chain_position or None,
            chain_length=task.chain_length or None,
            chain_next=_steps_json(task.chain_next) if task.chain_next else None,
            chain_previous=task.chain_previous,
            previous_result=task.previous_result,
            unsent_pk=unsent_partition(shard_of(task.task_id, UNSENT_SHARDS)),
            unsent_at=created,
            qs=task.quota_shard,
            log=log,
        )

    @classmethod
    def new_part(cls, parent: Task, index: int, state: ChunkState, log: list[str]) -> TaskItem:
        """The PENDING item of part `index` of `parent`, its first state planned: the parent's
        type, params, owner, priority and attempts, and no index keys (it is no list row)."""
        created = format_time(parent.updated_at)
        return cls(
            pk=task_pk(part_id(parent.task_id, index)),
            owner=parent.owner,
            task_type=parent.task_type,
            params=json.dumps(parent.params, separators=(",", ":"), sort_keys=True),
            priority=parent.priority,
            status=TaskStatus.PENDING,
            created_at=created,
            updated_at=created,
            attempts=0,
            max_attempts=parent.max_attempts,
            units_done=state.units_done,
            units_total=state.units_total,
            progress=state.progress,
            state=state.model_dump_json(),
            timeout_seconds=parent.timeout_seconds or None,
            log=list(log),
        )

    @classmethod
    def from_dynamodb(cls, item: Mapping[str, Any]) -> TaskItem:
        return cls.model_validate(deserialize(item))

    def dynamodb(self) -> dict[str, Any]:
        return serialize(self.model_dump(mode="json", exclude_none=True))

    def task(self) -> Task:
        return Task(
            task_id=self.pk.removeprefix(TASK_PREFIX),
            owner=self.owner,
            task_type=self.task_type,
            params=json.loads(self.params),
            status=self.status,
            priority=self.priority,
            progress=self.progress,
            units_done=self.units_done,
            units_total=self.units_total,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            cancel_requested=bool(self.cancel_requested),
            created_at=parse_time(self.created_at),
            updated_at=parse_time(self.updated_at),
            started_at=parse_optional_time(self.started_at),
            finished_at=parse_optional_time(self.finished_at),
            run_at=parse_optional_time(self.run_at),
            error=TaskError.model_validate_json(self.error) if self.error else None,
            result=json.loads(self.result) if self.result else None,
            result_location=self.result_location,
            outputs=self.outputs or [],
            failed_items=self.failed_items or 0,
            state=ChunkState.model_validate_json(self.state) if self.state else None,
            lease_token=self.lease_token,
            lease_expires_at=self.lease_expires_at,
            expires_at=self.expires_at,
            timeout_seconds=self.timeout_seconds,
            retried_at=parse_optional_time(self.retried_at),
            enqueued_at=parse_optional_time(self.enqueued_at),
            parts_total=self.parts_total or 0,
            parts_in=self.parts_in or [],
            parts_failed=self.parts_failed or 0,
            generation=self.generation,
            chain_id=self.chain_id,
            chain_position=self.chain_position or 0,
            chain_length=self.chain_length or 0,
            chain_next=[ChainStep.model_validate(step) for step in json.loads(self.chain_next)]
            if self.chain_next
            else [],
            chain_previous=self.chain_previous,
            previous_result=self.previous_result,
            quota_shard=self.qs,
        )

    def events(self) -> list[TaskEvent]:
        """The item's own event lines, as shown (claims numbered as attempts)."""
        parsed = [parse_event(line) for line in self.log]
        shown = number_attempts([event.message for event in parsed], self.max_attempts)
        return [
            event.model_copy(update={"message": message})
            for event, message in zip(parsed, shown, strict=True)
        ]


def _steps_json(steps: list[ChainStep]) -> str:
    return json.dumps(
        [step.model_dump(mode="json") for step in steps], separators=(",", ":"), sort_keys=True
    )


def item_to_task(item: Mapping[str, Any]) -> Task:
    """A task item as DynamoDB returns it, as the domain Task."""
    return TaskItem.from_dynamodb(item).task()
