"""DynamoDB access: the only package that speaks DynamoDB. Every state change is conditional.

`Store` gathers the parts over one `Table`: `tasks` (create, read, every lifecycle move),
`listing` (the sharded list and its cursor), `counters` (stream batches in, stats out),
`dead_letters`, `parts` (the parts of parallel tasks) and `connections` (the owners' open
WebSocket pages). Each returns domain models and turns a failed condition into a domain error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from taskqueue.models import utcnow
from taskqueue.store.connections import Connection, ConnectionStore
from taskqueue.store.counters import CounterStore, OwnerStats
from taskqueue.store.dead_letters import DeadLetter, DeadLetterStore, DeadMessage
from taskqueue.store.listing import ListPage, TaskListing
from taskqueue.store.parts import PartStore
from taskqueue.store.quotas import QuotaStore
from taskqueue.store.table import Table
from taskqueue.store.tasks import TaskStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Store:
    # Slots: setting an attribute the store does not have (`store.clock`; the clock is the
    # table's) fails instead of passing silently.
    __slots__ = (
        "connections",
        "counters",
        "dead_letters",
        "listing",
        "parts",
        "quotas",
        "table",
        "tasks",
    )

    def __init__(self, table: Table) -> None:
        self.table = table
        self.dead_letters = DeadLetterStore(table)
        self.tasks = TaskStore(table, self.dead_letters)
        self.listing = TaskListing(table, self.tasks)
        self.parts = PartStore(table, self.tasks)
        self.counters = CounterStore(table)
        self.connections = ConnectionStore(table)
        self.quotas = QuotaStore(table)

    @classmethod
    def of(
        cls,
        table_name: str,
        shard_count: int = 32,
        retention_days: int = 30,
        *,
        client: DynamoDBClient | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> Store:
        return cls(Table(table_name, shard_count, retention_days, client=client, clock=clock))


__all__ = [
    "Connection",
    "ConnectionStore",
    "CounterStore",
    "DeadLetter",
    "DeadLetterStore",
    "DeadMessage",
    "ListPage",
    "OwnerStats",
    "PartStore",
    "QuotaStore",
    "Store",
    "Table",
    "TaskListing",
    "TaskStore",
]
