"""The local stack's pollers wait on moto's own signals instead of asking it over HTTP on a timer.

moto runs in the devstack's process. An SQS poller used to long-poll it over HTTP one second at
a time and a stream poller to read each stream every 0.25-1 s, every read three requests: on an
idle ``--workers 8`` stack that was 0.08 CPU-s a second, for nothing. Here a poller waits in
this process until there is something to read: a visible message in its queue (moto notifies
its queue's condition when a message is sent; a message whose delay or visibility timeout runs
out is seen at the next check, a second at most, as moto's own long poll sees it), or a new
record in a stream (``signal_stream_writes`` makes moto count them). The reads themselves still
go through the API, so every SQS and stream semantic is moto's.

Both reach into moto's internals (a queue's ``_messages_lock`` and ``messages``, a stream
shard's ``add``), for the moto of ``devstack.moto_patches.PATCHED_MOTO_VERSION``.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.models.table import StreamShard
from moto.sqs.models import sqs_backends

from devstack.moto_patches import Patch, may_apply

# The longest a waiting poller goes without looking at its stop flag (and, for a queue, at
# messages whose delay or visibility timeout ran out: no one notifies those).
CHECK_SECONDS = 1.0


class QueueWaiter:
    """Waits until a moto queue in this process has a visible message."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region

    def _queue(self, url: str) -> Any:
        return sqs_backends[self.account_id][self.region].get_queue(url.rstrip("/").split("/")[-1])

    def wait(self, url: str, seconds: float, stop: threading.Event) -> bool:
        """Block up to `seconds` until the queue at `url` has a visible message (True) or
        `stop` is set; costs no request while nothing is there."""
        queue = self._queue(url)
        condition: threading.Condition = queue._messages_lock
        left = seconds
        while True:
            step = min(left, CHECK_SECONDS)
            with condition:
                if condition.wait_for(lambda: bool(queue.messages) or stop.is_set(), step):
                    return not stop.is_set()
            left -= step
            if left <= 0:
                return False

    def wake(self, url: str) -> None:
        """Make the waits on the queue at `url` look at their stop flag now."""
        condition: threading.Condition = self._queue(url)._messages_lock
        with condition:
            condition.notify_all()


class WriteSignal:
    """A count of writes, and a wait for the next one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.count = 0

    def notify(self) -> None:
        with self._condition:
            self.count += 1
            self._condition.notify_all()

    def wake(self) -> None:
        """Make the waits look at their stop flag now."""
        with self._condition:
            self._condition.notify_all()

    def wait_past(self, seen: int, stop: threading.Event) -> None:
        """Block until a write after the one numbered `seen`, or until `stop` is set."""
        with self._condition:
            while self.count == seen and not stop.is_set():
                self._condition.wait(CHECK_SECONDS)


# Every stream record moto writes, in any table (the stack's streams are all on one table).
STREAM_WRITES = WriteSignal()


def signal_stream_writes(patch: Patch = setattr, moto_version: str | None = None) -> bool:
    """Count every record moto adds to a DynamoDB stream in STREAM_WRITES; False where it
    cannot (another moto: the stream pollers then read on a timer, as before)."""
    if not may_apply("signal_stream_writes", moto_version):
        return False
    add = StreamShard.add
    if getattr(add, "signals_writes", False):  # a second stack in this process
        return True

    def add_and_signal(self: StreamShard, old: Any, new: Any) -> None:
        add(self, old, new)
        STREAM_WRITES.notify()

    add_and_signal.signals_writes = True  # type: ignore[attr-defined]
    patch(StreamShard, "add", add_and_signal)
    return True
