"""The local stack's pollers wake on moto's own signals: a sent message, a delay running out, a
stream record written, a stop; and wait without a request while nothing is there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from devstack.poller import QueueSource, SqsPoller
from devstack.resources import LocalResources
from devstack.wakeups import STREAM_WRITES, QueueWaiter, WriteSignal, signal_stream_writes

# Serial (tests/conftest.py): each asserts how soon a wait ended, in wall time.
pytestmark = pytest.mark.serial

# A wait that a notification ends is over in milliseconds; one that only the periodic check
# ends takes a second (wakeups.CHECK_SECONDS). Between the two:
PROMPT_SECONDS = 0.6


def later(seconds: float, action: Callable[[], Any]) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = action()
    return result, time.monotonic() - started


@pytest.fixture
def queue_url(aws: LocalResources) -> str:
    return aws.queues["TaskQueue"]


@pytest.fixture
def waiter(aws: LocalResources) -> QueueWaiter:
    return QueueWaiter(aws.account_id, aws.region)


def test_a_sent_message_wakes_the_waiting_receiver_at_once(
    queue_url: str, waiter: QueueWaiter
) -> None:
    # Given an empty queue and a message sent 0.1 s from now
    sqs = boto3.client("sqs")
    later(0.1, lambda: sqs.send_message(QueueUrl=queue_url, MessageBody="{}"))
    # When a receiver waits for up to 5 s
    found, seconds = timed(lambda: waiter.wait(queue_url, 5, threading.Event()))
    # Then it wakes with the message, not at the next periodic check
    assert found is True
    assert 0.1 <= seconds < PROMPT_SECONDS


def test_an_empty_queue_keeps_the_receiver_waiting_its_whole_time(
    queue_url: str, waiter: QueueWaiter
) -> None:
    # Given an empty queue
    # When a receiver waits for up to 1.5 s
    found, seconds = timed(lambda: waiter.wait(queue_url, 1.5, threading.Event()))
    # Then it comes back empty-handed after the whole time (across a periodic check)
    assert found is False
    assert 1.5 <= seconds < 2.0


def test_a_delayed_message_is_seen_once_its_delay_is_over(
    queue_url: str, waiter: QueueWaiter
) -> None:
    # Given a message sent with a delay of 1 s (nothing notifies when a delay runs out)
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}", DelaySeconds=1)
    # When a receiver waits for up to 5 s
    found, seconds = timed(lambda: waiter.wait(queue_url, 5, threading.Event()))
    # Then it sees the message at the first check after the delay, as moto's long poll would
    assert found is True
    assert 1.0 <= seconds < 2.2


def test_a_stop_ends_the_wait_at_once_when_woken(queue_url: str, waiter: QueueWaiter) -> None:
    # Given a receiver waiting on an empty queue
    stop = threading.Event()

    def stop_and_wake() -> None:
        stop.set()
        waiter.wake(queue_url)

    later(0.1, stop_and_wake)
    # When the stop is set and the queue's waiters woken
    found, seconds = timed(lambda: waiter.wait(queue_url, 5, stop))
    # Then the wait ends at once, without a message
    assert found is False
    assert seconds < PROMPT_SECONDS


@pytest.fixture
def stream_signal(monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteSignal]:
    assert signal_stream_writes(monkeypatch.setattr) is True
    yield STREAM_WRITES


def test_a_stream_record_wakes_the_wait_for_the_next_write(
    aws: LocalResources, stream_signal: WriteSignal
) -> None:
    # Given a wait for the write after the last one counted
    table = boto3.resource("dynamodb").Table(aws.tables["TasksTable"])
    seen = stream_signal.count
    later(0.1, lambda: table.put_item(Item={"pk": "TASK#wake", "sk": "META"}))
    # When an item is written (the tasks table has a stream)
    _, seconds = timed(lambda: stream_signal.wait_past(seen, threading.Event()))
    # Then the wait ends with it, one record counted
    assert stream_signal.count == seen + 1
    assert 0.1 <= seconds < PROMPT_SECONDS


def test_a_write_to_a_table_without_a_stream_counts_nothing(
    aws: LocalResources, stream_signal: WriteSignal
) -> None:
    # Given the count of stream records so far
    seen = stream_signal.count
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="no-stream",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # When an item is written to a table without a stream
    dynamodb.put_item(TableName="no-stream", Item={"pk": {"S": "x"}})
    # Then no stream record is counted
    assert stream_signal.count == seen


class RecordingFunction:
    """Stands in for a LocalFunction: records the events it is invoked with."""

    logical_id = "Recorder"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.invoked = threading.Event()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        self.invoked.set()
        return {"batchItemFailures": []}

    def expire_invocations(self) -> None:
        pass


def test_a_poller_with_a_waiter_delivers_a_message_as_soon_as_it_is_sent(
    aws: LocalResources, queue_url: str, waiter: QueueWaiter
) -> None:
    # Given a poller of the parts queue (one message a batch, no window) with a waiter, idle
    sqs = boto3.client("sqs")
    url = aws.queues["PartsQueue"]
    source = QueueSource("PartsQueue", url, aws.arns["PartsQueue"], aws.region, 1, 0, True)
    function = RecordingFunction()
    poller = SqsPoller(function, [source], sqs, workers=2, waiter=waiter)  # type: ignore[arg-type]
    poller.start()
    try:
        time.sleep(0.2)
        # When a message is sent
        sent = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody='{"task_id": "t.1"}')
        assert function.invoked.wait(5)
        seconds = time.monotonic() - sent
    finally:
        poller.stop()
    # Then the function had it at once, once, and it left the queue
    assert seconds < PROMPT_SECONDS
    assert [[r["body"] for r in event["Records"]] for event in function.events] == [
        ['{"task_id": "t.1"}']
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert poller.alive_threads == []
