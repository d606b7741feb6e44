"""The DynamoDB stream event source mapping, locally: read a table's stream, invoke a function.

As on AWS: records in stream order, in batches of up to ``BatchSize``, filtered by the
mapping's ``FilterCriteria``; a function error retries the same batch from the same record
(nothing moves on until it succeeds). The tests drive the same reader in-process.

Given a ``WriteSignal`` (the stack's: moto counts its stream records), a poller reads only
after a write; without one it reads on its timer.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from devstack.runtime import EventSourceThread, LocalFunction, say

if TYPE_CHECKING:
    from devstack.wakeups import WriteSignal

# Locally the batching window is at most this long, so the dashboard's counts follow quickly.
LOCAL_WINDOW_SECONDS = 1.0
# Lambda reads each shard of a stream four times a second: a mapping without a batching
# window (the push function's) polls that often, not in a busy loop.
MIN_POLL_SECONDS = 0.25


def matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    """Lambda event filtering for the patterns the template uses: nested keys, lists of
    exact values (any may match)."""
    for key, expected in pattern.items():
        value = record.get(key) if isinstance(record, dict) else None
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not matches(expected, value):
                return False
        elif isinstance(expected, list):
            if value not in expected:
                return False
        elif value != expected:
            return False
    return True


def lambda_record(raw: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda hands it to a function (epoch seconds, the stream ARN)."""
    data = dict(raw["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": raw["eventID"],
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": raw.get("awsRegion", "us-east-1"),
        "dynamodb": data,
        "eventSourceARN": stream_arn,
    }


@dataclass
class StreamReader:
    """Reads a table's stream from its start, shard by shard, remembering its position."""

    streams: Any  # a dynamodbstreams client
    stream_arn: str
    filters: tuple[dict[str, Any], ...] = ()
    _after: dict[str, str] = field(default_factory=dict)  # shard -> last sequence read
    _pending: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def for_table(
        cls, dynamodb: Any, streams: Any, table: str, filters: tuple[dict[str, Any], ...] = ()
    ) -> StreamReader:
        arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        return cls(streams, arn, filters)

    def skip_to_latest(self) -> int:
        """StartingPosition LATEST: read past every record already in the stream (a LATEST
        iterator per poll would lose the records written between two polls); returns how
        many were skipped."""
        skipped = 0
        while fetched := self._fetch(1000):
            skipped += len(fetched)
        return skipped

    def read(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` new records (Lambda's shape) that pass the filters, oldest first."""
        while len(self._pending) < limit:
            fetched = self._fetch(limit)
            if not fetched:
                break
            self._pending += [
                record
                for record in (lambda_record(raw, self.stream_arn) for raw in fetched)
                if not self.filters or any(matches(p, record) for p in self.filters)
            ]
        batch, self._pending = self._pending[:limit], self._pending[limit:]
        return batch

    def _fetch(self, limit: int) -> list[dict[str, Any]]:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in shards.get("Shards", []):
            shard_id = shard["ShardId"]
            position: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
            if shard_id in self._after:
                position = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": self._after[shard_id],
                }
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, **position
            )["ShardIterator"]
            records = self.streams.get_records(ShardIterator=iterator, Limit=min(limit, 1000))
            fetched = records.get("Records", [])
            if fetched:
                self._after[shard_id] = fetched[-1]["dynamodb"]["SequenceNumber"]
                return list(fetched)
        return []


class StreamPoller(EventSourceThread):
    """One thread per stream mapping: read a batch, invoke, retry the batch until it succeeds."""

    def __init__(
        self,
        function: LocalFunction,
        reader: StreamReader,
        batch_size: int,
        window_seconds: float,
        report: Callable[[str, int, float], None] | None = None,
        writes: WriteSignal | None = None,
    ) -> None:
        self.function = function
        self.reader = reader
        self.batch_size = batch_size
        self.window_seconds = max(MIN_POLL_SECONDS, min(window_seconds, LOCAL_WINDOW_SECONDS))
        self.report = report
        self.writes = writes
        super().__init__(f"{function.logical_id}-stream")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.writes is not None:
            self.writes.wake()
        super().stop(timeout)

    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
        # The window still passes between two reads: Lambda's pace (four reads a second, or
        # the batching window), whether records come one by one or in a burst.
        while not self._stop.wait(self.window_seconds):
            try:
                if not batch:
                    # Counted before the read: a write during it wakes the next wait.
                    seen = self.writes.count if self.writes is not None else 0
                    batch = self.reader.read(self.batch_size)
                    if not batch and self.writes is not None:
                        self.writes.wait_past(seen, self._stop)
                if not batch:
                    continue
                started = time.monotonic()
                self.function.invoke({"Records": batch})
            except Exception:
                if not self._stop.is_set():
                    say(
                        f"{self.function.logical_id} failed on a stream batch of {len(batch)}; "
                        "retrying it\n" + traceback.format_exc().rstrip()
                    )
                continue
            if self.report is not None:
                self.report(self.function.logical_id, len(batch), time.monotonic() - started)
            batch = []
