"""DynamoDB access for the WebSocket connections: one item per open page, keyed by owner.

``pk = CONN#<owner>``, ``sk = <connection id>``: the push function finds all of an owner's
open pages with one Query, and never another owner's. API Gateway closes a WebSocket after
two hours at most, so each item expires then (TTL on ``expires_at``); ``$disconnect`` and a
``GoneException`` on a post remove it sooner. Expired items TTL has not deleted yet are
filtered out of every read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskqueue.errors import TooManyConnections
from taskqueue.models import format_time, parse_time
from taskqueue.store.items import CONNECTION_PREFIX, connection_key, connection_pk
from taskqueue.store.table import Table

# API Gateway's own limit on a WebSocket connection's duration.
CONNECTION_LIFETIME = timedelta(hours=2)
# Open pages one owner may have at once; more are refused at $connect (the page then polls).
MAX_CONNECTIONS_PER_OWNER = 20


@dataclass(frozen=True)
class Connection:
    owner: str
    connection_id: str
    connected_at: datetime
    expires_at: int  # epoch seconds (the table's TTL attribute)


def connection_to_item(connection: Connection) -> dict[str, Any]:
    return {
        **connection_key(connection.owner, connection.connection_id),
        "connected_at": {"S": format_time(connection.connected_at)},
        "expires_at": {"N": str(connection.expires_at)},
    }


def item_to_connection(item: dict[str, Any]) -> Connection:
    return Connection(
        owner=item["pk"]["S"].removeprefix(CONNECTION_PREFIX),
        connection_id=item["sk"]["S"],
        connected_at=parse_time(item["connected_at"]["S"]),
        expires_at=int(item["expires_at"]["N"]),
    )


class ConnectionStore:
    """The owners' open WebSocket connections in the tasks table."""

    def __init__(self, table: Table, max_per_owner: int = MAX_CONNECTIONS_PER_OWNER) -> None:
        self.table = table
        self.max_per_owner = max_per_owner

    def add(self, owner: str, connection_id: str) -> Connection:
        """Record a new connection of `owner`; TooManyConnections when the owner has the
        maximum open already. The count and the write are two requests: two pages opened
        in the same instant may pass the count together, so the bound can be exceeded by
        the few connects that race, never by more."""
        now = self.table.now()
        if len(self.of_owner(owner)) >= self.max_per_owner:
            raise TooManyConnections(
                f"{owner} has {self.max_per_owner} open connections, the most allowed"
            )
        connection = Connection(
            owner=owner,
            connection_id=connection_id,
            connected_at=now,
            expires_at=int((now + CONNECTION_LIFETIME).timestamp()),
        )
        self.table.client.put_item(TableName=self.table.name, Item=connection_to_item(connection))
        return connection

    def remove(self, owner: str, connection_id: str) -> None:
        """Forget a connection (idempotent: removing a removed one is no error)."""
        self.table.client.delete_item(
            TableName=self.table.name, Key=connection_key(owner, connection_id)
        )

    def of_owner(self, owner: str) -> list[Connection]:
        """The owner's live connections: one Query of the owner's partition (bounded: the
        partition holds at most a few more than `max_per_owner` items that have not
        expired, and expired ones are skipped by the filter)."""
        now = int(self.table.now().timestamp())
        connections: list[Connection] = []
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": {
                ":pk": {"S": connection_pk(owner)},
                ":now": {"N": str(now)},
            },
        }
        # Each page is at most 1 MB; an owner's connections fit in one page by far, so
        # the loop ends after one Query unless expired items pile up.
        while True:
            answer = self.table.client.query(**request)
            connections += [item_to_connection(item) for item in answer.get("Items", [])]
            last = answer.get("LastEvaluatedKey")
            if not last or len(connections) >= 2 * self.max_per_owner:
                return connections
            request["ExclusiveStartKey"] = last
