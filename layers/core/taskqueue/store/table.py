"""The one DynamoDB table: its name, its client (made at first use), its clock and the few
requests every part of the store makes the same way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from taskqueue.aws import client as aws_client
from taskqueue.models import utcnow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Clock = Callable[[], datetime]


def is_condition_failure(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def first_write_refused(exc: ClientError) -> bool:
    """A transaction cancelled because its first write's condition failed."""
    reasons = exc.response.get("CancellationReasons", [])
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"


class Table:
    def __init__(
        self,
        name: str,
        shard_count: int = 32,
        retention_days: int = 30,
        client: DynamoDBClient | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.name = name
        self.shard_count = shard_count
        self.retention_days = retention_days
        self._client = client
        self.clock = clock

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_client("dynamodb")
        return self._client

    @client.setter
    def client(self, client: DynamoDBClient) -> None:
        self._client = client

    def now(self) -> datetime:
        return self.clock()

    def expiry(self, now: datetime) -> int:
        """The TTL of something finished `now`: the retention from then."""
        return int((now + timedelta(days=self.retention_days)).timestamp())

    def get_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.name, Key=key, ConsistentRead=True)
        return response.get("Item")

    def query_all(self, pk: str) -> list[dict[str, Any]]:
        """Every item of a partition (a small one: a counter partition)."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        while True:
            response = self.client.query(**request)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return items
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def transact_new(
        self, writes: list[dict[str, Any]], first_key: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A transaction whose first write creates an item that must not exist yet: None
        when it went through, else the existing item (nothing was written)."""
        try:
            self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
        except ClientError as exc:
            if not first_write_refused(exc):
                raise
            reasons = exc.response.get("CancellationReasons", [])
            return dict(reasons[0].get("Item") or self.get_item(first_key) or {})
        return None
