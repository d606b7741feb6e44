"""The SQS event source mapping, locally: long-poll a queue, invoke a function with batches.

As on AWS: batches of up to ``BatchSize`` gathered for up to
``MaximumBatchingWindowInSeconds``; with ``ReportBatchItemFailures`` only the records not
reported as failed are deleted (the others reappear after the visibility timeout, and
SQS - moto here - moves them to the dead-letter queue after ``maxReceiveCount``); a handler
error leaves the whole batch on the queue. Several batches run at once (``workers``).

Fair queues, as SQS's documentation describes them ("How Amazon SQS fair queues work"): a
message's tenant is its ``MessageGroupId`` (a message without one is a tenant of its own). A
tenant is noisy when its share of the messages in flight is over 10 % with at least
``NOISY_IN_FLIGHT`` of its own in flight, or its share of the recent processing time is over
10 %. While one is, messages of quiet tenants are delivered first; among noisy tenants, the
one with the fewest messages in flight first; nothing is dropped. To choose like SQS, which
sees its whole backlog, the poller holds up to ``PREFETCH`` received messages back (invisible
for ``HOLD_SECONDS``) and gives each the queue's own visibility timeout when it delivers it.

Given a ``QueueWaiter`` (the stack's, moto being in its process), a receiver waits in-process
until its queue has a visible message and then receives without waiting; without one it
long-polls over the API.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import queue
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devstack.runtime import LocalFunction, say

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from devstack.wakeups import QueueWaiter

# Long polls are short locally, so a stop request is honoured within this many seconds.
POLL_WAIT_SECONDS = 1
WINDOW_POLL_INTERVAL = 0.1

BatchReporter = Callable[[str, list[dict[str, Any]], set[str], float], None]

# Fair queues: SQS's thresholds (its documentation), and how much of the backlog is seen.
NOISY_SHARE = 0.10
NOISY_IN_FLIGHT = 30
RECENT_SECONDS = 60.0  # the window of "recent" processing time
PREFETCH = 1000
HOLD_SECONDS = 12 * 3600


def tenant(message: MessageTypeDef) -> str:
    """A message's tenant: its group, or (without one) the message itself."""
    attributes = message.get("Attributes", {})
    return str(attributes.get("MessageGroupId") or f"message:{message['MessageId']}")


@dataclass
class FairQueue:
    """One queue's messages in flight and recent processing time, by tenant; picks batches."""

    clock: Callable[[], float] = time.monotonic
    in_flight: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[float, str, float]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def noisy(self) -> set[str]:
        """Tenants over either share (call with `lock` held)."""
        cutoff = self.clock() - RECENT_SECONDS
        while self.recent and self.recent[0][0] < cutoff:
            self.recent.popleft()
        busy: dict[str, float] = {}
        for _, name, seconds in self.recent:
            busy[name] = busy.get(name, 0.0) + seconds
        total_busy = sum(busy.values())
        total_flying = sum(self.in_flight.values())
        noisy = {
            name
            for name, flying in self.in_flight.items()
            if flying >= NOISY_IN_FLIGHT and flying > NOISY_SHARE * total_flying
        }
        if total_busy > 0:
            noisy |= {name for name, seconds in busy.items() if seconds > NOISY_SHARE * total_busy}
        return noisy

    def pick(self, backlog: list[MessageTypeDef], count: int) -> list[MessageTypeDef]:
        """Take up to `count` messages out of `backlog` (oldest first), quiet tenants' first
        while a tenant is noisy; they count as in flight until `done`."""
        chosen: list[MessageTypeDef] = []
        with self.lock:
            noisy = self.noisy()
            flying = Counter(self.in_flight)
            for _ in range(min(count, len(backlog))):
                if noisy:
                    # Quiet tenants first (in arrival order), then the noisy tenant with the
                    # fewest messages in flight.
                    def rank(index: int) -> tuple[bool, int, int]:
                        name = tenant(backlog[index])
                        is_noisy = name in noisy
                        return (is_noisy, flying[name] if is_noisy else 0, index)

                    best = min(range(len(backlog)), key=rank)
                else:
                    best = 0
                message = backlog.pop(best)
                flying[tenant(message)] += 1
                chosen.append(message)
            for message in chosen:
                self.in_flight[tenant(message)] += 1
        return chosen

    def done(self, messages: list[MessageTypeDef], seconds: float) -> None:
        """A batch came back from the function after `seconds`: shared among its tenants."""
        now = self.clock()
        with self.lock:
            for message in messages:
                name = tenant(message)
                self.in_flight[name] -= 1
                if self.in_flight[name] <= 0:
                    del self.in_flight[name]
                self.recent.append((now, name, seconds / max(1, len(messages))))


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
        waiter: QueueWaiter | None = None,
    ) -> None:
        self.function = function
        self.sources = sources
        self.sqs = sqs
        self.workers = max(1, workers)
        self.report = report
        self.waiter = waiter
        self._stop = threading.Event()
        # A receiver takes a slot of its own mapping before it receives, so no batch waits
        # (invisible) in line, and one busy mapping never starves another.
        self._slots = {
            source.queue: threading.Semaphore(self.concurrency(source)) for source in sources
        }
        self._batches: queue.Queue[tuple[QueueSource, list[MessageTypeDef]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        # Per queue: the received messages not yet delivered (only its receiver thread
        # touches them), the fair-queue bookkeeping, and the queue's visibility timeout.
        self._backlog: dict[str, list[MessageTypeDef]] = {s.queue: [] for s in sources}
        self._fair = {source.queue: FairQueue() for source in sources}
        self._visibility: dict[str, int] = {}

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
        for source in self.sources:
            if self.waiter is None:
                break
            try:
                self.waiter.wake(source.url)
            except Exception as exc:  # moto already gone
                say(f"poller {source.queue}: could not wake its receiver: {exc}")
        for _ in range(self.worker_count):
            self._batches.put(None)
        self.function.expire_invocations()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for source in self.sources:  # held back, never delivered: visible again at once
            held, self._backlog[source.queue] = self._backlog[source.queue], []
            try:
                self._set_visibility(source, held, 0)
            except Exception as exc:  # moto already gone
                say(f"poller {source.queue}: could not release held messages: {exc}")

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
        """One batch: up to BatchSize messages, waiting up to the batching window for more,
        chosen from the held-back backlog as a fair queue chooses."""
        backlog = self._backlog[source.queue]
        if backlog:
            self._prefetch(source, 0)
        elif self.waiter is None:
            self._prefetch(source, POLL_WAIT_SECONDS)
        elif self.waiter.wait(source.url, POLL_WAIT_SECONDS, self._stop):
            self._prefetch(source, 0)
        if not backlog:
            return []
        deadline = time.monotonic() + source.window_seconds
        while len(backlog) < source.batch_size and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._prefetch(source, 0):
                continue
            if self.waiter is None:
                self._stop.wait(min(WINDOW_POLL_INTERVAL, left))
            else:
                self.waiter.wait(source.url, left, self._stop)
        chosen = self._fair[source.queue].pick(backlog, source.batch_size)
        # Delivered now: the queue's own visibility timeout runs from here.
        self._set_visibility(source, chosen, self._visibility_timeout(source))
        return chosen

    def _prefetch(self, source: QueueSource, wait: int) -> int:
        """Receive into the backlog (up to PREFETCH) until the queue has no more visible."""
        backlog = self._backlog[source.queue]
        added = 0
        while len(backlog) < PREFETCH and not self._stop.is_set():
            response = self.sqs.receive_message(
                QueueUrl=source.url,
                MaxNumberOfMessages=min(10, PREFETCH - len(backlog)),
                WaitTimeSeconds=wait if not added else 0,
                VisibilityTimeout=HOLD_SECONDS,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = list(response.get("Messages", []))
            if not messages:
                break
            backlog.extend(messages)
            added += len(messages)
        return added

    def _visibility_timeout(self, source: QueueSource) -> int:
        if source.queue not in self._visibility:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=source.url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            self._visibility[source.queue] = int(attributes["VisibilityTimeout"])
        return self._visibility[source.queue]

    def _set_visibility(
        self, source: QueueSource, messages: list[MessageTypeDef], seconds: int
    ) -> None:
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages[start : start + 10])
            ]
            for entry in entries:
                entry["VisibilityTimeout"] = seconds  # type: ignore[assignment]
            self.sqs.change_message_visibility_batch(QueueUrl=source.url, Entries=entries)  # type: ignore[arg-type]

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
        started = time.monotonic()
        try:
            self._invoke_batch(source, messages, started)
        finally:
            self._fair[source.queue].done(messages, time.monotonic() - started)

    def _invoke_batch(
        self, source: QueueSource, messages: list[MessageTypeDef], started: float
    ) -> None:
        records = [sqs_record(message, source) for message in messages]
        ids = [record["messageId"] for record in records]
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
