"""Adjustments of moto's in-memory DynamoDB and S3, for the local stack and the load tests.

- ``undo_log_transactions``: moto backs up every table a TransactWriteItems touches with a
  deep copy of the whole table, so each transaction costs O(table size) (and memory: the local
  stack grew by megabytes a task). This keeps moto's semantics (all or nothing, cancellation
  reasons in item order) with an undo log of the touched items only, and checks every
  condition before writing anything, so a cancelled transaction leaves no stream record.
- ``partition_queries``: moto answers a Query, on the table or an index, by sorting and then
  comparing every item of the table. This hands it the items of the queried partition only;
  moto filters and sorts them as before, so every answer is unchanged.
- ``serialize_dynamodb_requests``: moto's tables are not thread-safe (concurrent transactions
  fail with "dictionary changed size during iteration"); DynamoDB applies each request
  atomically. One lock around each request gives threads DynamoDB's behaviour.
- ``ranged_s3_reads``: moto answers a ranged GetObject by copying the whole object out of its
  buffer and slicing it, under the object's lock: 0.11 s for any range of a 200 MB object,
  one reader at a time, so the chunks and parts of a big CSV queue up behind each other. This
  reads only the range asked for; the answer (bytes, status, headers) is unchanged.
- ``direct_attribute_values``: moto writes each DynamoDB attribute value of an answer through
  its generic, model-driven serializer: ten member look-ups through alias providers per value,
  at every level of a map or list, so returning one task item (params, chunk state, parts)
  costs tens of milliseconds, most of the in-process suites' time. This writes the same JSON
  straight from the ``{type: value}`` dicts moto hands its serializer.
- ``cached_update_expressions``: moto tokenizes and parses an UpdateExpression on every
  UpdateItem, twice (the handler, then the backend), though the code under test sends a
  handful of distinct expressions. This keeps the parsed trees of the last 1,024 expressions;
  moto only reads them (its validator works on a deep copy), so every answer is unchanged.
- ``cached_backend_hosts``: moto's server finds the service of every request by matching its
  host against the URL patterns of every backend (hundreds of regular expressions) and the
  list of moto's modules, under the dispatcher's one lock: 0.3-0.8 ms a request, the same
  answer every time for a host. This keeps each host's backend once found; a host moto finds
  no backend for is looked up again each time, as before.
- ``one_rsa_key_for_symmetric_keys``: moto gives every KMS key an RSA-2048 key pair, also a
  symmetric one, which never signs or encrypts with it: 60 ms of CPU for each table created
  with encryption at rest (its default key), that is at every test's ``aws``. Symmetric keys
  share one pair here, one a process (every test's ``aws`` installs the patches afresh);
  asymmetric keys still get their own. The one answer this changes is moto's GetPublicKey of
  a symmetric key, which KMS refuses (and nothing here calls).

None of them changes what the code under test sees (tests/integration/test_moto_patches.py sends
the same requests to plain and patched moto). Each takes the function that installs it:
``setattr`` (the default, for good) or a test's ``monkeypatch.setattr`` (undone after it).

They reach into moto's internals, so they apply to the moto they were written for only
(``PATCHED_MOTO_VERSION``, the pin of requirements-dev.txt). On any other version a patch
whose absence changes answers fails loudly, saying what to re-check; the one that only saves
time is skipped with a warning (``PATCHES`` says which is which, and why).
"""

from __future__ import annotations

import base64
import copy
import functools
import inspect
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import moto
from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
from moto.dynamodb.responses import DynamoHandler
from moto.kms import models as kms_models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.s3.models import FakeKey
from moto.s3.responses import S3Response


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    # Every condition is checked before anything is written: a cancelled transaction writes
    # nothing at all, as in DynamoDB (moto writes, then restores: its table streams would
    # keep records of writes that never happened).
    operations: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    errors: list[tuple[Any, Any, Any]] = []
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table_name = op["TableName"]
        key = _key_of(self, op_type, op)
        marker = (str(table_name), str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        operations.append((op_type, op, table_name, key))
        condition = op.get("ConditionExpression")
        current = self.get_item(table_name, key)
        names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        try:
            failed = condition is not None and not get_filter_expression(
                condition, names, values
            ).expr(current)
        except Exception as exc:
            errors.append((type(exc).__name__, str(exc), None))
            continue
        if failed:
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            errors.append(("ConditionalCheckFailed", str(ConditionalCheckFailed().message), old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    undo: list[tuple[str, dict[str, Any], Any]] = []
    streams = {name: self.get_table(name).stream_shard for _, _, name, _ in operations}
    stream_lengths = {name: len(shard.items) for name, shard in streams.items() if shard}
    try:
        for op_type, op, table_name, key in operations:
            if op_type == "ConditionCheck":
                continue
            undo.append((table_name, key, copy.deepcopy(self.get_item(table_name, key))))
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            else:
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=None,
                    expression_attribute_names=op.get("ExpressionAttributeNames") or {},
                    expression_attribute_values=op.get("ExpressionAttributeValues") or {},
                )
    except Exception:
        # An update moto refuses (validation): put back what was written, and fail. Neither
        # the writes nor their undoing happened, for DynamoDB: their stream records go too.
        for table_name, key, before in reversed(undo):
            if before is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before.to_json()["Attributes"])
        for table_name, length in stream_lengths.items():
            del streams[table_name].items[length:]  # type: ignore[union-attr]
        raise


Patch = Callable[[Any, str, Any], None]
_LOCK = threading.RLock()

PATCHED_MOTO_VERSION = "5.2.5"


class MotoVersionMismatch(RuntimeError):
    """A patch that must not be left out, on a moto it was not written for."""


class MotoPatchSkipped(UserWarning):
    """A patch that only saves time, left out on a moto it was not written for."""


@dataclass(frozen=True)
class MotoPatch:
    on_other_version: Literal["fail", "skip"]
    why: str  # why that choice: what running without it would do
    recheck: str  # what to compare with the new moto before moving PATCHED_MOTO_VERSION


# The rules as data: what each patch does on a moto other than PATCHED_MOTO_VERSION.
PATCHES: dict[str, MotoPatch] = {
    "undo_log_transactions": MotoPatch(
        "fail",
        "it replaces moto's whole TransactWriteItems, which a new moto may have changed; and "
        "without it a transaction copies whole tables (hours for the load tests) and a stream "
        "reader holding a shard iterator reads the writes of cancelled transactions "
        "(docs/moto-transaction-bug.md)",
        "moto.dynamodb.models.DynamoDBBackend.transact_write_items (validations, cancellation "
        "reasons, ReturnValuesOnConditionCheckFailure) against _transact_write_items, and "
        "whether the new moto still leaves stream records of cancelled transactions",
    ),
    "partition_queries": MotoPatch(
        "skip",
        "it only narrows the items moto's own Query code looks at: plain moto gives the same "
        "answers, slower",
        "moto.dynamodb.models.table.Table.query: its hash_key_conditions argument, and that it "
        "reads the items through Table.all_items",
    ),
    "serialize_dynamodb_requests": MotoPatch(
        "fail",
        "without it, requests from several threads interleave inside moto: a reader sees the "
        "writes of a transaction that is later cancelled, and moto's dicts change while it "
        "iterates them",
        "that moto.dynamodb.responses.DynamoHandler.call_action still runs every DynamoDB "
        "request, once",
    ),
    "ranged_s3_reads": MotoPatch(
        "skip",
        "it only reads less of an object for a ranged GET: plain moto gives the same answers, "
        "slower for big objects",
        "moto.s3.responses.S3Response.get_object and key_response (a single range is sliced "
        "out of what get_object returns as the key's value) and moto.s3.models.FakeKey.value",
    ),
    "direct_attribute_values": MotoPatch(
        "skip",
        "it only writes the same JSON for DynamoDB attribute values faster: plain moto gives "
        "the same answers, slower",
        "moto.core.serialize.BaseJSONSerializer._serialize_type_structure and what it writes "
        "for the members of botocore's dynamodb AttributeValue shape (string, blob, their "
        "lists, map, list, boolean), and moto.dynamodb.models.utilities.dynamo_to_dict",
    ),
    "cached_update_expressions": MotoPatch(
        "skip",
        "it only parses each distinct UpdateExpression once: plain moto gives the same "
        "answers, slower",
        "moto.dynamodb.parsing.expressions.UpdateExpressionParser.make, and that every user of "
        "the tree it returns (moto.dynamodb.responses update_item and transact_write_items, "
        "models update_item, parsing.validators.Validator, which deep-copies it) only reads it",
    ),
    "cached_backend_hosts": MotoPatch(
        "skip",
        "it only keeps the backend moto's server found for a host: plain moto finds the same "
        "one again at every request, slower",
        "moto.moto_server.werkzeug_app.DomainDispatcherApplication.get_backend_for_host: that "
        "its answer depends on the host alone (backend_url_patterns, set in __init__, and "
        "backends.list_of_moto_modules)",
    ),
    "one_rsa_key_for_symmetric_keys": MotoPatch(
        "skip",
        "it only spares generating an RSA pair that a symmetric KMS key never uses: plain "
        "moto gives the same answers, slower",
        "moto.kms.models.Key.__init__ (that it calls generate_private_key(key_spec) from "
        "moto.kms.utils) and that moto uses the private key of a SYMMETRIC_DEFAULT or HMAC key "
        "for nothing (Encrypt, Decrypt, GenerateDataKey use its key_material)",
    ),
    "signal_stream_writes": MotoPatch(
        "skip",
        "it only wakes the local stack's stream pollers when a record is written: without it "
        "they read every stream on a timer, as they did before (same records, more requests)",
        "moto.dynamodb.models.table.StreamShard.add (that it adds every stream record, and "
        "only it)",
    ),
}


def may_apply(name: str, moto_version: str | None = None) -> bool:
    """Whether patch `name` applies to the installed moto; else fail or warn, as PATCHES says."""
    version = moto_version or moto.__version__
    if version == PATCHED_MOTO_VERSION:
        return True
    rule = PATCHES[name]
    message = (
        f"devstack.moto_patches.{name} was written for moto {PATCHED_MOTO_VERSION}, and moto "
        f"{version} is installed. Re-check {rule.recheck}; run "
        "tests/integration/test_moto_patches.py; then set PATCHED_MOTO_VERSION."
    )
    if rule.on_other_version == "fail":
        raise MotoVersionMismatch(f"{message} It cannot be left out: {rule.why}.")
    warnings.warn(f"{message} Running without it: {rule.why}.", MotoPatchSkipped, stacklevel=3)
    return False


def undo_log_transactions(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if may_apply("undo_log_transactions", moto_version):
        patch(DynamoDBBackend, "transact_write_items", _transact_write_items)


_QUERY_KEYS = threading.local()  # TaskListing reads shards from several threads at once


def partition_queries(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("partition_queries", moto_version):
        return
    original_query = Table.query
    signature = inspect.signature(original_query)

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        _QUERY_KEYS.conditions = bound.arguments.get("hash_key_conditions")
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _QUERY_KEYS.conditions = None

    def all_items(self: Table) -> list[Any]:
        if self.range_key_attr:
            items = [item for hash_set in self.items.values() for item in hash_set.values()]
        else:
            items = list(self.items.values())
        conditions = getattr(_QUERY_KEYS, "conditions", None)
        if not conditions:
            return items
        return [item for item in items if all(_same(item, name, v) for name, v in conditions)]

    patch(Table, "query", query)
    patch(Table, "all_items", all_items)


def _same(item: Any, name: str, expected: Any) -> bool:
    value = item.attrs.get(name)
    return value is not None and value.type == expected.type and value.value == expected.value


def serialize_dynamodb_requests(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("serialize_dynamodb_requests", moto_version):
        return
    original = DynamoHandler.call_action
    if getattr(original, "serialized", False):
        return

    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    call_action.serialized = True  # type: ignore[attr-defined]
    patch(DynamoHandler, "call_action", call_action)


_RANGE = threading.local()  # set while get_object answers a range that will be sliced


class _KeyWindow:
    """What a ranged get_object hands on instead of the object's bytes: its length, and the
    one slice key_response takes of it, read from the key's buffer alone."""

    def __init__(self, key: FakeKey) -> None:
        self.key = key

    def __len__(self) -> int:
        return int(self.key.size)

    def __getitem__(self, window: slice) -> bytes:
        start, stop, _ = window.indices(len(self))
        with self.key.lock:
            buffer = self.key._value_buffer
            buffer.seek(start)
            return bytes(buffer.read(max(0, stop - start)))


def _sliced_range(header: str | None, size: int) -> bool:
    """Whether key_response will slice this Range out of the value (a single first-last or
    first- range inside the object); anything else keeps moto's own path."""
    unit, _, spec = (header or "").partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return False
    first, _, last = spec.partition("-")
    try:
        begin = int(first)
        end = int(last) if last.strip() else size - 1
    except ValueError:
        return False
    return 0 <= begin <= min(end, size - 1)


def ranged_s3_reads(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("ranged_s3_reads", moto_version):
        return
    original_get = S3Response.get_object
    if getattr(original_get, "ranged", False):
        return
    whole_value = FakeKey.value

    def value(self: FakeKey) -> Any:
        if getattr(_RANGE, "active", False):
            return _KeyWindow(self)
        return whole_value.fget(self)  # type: ignore[attr-defined]

    def get_object(self: S3Response) -> Any:
        if "partNumber" in self.querystring or self.method != "GET":
            return original_get(self)
        key, _ = self._get_key()
        if not _sliced_range(self.headers.get("range"), key.size):
            return original_get(self)
        _RANGE.active = True
        try:
            return original_get(self)
        finally:
            _RANGE.active = False

    get_object.ranged = True  # type: ignore[attr-defined]
    patch(S3Response, "get_object", get_object)
    patch(FakeKey, "value", property(value, whole_value.fset))  # type: ignore[attr-defined]


def _wire_string(value: Any) -> Any:
    # moto's JSON serializer writes a string member as str(value), but None, {} and [] as is.
    return value if value is None or value == {} or value == [] else str(value)


def _wire_blob(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).strip().decode()


def _wire_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as moto's serializer writes it: the members that are not None
    (NULL and BOOL as they are), strings through str, blobs in base64, maps and lists of
    attribute values in turn."""
    wire: dict[str, Any] = {}
    for name, member in value.items():
        if member is None or name not in _ATTRIBUTE_MEMBERS:
            continue  # moto's serializer only looks up the shape's members
        if name in ("S", "N"):
            wire[name] = _wire_string(member)
        elif name == "B":
            wire[name] = _wire_blob(member)
        elif name in ("SS", "NS"):
            wire[name] = [_wire_string(each) for each in member]
        elif name == "BS":
            wire[name] = [_wire_blob(each) for each in member]
        elif name == "M":
            wire[name] = {k: _wire_attribute(v) for k, v in member.items() if v is not None}
        elif name == "L":
            wire[name] = [_wire_attribute(each) if each is not None else each for each in member]
        else:  # NULL, BOOL
            wire[name] = member
    return wire


_ATTRIBUTE_MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})
_ATTRIBUTE_SERVICES = frozenset({"dynamodb", "dynamodbstreams"})  # one AttributeValue shape


def direct_attribute_values(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("direct_attribute_values", moto_version):
        return
    original = BaseJSONSerializer._serialize_type_structure
    if getattr(original, "direct", False):
        return

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and isinstance(value, dict)
            and self.operation_model.service_model.service_name in _ATTRIBUTE_SERVICES
        ):
            self._default_serialize(serialized, _wire_attribute(value), shape, key)
            return
        original(self, serialized, value, shape, key)

    serialize_structure.direct = True  # type: ignore[attr-defined]
    patch(BaseJSONSerializer, "_serialize_type_structure", serialize_structure)


def cached_update_expressions(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("cached_update_expressions", moto_version):
        return
    parse = vars(UpdateExpressionParser)["make"].__func__
    if getattr(parse, "cached", False):
        return

    @functools.lru_cache(maxsize=1024)
    def parsed(expression: str) -> Any:
        return parse(UpdateExpressionParser, expression)

    def make(cls: Any, expression: str) -> Any:
        if cls is not UpdateExpressionParser:  # a subclass parses as it did
            return parse(cls, expression)
        return parsed(expression)  # an expression that fails to parse raises each time

    make.cached = True  # type: ignore[attr-defined]
    patch(UpdateExpressionParser, "make", classmethod(make))


def cached_backend_hosts(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("cached_backend_hosts", moto_version):
        return
    find = DomainDispatcherApplication.get_backend_for_host
    if getattr(find, "cached", False):
        return

    def get_backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
        # Kept on the dispatcher, whose URL patterns gave the answer. moto calls this under
        # the dispatcher's lock; a dict's read or write is atomic besides.
        found: dict[str | None, Any] = self.__dict__.setdefault("found_backends", {})
        backend = found.get(host)
        if backend is None:
            backend = find(self, host)
            if backend is not None:  # an unknown host: asked again (and warned of) each time
                found[host] = backend
        return backend

    get_backend_for_host.cached = True  # type: ignore[attr-defined]
    patch(DomainDispatcherApplication, "get_backend_for_host", get_backend_for_host)


_ASYMMETRIC = ("RSA_", "ECC_", "SM2")  # the key specs whose key pair moto's API uses


@functools.cache  # by generator: a pair a process, not one each time the patch is installed
def _symmetric_pair(generate: Callable[[str], Any]) -> Any:
    return generate("SYMMETRIC_DEFAULT")


def one_rsa_key_for_symmetric_keys(patch: Patch = setattr, moto_version: str | None = None) -> None:
    if not may_apply("one_rsa_key_for_symmetric_keys", moto_version):
        return
    generate = kms_models.generate_private_key
    if getattr(generate, "shared", False):
        return

    def generate_private_key(key_spec: str) -> Any:
        if key_spec.startswith(_ASYMMETRIC):
            return generate(key_spec)
        return _symmetric_pair(generate)

    generate_private_key.shared = True  # type: ignore[attr-defined]
    patch(kms_models, "generate_private_key", generate_private_key)


def tune_moto(patch: Patch = setattr, moto_version: str | None = None) -> None:
    """All eight: what the local stack runs with."""
    undo_log_transactions(patch, moto_version)
    partition_queries(patch, moto_version)
    serialize_dynamodb_requests(patch, moto_version)
    ranged_s3_reads(patch, moto_version)
    direct_attribute_values(patch, moto_version)
    cached_update_expressions(patch, moto_version)
    cached_backend_hosts(patch, moto_version)
    one_rsa_key_for_symmetric_keys(patch, moto_version)


@contextmanager
def temporarily(*installers: Callable[[Patch], None]) -> Iterator[None]:
    """Install some of the above for a block only (the benchmarks, the tests' `aws`)."""
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, value: Any) -> None:
        # A class's own attribute as stored: a classmethod, not the method it binds to.
        own = vars(owner).get(name) if isinstance(owner, type) else None
        saved.append((owner, name, own if own is not None else getattr(owner, name)))
        setattr(owner, name, value)

    for install in installers:
        install(patch)
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
