"""Dead letters: the owner's record of each task message that died in a DLQ."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskqueue.models import DeadLetter, Model, Task, format_time
from taskqueue.store.items import dead_letter_pk, deserialize, serialize
from taskqueue.store.table import Table

DEFAULT_LIMIT = 100


class DeadMessage(Model):
    """What the DLQ handler knows of a dead message."""

    message_id: str
    queue: str
    reason: str
    receive_count: int


class DeadLetterStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def put_request(self, task: Task, message: DeadMessage, now: datetime) -> dict[str, Any]:
        """The Put of a dead letter, for the transaction that fails its task."""
        item = {
            "pk": dead_letter_pk(task.owner),
            "sk": f"{format_time(now)}#{message.message_id}",
            "task_id": task.task_id,
            "task_type": task.task_type,
            "queue": message.queue,
            "reason": message.reason[:1000],
            "receive_count": message.receive_count,
            "dead_at": format_time(now),
            "expires_at": self.table.expiry(now),
        }
        return {"Put": {"TableName": self.table.name, "Item": serialize(item)}}

    def list(self, owner: str, limit: int = DEFAULT_LIMIT) -> list[DeadLetter]:
        """The owner's dead letters, newest first (expired ones hidden: TTL lags by hours)."""
        response = self.table.client.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": dead_letter_pk(owner)}},
            ScanIndexForward=False,
            Limit=limit,
        )
        now = int(self.table.now().timestamp())
        items = [deserialize(item) for item in response.get("Items", [])]
        return [_letter(item) for item in items if item.get("expires_at", now + 1) > now]

    def delete(self, owner: str, letter_id: str) -> None:
        self.table.client.delete_item(
            TableName=self.table.name,
            Key={"pk": {"S": dead_letter_pk(owner)}, "sk": {"S": letter_id}},
        )


def _letter(item: dict[str, Any]) -> DeadLetter:
    """A stored dead letter (`pk = DEAD#<owner>`, `sk = <time>#<message id>`, its id)."""
    return DeadLetter.model_validate({**item, "id": item["sk"]})
