"""SQS access: the only module that speaks SQS."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from taskqueue.aws import client as aws_client
from taskqueue.models import QueueDepth, TaskMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_DELAY_SECONDS = 900  # SQS's ceiling on DelaySeconds
MAX_GROUP_ID = 128
DEPTH_ATTRIBUTES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


def message_group(owner: str) -> str:
    """An owner as a message group id (SQS takes at most 128 characters)."""
    if len(owner) <= MAX_GROUP_ID:
        return owner
    return hashlib.sha256(owner.encode()).hexdigest()


def parse_message(body: Any) -> TaskMessage:
    """A task message's body (JSON text, or already parsed) as a TaskMessage; raises
    pydantic's ValidationError when it is not one."""
    return (
        TaskMessage.model_validate_json(body)
        if isinstance(body, str | bytes)
        else TaskMessage.model_validate(body)
    )


class Dispatcher:
    """Sends task messages to the queue of their priority and reads queue depths."""

    def __init__(
        self,
        queues: dict[str, str],
        dead_letter_queues: dict[str, str] | None = None,
        client: SQSClient | None = None,
    ) -> None:
        self.queues = queues
        self.dead_letter_queues = dead_letter_queues or {}
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = aws_client("sqs")
        return self._client

    @client.setter
    def client(self, client: SQSClient) -> None:
        self._client = client

    def queue_url(self, priority: str) -> str:
        return self.queues.get(priority) or self.queues["normal"]

    def send(
        self, message: TaskMessage | str, priority: str = "normal", delay_seconds: int = 0
    ) -> str:
        """Send a task message (or a bare task id); delays beyond SQS's 15 minutes are hopped
        by the worker."""
        if isinstance(message, str):
            message = TaskMessage(task_id=message)
        body = message.model_dump_json(exclude_defaults=True)
        delay = max(0, min(MAX_DELAY_SECONDS, int(delay_seconds)))
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url(priority),
            "MessageBody": body,
            "DelaySeconds": delay,
        }
        if message.owner:
            # The tenant of SQS fair queues: one owner's backlog does not hold up the others'
            # tasks (standard queues take a group id for that and stay unordered).
            request["MessageGroupId"] = message_group(message.owner)
        response = self.client.send_message(**request)
        return response["MessageId"]

    def depth(self, queue_url: str) -> dict[str, int]:
        response = self.client.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=list(DEPTH_ATTRIBUTES),  # type: ignore[arg-type]
        )
        attributes = {str(name): value for name, value in response.get("Attributes", {}).items()}
        return {label: int(attributes.get(name, 0)) for name, label in DEPTH_ATTRIBUTES.items()}

    def depths(self) -> dict[str, QueueDepth]:
        named = {(f"tasks-{name}", False): url for name, url in self.queues.items() if url}
        named.update({(f"dlq-{name}", True): url for name, url in self.dead_letter_queues.items()})
        return {
            name: QueueDepth(**self.depth(url), dead_letter=dead)
            for (name, dead), url in named.items()
        }
