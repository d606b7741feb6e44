"""Counts AWS requests with botocore hooks, and prices DynamoDB work from item sizes.

Attach a :class:`Meter` to the clients the code under test uses. Every call is recorded
(service, operation, who made it); for DynamoDB it also derives:

- write units: 1 per started KB of the larger of the item's size before and after the
  write, per item; 2x inside a transaction. Sizes come from the item images read with a
  separate, unhooked client just before and after the write (so an UpdateItem is priced on
  the whole item, as DynamoDB does).
- index writes: from the request parameters and what the item's index keys were before. A
  Put writes each index whose key attributes it carries; an UpdateItem that SETs an index
  key attribute to a new value deletes the old index entry and puts the new one (2 writes);
  attributes an update does not touch cost the index nothing (all indexes are KEYS_ONLY).
- read units: GetItem 1 per started 4 KB (half when eventually consistent); Query per
  started 4 KB of all items it returned (index queries are eventually consistent);
  BatchGetItem per item, each rounded up to 4 KB.
- every write's partition key, for the table and for each index.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from taskqueue.store.items import ID_INDEX, INDEXES, UNSENT_INDEX, UNSENT_KEYS

# Each index's partition key attribute -> (index, sort key attribute): every index of the
# table, the sparse awaiting-enqueue one too (an entry put at submit, deleted at the mark).
INDEX_OF_ATTRIBUTE = {attribute: (index, "ck") for index, attribute in INDEXES.values()}
INDEX_OF_ATTRIBUTE["idpk"] = (ID_INDEX, "pk")
INDEX_OF_ATTRIBUTE[UNSENT_KEYS[0]] = (UNSENT_INDEX, UNSENT_KEYS[1])
TRACKED = (*INDEX_OF_ATTRIBUTE, "ck", "pk", UNSENT_KEYS[1])
DYNAMODB_WRITES = {
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
}
_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)
_ASSIGN = re.compile(r"(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)")
_PATH = re.compile(r"#?[A-Za-z0-9_]+")


# ------------------------------------------------------------------ item sizes


def value_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented size rules)."""
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return _number_size(str(raw))
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in raw)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    raise ValueError(f"unknown attribute type {kind}")


def _number_size(text: str) -> int:
    digits = format(Decimal(text).normalize(), "f").lstrip("-").replace(".", "").strip("0")
    return 1 + math.ceil(max(1, len(digits)) / 2)


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


# ------------------------------------------------------------------ records


@dataclass
class Call:
    service: str
    operation: str
    role: str
    ok: bool
    items_read: int = 0
    bytes_read: int = 0
    read_units: float = 0.0


@dataclass
class IndexWrite:
    index: str
    partition: str
    kind: str  # "put" or "delete"


@dataclass
class ItemWrite:
    role: str
    operation: str  # PutItem, UpdateItem, DeleteItem; Transact* and Batch* items too
    pk: str
    sk: str
    transactional: bool
    ok: bool
    call: int = 0  # sequence number of the request that made the write
    old_size: int | None = None
    new_size: int | None = None
    index_writes: list[IndexWrite] = field(default_factory=list)

    @property
    def write_units(self) -> float | None:
        if self.old_size is None or self.new_size is None:
            return None
        units = write_units(max(self.old_size, self.new_size))
        return 2 * units if self.transactional else units


@dataclass
class _Pending:
    """One request's parameters and the images of the items it writes, before the write."""

    params: dict[str, Any]
    before: dict[tuple[str, str], dict[str, Any] | None]


class Meter:
    """Records every request of the attached clients; thread safe."""

    def __init__(self, image_client: Any | None = None, table_name: str | None = None) -> None:
        # With an image client (an unhooked DynamoDB client of the same endpoint), write
        # units are measured from the items' sizes before and after each write.
        self.image_client = image_client
        self.table_name = table_name
        self.calls: list[Call] = []
        self.writes: list[ItemWrite] = []
        self._index_keys: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()
        self._attached: set[int] = set()

    # -------------------------------------------------------------- hooks

    def attach(self, client: Any, role: str) -> None:
        """Count `client`'s requests as made by `role` ("api", "worker", ...)."""
        if id(client) in self._attached:
            return
        self._attached.add(id(client))
        events = client.meta.events
        service = client.meta.service_model.service_name

        def before(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            context["bench_meter"] = self._before(service, model.name, params)

        def after(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            self._after(service, model.name, role, parsed, context.get("bench_meter"))

        events.register("before-parameter-build.*.*", before, unique_id=f"bench-b-{id(self)}")
        events.register("after-call.*.*", after, unique_id=f"bench-a-{id(self)}")

    def attach_all(self, clients: Iterable[tuple[Any, str]]) -> None:
        for client, role in clients:
            self.attach(client, role)

    def _before(self, service: str, operation: str, params: dict[str, Any]) -> _Pending | None:
        if service != "dynamodb":
            return None
        keys = [key for key, _, _ in _written_items(operation, params)]
        before = {key: self._image(key) for key in keys} if self.image_client else {}
        return _Pending(params=params, before=before)

    def _image(self, key: tuple[str, str]) -> dict[str, Any] | None:
        assert self.image_client is not None and self.table_name is not None
        response = self.image_client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _after(
        self,
        service: str,
        operation: str,
        role: str,
        parsed: dict[str, Any],
        pending: _Pending | None,
    ) -> None:
        error = (parsed.get("Error") or {}).get("Code")
        call = Call(service, operation, role, ok=error is None)
        if service == "dynamodb" and error is None:
            _count_reads(call, operation, pending.params if pending else {}, parsed)
        writes: list[ItemWrite] = []
        if service == "dynamodb" and pending is not None and operation in DYNAMODB_WRITES:
            writes = self._item_writes(operation, role, error, pending)
        with self._lock:
            self.calls.append(call)
            for write in writes:
                write.call = len(self.calls) - 1
            self.writes.extend(writes)

    def _item_writes(
        self, operation: str, role: str, error: str | None, pending: _Pending
    ) -> list[ItemWrite]:
        transactional = operation == "TransactWriteItems"
        writes = []
        for key, kind, request in _written_items(operation, pending.params):
            ok = error is None
            write = ItemWrite(role, kind, key[0], key[1], transactional, ok)
            if self.image_client is not None:
                old = pending.before.get(key)
                write.old_size = item_size(old)
                write.new_size = item_size(self._image(key)) if ok else 0
            if ok:
                with self._lock:
                    write.index_writes = self._index_changes(key, kind, request)
            writes.append(write)
        return writes

    # -------------------------------------------------------------- index keys

    def _index_changes(
        self, key: tuple[str, str], kind: str, request: dict[str, Any]
    ) -> list[IndexWrite]:
        old = self._index_keys.get(key, {})
        if kind == "PutItem":
            item = request["Item"]
            new = {name: item[name]["S"] for name in TRACKED if "S" in item.get(name, {})}
        elif kind == "DeleteItem":
            new = {}
        else:
            new = dict(old)
            new.update(_updated_index_keys(request))
            for name in _removed_attributes(request):
                new.pop(name, None)
        self._index_keys[key] = new
        changes = []
        for attribute, (index, sort_key) in INDEX_OF_ATTRIBUTE.items():
            before = (old.get(attribute), old.get(sort_key))
            after = (new.get(attribute), new.get(sort_key))
            if before == after:
                continue
            if None not in before:
                changes.append(IndexWrite(index, str(before[0]), "delete"))
            if None not in after:
                changes.append(IndexWrite(index, str(after[0]), "put"))
        return changes

    # -------------------------------------------------------------- summaries

    def requests(self, role: str | None = None) -> Counter[str]:
        return Counter(
            f"{c.service}.{c.operation}" for c in self.calls if role is None or c.role == role
        )

    def write_units(self, role: str | None = None) -> float:
        return sum(
            w.write_units or 0 for w in self.writes if role is None or w.role == role
        ) + self.index_write_units(role)

    def index_write_units(self, role: str | None = None) -> int:
        # A KEYS_ONLY index entry (keys + 100 bytes of overhead) is far below 1 KB: 1 unit.
        return sum(len(w.index_writes) for w in self.writes if role is None or w.role == role)

    def table_write_units(self, role: str | None = None) -> float:
        return sum(w.write_units or 0 for w in self.writes if role is None or w.role == role)

    def read_units(self, role: str | None = None) -> float:
        return sum(c.read_units for c in self.calls if role is None or c.role == role)

    def partition_writes(self) -> Counter[tuple[str, str]]:
        """(table or index name, partition key) -> successful writes."""
        counts: Counter[tuple[str, str]] = Counter()
        for write in self.writes:
            if not write.ok:
                continue
            counts[("table", write.pk)] += 1
            for index_write in write.index_writes:
                counts[(index_write.index, index_write.partition)] += 1
        return counts

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.writes.clear()


def _written_items(
    operation: str, params: dict[str, Any]
) -> list[tuple[tuple[str, str], str, dict[str, Any]]]:
    """(key, PutItem/UpdateItem/DeleteItem, the item's request) for every item written."""
    out: list[tuple[tuple[str, str], str, dict[str, Any]]] = []
    if operation not in DYNAMODB_WRITES:
        return out
    if operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            for kind, request in entry.items():
                if kind == "ConditionCheck":
                    continue
                out.append((_key(request), f"{kind}Item", request))
    elif operation == "BatchWriteItem":
        for requests in params["RequestItems"].values():
            if not isinstance(requests, list):
                continue
            for entry in requests:
                if "PutRequest" in entry:
                    out.append((_key(entry["PutRequest"]), "PutItem", entry["PutRequest"]))
                elif "DeleteRequest" in entry:
                    out.append((_key(entry["DeleteRequest"]), "DeleteItem", entry["DeleteRequest"]))
    else:
        out.append((_key(params), operation, params))
    return out


def _key(request: dict[str, Any]) -> tuple[str, str]:
    source = request.get("Item") or request["Key"]
    return source["pk"]["S"], source["sk"]["S"]


def _clauses(expression: str) -> dict[str, str]:
    parts = _CLAUSE.split(expression)
    return {parts[i].upper(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _name(token: str, request: dict[str, Any]) -> str:
    return str((request.get("ExpressionAttributeNames") or {}).get(token, token))


def _updated_index_keys(request: dict[str, Any]) -> dict[str, str]:
    assignments = _clauses(request.get("UpdateExpression", "")).get("SET", "")
    values = request.get("ExpressionAttributeValues") or {}
    updated = {}
    for target, placeholder in _ASSIGN.findall(assignments):
        name = _name(target, request)
        if name in TRACKED and "S" in values.get(placeholder, {}):
            updated[name] = values[placeholder]["S"]
    return updated


def _removed_attributes(request: dict[str, Any]) -> list[str]:
    removed = _clauses(request.get("UpdateExpression", "")).get("REMOVE", "")
    return [_name(token, request) for token in _PATH.findall(removed)]


def _count_reads(
    call: Call, operation: str, params: dict[str, Any], parsed: dict[str, Any]
) -> None:
    consistent = bool(params.get("ConsistentRead")) and "IndexName" not in params
    if operation == "GetItem":
        size = item_size(parsed.get("Item"))
        call.items_read = 1 if parsed.get("Item") else 0
        call.bytes_read = size
        call.read_units = read_units(size, consistent)
    elif operation == "Query":
        items = parsed.get("Items", [])
        size = sum(item_size(item) for item in items)
        call.items_read = len(items)
        call.bytes_read = size
        call.read_units = read_units(size, consistent)
    elif operation == "BatchGetItem":
        for table, items in parsed.get("Responses", {}).items():
            request = (params.get("RequestItems") or {}).get(table, {})
            strong = bool(request.get("ConsistentRead"))
            for item in items:
                size = item_size(item)
                call.items_read += 1
                call.bytes_read += size
                call.read_units += read_units(size, strong)
