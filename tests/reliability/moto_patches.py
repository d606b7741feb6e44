"""Two adjustments of moto's in-memory DynamoDB that the reliability suite needs.

- ``undo_log_transactions``: moto backs up every table a TransactWriteItems touches with a
  deep copy of the whole table, so each transaction costs O(table size) and a run of a few
  thousand tasks becomes quadratic. This keeps moto's semantics (all or nothing, cancellation
  reasons in item order) with an undo log of the touched items only.
- ``partition_queries``: moto answers a Query on the table's own key by filtering and sorting
  every item of the table. This hands it the queried partition only (same answer).
- ``atomic_requests``: moto's tables are not thread-safe; DynamoDB applies each request
  atomically. One lock around each request gives threads DynamoDB's behaviour.

None of them changes what the code under test sees; they make a few thousand tasks fit in CI.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

from devstack.moto_locking import serialize_dynamodb_requests


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
    undo: list[tuple[str, dict[str, Any], Any]] = []
    seen: set[tuple[str, str]] = set()
    errors: list[tuple[Any, Any, Any]] = []

    def rollback() -> None:
        for table_name, key, before in reversed(undo):
            if before is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, before.to_json()["Attributes"])

    for item in transact_items:
        original_item = None
        if len(item) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            key = _key_of(self, op_type, op)
            marker = (str(table_name), str(dict(sorted(key.items()))))
            if marker in seen:
                raise MultipleTransactionsException()
            seen.add(marker)
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            condition = op.get("ConditionExpression")
            current = self.get_item(table_name, key)
            if condition is not None and not get_filter_expression(condition, names, values).expr(
                current
            ):
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    original_item = current.to_json()["Attributes"]
                raise ConditionalCheckFailed(item=original_item)
            if op_type != "ConditionCheck":
                undo.append((table_name, key, copy.deepcopy(current)))
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=None,
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as exc:
            errors.append(("ConditionalCheckFailed", str(exc.message), original_item))
        except Exception as exc:
            errors.append((type(exc).__name__, str(exc), original_item))
    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)


def undo_log_transactions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", _transact_write_items)


def partition_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    original_query, original_all_items = Table.query, Table.all_items
    hint = threading.local()  # TaskStore.stats queries its shards from several threads

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kwargs)
        hint.partition = (self, hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            hint.partition = None

    def all_items(self: Table) -> list[Any]:
        table, hash_key = getattr(hint, "partition", None) or (None, None)
        if table is not self:
            return original_all_items(self)  # type: ignore[no-any-return]
        partition = self.items.get(hash_key, {})
        return sorted(partition.values(), key=lambda item: item.range_key)

    monkeypatch.setattr(Table, "query", query)
    monkeypatch.setattr(Table, "all_items", all_items)


def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    serialize_dynamodb_requests(monkeypatch.setattr)
