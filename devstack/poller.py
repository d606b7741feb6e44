"""The SQS event source mapping, locally: long-poll a queue, invoke a function with batches.

As on AWS: batches of up to ``BatchSize`` gathered for up to
``MaximumBatchingWindowInSeconds``; with ``ReportBatchItemFailures`` only the records not
reported as failed are deleted (the others reappear after the visibility timeout, and
SQS - moto here - moves them to the dead-letter queue after ``maxReceiveCount``); a handler
error leaves the whole batch on the queue. Several batches run at once (``workers``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devstack.runtime import LocalFunction, say

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# Long polls are short locally, so a stop request is honoured within this many seconds.
POLL_WAIT_SECONDS = 1
WINDOW_POLL_INTERVAL = 0.1

BatchReporter = Callable[[str, list[dict[str, Any]], set[str], float], None]


@dataclass(frozen=True)
class QueueSource:
    """One event source mapping: a queue feeding a function."""

    queue: str  # logical id
    url: str
    arn: str
    region: str
    batch_size: int
    window_seconds: int
    reports_batch_item_failures: bool
    maximum_concurrency: int | None = None  # the mapping's ScalingConfig


def sqs_record(message: MessageTypeDef, source: QueueSource) -> dict[str, Any]:
    """A received SQS message as Lambda hands it to a function."""
    body = message.get("Body", "")
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.arn,
        "awsRegion": source.region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: Any) -> dict[str, Any]:
    """SQS API attribute shape -> the camel-case shape of Lambda's SQS event."""
    converted: dict[str, Any] = {
        "stringListValues": value.get("StringListValues", []),
        "binaryListValues": [
            base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])
        ],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return converted


def failed_message_ids(response: Any, message_ids: list[str], reports: bool) -> set[str]:
    """Which records go back to the queue, by Lambda's rules for partial batch responses."""
    if not reports:
        return set()
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not failures:
        return set()
    failed = {item.get("itemIdentifier") for item in failures if isinstance(item, dict)}
    if len(failed) != len(failures) or not failed <= set(message_ids):
        # An unusable report (empty or unknown ids) fails the whole batch, as on AWS.
        return set(message_ids)
    return {str(item) for item in failed}


def delete_done(
    sqs: SQSClient, source: QueueSource, messages: list[MessageTypeDef], failed: set[str]
) -> None:
    """Delete a batch's messages except the failed ones, as the event source mapping does."""
    done = [
        {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
        for index, message in enumerate(messages)
        if message["MessageId"] not in failed
    ]
    if done:
        sqs.delete_message_batch(QueueUrl=source.url, Entries=done)  # type: ignore[arg-type]


class SqsPoller:
    """Receivers (one thread per queue) feeding worker threads.

    As on AWS, each event source mapping has its own concurrency: ``workers`` capped by its
    own ``MaximumConcurrency`` (the isolation queue's 5 does not cap the parts queue's 200),
    and a backlog on one queue never holds back another (the high-priority queue starts its
    tasks at once).
    """

    def __init__(
        self,
        function: LocalFunction,
        sources: list[QueueSource],
        sqs: SQSClient,
        workers: int,
        report: BatchReporter | None = None,
    ) -> None:
        self.function = function
        self.sources = sources
        self.sqs = sqs
        self.workers = max(1, workers)
        self.report = report
        self._stop = threading.Event()
        # A receiver takes a slot of its own mapping before it receives, so no batch waits
        # (invisible) in line, and one busy mapping never starves another.
        self._slots = {
            source.queue: threading.Semaphore(self.concurrency(source)) for source in sources
        }
        self._batches: queue.Queue[tuple[QueueSource, list[MessageTypeDef]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    def concurrency(self, source: QueueSource) -> int:
        """Batches of this mapping that run at once."""
        return min(self.workers, source.maximum_concurrency or self.workers)

    @property
    def worker_count(self) -> int:
        return sum(self.concurrency(source) for source in self.sources)

    def start(self) -> None:
        name = self.function.logical_id
        for index in range(self.worker_count):
            self._spawn(self._work, f"{name}-worker-{index + 1}")
        for source in self.sources:
            self._spawn(functools.partial(self._receive, source), f"{name}-{source.queue}")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        # Daemon threads: a handler stuck in a long call never keeps the process alive.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving, make running invocations wrap up, wait for them (bounded)."""
        self._stop.set()
        for _ in range(self.worker_count):
            self._batches.put(None)
        self.function.expire_invocations()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive_threads(self) -> list[str]:
        return [thread.name for thread in self._threads if thread.is_alive()]

    # --------------------------------------------------------------------- receiving

    def _receive(self, source: QueueSource) -> None:
        while not self._stop.is_set():
            slots = self._slots[source.queue]
            if not slots.acquire(timeout=POLL_WAIT_SECONDS):
                continue
            try:
                messages = self._gather(source)
            except Exception as exc:  # moto going away at shutdown, or a transient error
                slots.release()
                if not self._stop.is_set():
                    say(f"poller {source.queue}: receive failed: {exc}")
                    self._stop.wait(POLL_WAIT_SECONDS)
                continue
            if messages and not self._stop.is_set():
                self._batches.put((source, messages))
            else:
                slots.release()

    def _gather(self, source: QueueSource) -> list[MessageTypeDef]:
        """One batch: up to BatchSize messages, waiting up to the batching window for more."""
        messages = self._receive_some(source, source.batch_size, POLL_WAIT_SECONDS)
        if not messages:
            return []
        deadline = time.monotonic() + source.window_seconds
        while len(messages) < source.batch_size and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = self._receive_some(source, source.batch_size - len(messages), 0)
            messages.extend(more)
            if not more:
                self._stop.wait(min(WINDOW_POLL_INTERVAL, left))
        return messages

    def _receive_some(self, source: QueueSource, count: int, wait: int) -> list[MessageTypeDef]:
        response = self.sqs.receive_message(
            QueueUrl=source.url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    # --------------------------------------------------------------------- invoking

    def _work(self) -> None:
        while True:
            item = self._batches.get()
            if item is None:
                return
            source, messages = item
            try:
                if not self._stop.is_set():
                    self._invoke(source, messages)
            finally:
                self._slots[source.queue].release()

    def _invoke(self, source: QueueSource, messages: list[MessageTypeDef]) -> None:
        records = [sqs_record(message, source) for message in messages]
        ids = [record["messageId"] for record in records]
        started = time.monotonic()
        try:
            response = self.function.invoke({"Records": records})
        except Exception:
            # A function error: nothing is deleted, the whole batch comes back later.
            say(
                f"{self.function.logical_id} failed on a batch of {len(records)} from "
                f"{source.queue}; the messages return after the visibility timeout\n"
                + traceback.format_exc().rstrip()
            )
            return
        failed = failed_message_ids(response, ids, source.reports_batch_item_failures)
        try:
            delete_done(self.sqs, source, messages, failed)
        except Exception as exc:
            say(f"poller {source.queue}: delete failed: {exc}")
        if self.report is not None:
            self.report(source.queue, records, failed, time.monotonic() - started)
