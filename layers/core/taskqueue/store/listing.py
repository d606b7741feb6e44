"""The task list: index shards read newest-first, a k-way merge, and an opaque cursor."""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskqueue.errors import InvalidRequest
from taskqueue.models import Task, TaskStatus, format_time
from taskqueue.store.items import (
    ID_INDEX,
    ID_PREFIX_LENGTH,
    INDEXES,
    SORT_KEY_PATTERN,
    TASK_PREFIX,
    id_index_key,
    index_partition,
    status_partitions_read,
    task_key,
    task_pk,
)
from taskqueue.store.table import Table
from taskqueue.store.tasks import TaskStore

PARALLEL_READS = 8  # concurrent Queries of one list page
# The tasks a page may check per task it shows: a filter on PENDING or RUNNING reads the
# partition both share; past this, the page comes back short, with a cursor to read on.
MAX_CANDIDATES_PER_TASK = 4


@dataclass
class ListPage:
    tasks: list[Task]
    next_cursor: str | None


@dataclass
class _ShardReader:
    """Reads one index shard newest-first in small batches, for a k-way merge."""

    shard: int  # the reader's number: partition number x shard count + shard
    partition: str
    after_ck: str | None
    buffer: list[str] = field(default_factory=list)
    last_key: dict[str, Any] | None = None
    exhausted: bool = False
    consumed_ck: str | None = None


class TaskListing:
    def __init__(self, table: Table, tasks: TaskStore) -> None:
        self.table = table
        self.tasks = tasks

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
        shard_count = self.table.shard_count
        index, attribute = INDEXES[(status is not None, task_type is not None)]
        fingerprint = hashlib.sha256(
            json.dumps(
                [owner, index, status, task_type, str(created_after), str(created_before)]
            ).encode()
        ).hexdigest()[:16]
        # A status filter's partitions (PENDING and RUNNING share ACTIVE), each sharded.
        partitions = status_partitions_read(status) if status is not None else [None]
        reader_count = shard_count * len(partitions)
        positions = decode_cursor(cursor, fingerprint, reader_count) if cursor else {}
        lower = format_time(created_after) if created_after else None
        upper = format_time(created_before) if created_before else None
        batch = max(1, -(-limit // shard_count))
        readers = []
        for number in range(reader_count):
            position = positions.get(str(number), "")
            if position is None:
                continue  # this shard was exhausted on an earlier page
            name, shard = partitions[number // shard_count], number % shard_count
            partition = index_partition(attribute, owner, shard, name, task_type)
            readers.append(_ShardReader(number, partition, position or None))

        def fill(reader: _ShardReader) -> None:
            self._read_shard(index, attribute, reader, lower, upper, batch)

        # The first read of every shard is independent: in parallel, so a page costs about
        # one round trip plus refills, not one per shard.
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            list(pool.map(fill, readers))
        heap = [(_desc(r.buffer[0]), r.shard, r) for r in readers if r.buffer]
        heapq.heapify(heap)
        now = self.table.now()
        visible: list[Task] = []
        checked = matched = 0
        budget = limit * MAX_CANDIDATES_PER_TASK
        # An ACTIVE partition holds both active statuses (and an item may have moved on since
        # its index entry was read): check each task, and read on until the page is full, the
        # shards are exhausted or the page's budget of candidates is spent.
        while heap and len(visible) < limit and checked < budget:
            need = limit - len(visible)
            # as many candidates as the share of matches so far says fill the page
            estimate = need * (checked + 1) // (matched + 1) if checked else need
            want = min(budget - checked, max(need, estimate))
            picked: list[tuple[str, _ShardReader, str | None]] = []  # ck, reader, its place
            while heap and len(picked) < want:
                _, _, reader = heapq.heappop(heap)
                ck = reader.buffer.pop(0)
                picked.append((ck, reader, reader.consumed_ck))
                reader.consumed_ck = ck
                if not reader.buffer and not reader.exhausted:
                    fill(reader)
                if reader.buffer:
                    heapq.heappush(heap, (_desc(reader.buffer[0]), reader.shard, reader))
            tasks = self.tasks.batch_get([ck.split("#", 1)[1] for ck, _, _ in picked])
            by_id = {t.task_id: t for t in tasks}
            for used, (ck, _, _) in enumerate(picked, start=1):
                task = by_id.get(ck.split("#", 1)[1])
                checked += 1
                if (
                    task is not None
                    and self.tasks.visible(task, owner, now)
                    and (status is None or task.status == status)
                    and (task_type is None or task.task_type == task_type)
                ):
                    matched += 1
                    visible.append(task)
                    if len(visible) == limit:
                        _put_back(picked[used:])
                        break
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
            next_cursor = encode_cursor(fingerprint, state)
        return ListPage(visible, next_cursor)

    def find_by_id_prefix(self, owner: str, prefix: str, limit: int) -> list[Task]:
        """The owner's tasks whose id starts with `prefix` (at least ID_PREFIX_LENGTH
        characters), newest first: one Query of a near-unique partition, then the items."""
        if len(prefix) < ID_PREFIX_LENGTH:
            raise ValueError(f"an id prefix has at least {ID_PREFIX_LENGTH} characters")
        response = self.table.client.query(
            TableName=self.table.name,
            IndexName=ID_INDEX,
            KeyConditionExpression="idpk = :p AND begins_with(pk, :task)",
            ExpressionAttributeValues={
                ":p": {"S": id_index_key(owner, prefix)},
                ":task": {"S": task_pk(prefix)},
            },
            # Other owners' tasks may share the key: read past them (a handful at most).
            Limit=limit + 10,
        )
        ids = [item["pk"]["S"].removeprefix(TASK_PREFIX) for item in response.get("Items", [])]
        now = self.table.now()
        found = [t for t in self.tasks.batch_get(ids) if self.tasks.visible(t, owner, now)]
        return sorted(found, key=lambda t: t.created_at, reverse=True)[:limit]

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
            "TableName": self.table.name,
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
        response = self.table.client.query(**request)
        reader.buffer.extend(item["ck"]["S"] for item in response.get("Items", []))
        reader.last_key = response.get("LastEvaluatedKey")
        reader.exhausted = reader.last_key is None


def _put_back(unused: list[tuple[str, _ShardReader, str | None]]) -> None:
    """Return candidates read past a full page to their readers: the cursor resumes at them."""
    for ck, reader, place in reversed(unused):
        reader.buffer.insert(0, ck)
        reader.consumed_ck = place


def encode_cursor(fingerprint: str, positions: dict[str, str | None]) -> str:
    raw = json.dumps({"v": 1, "f": fingerprint, "p": positions}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str, reader_count: int) -> dict[str, str | None]:
    """Each shard's position (of each partition read) from a cursor of this very list;
    InvalidRequest otherwise."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        positions = raw["p"]
        valid = (
            raw.get("v") == 1
            and raw.get("f") == fingerprint
            and isinstance(positions, dict)
            and all(
                key.isdigit()
                and int(key) < reader_count
                and (value is None or (isinstance(value, str) and SORT_KEY_PATTERN.match(value)))
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


def _desc(ck: str) -> tuple[int, ...]:
    """Heap key that pops the newest `ck` first (heapq is a min-heap)."""
    return tuple(-b for b in ck.encode())
