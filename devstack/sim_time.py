"""Simulated time for in-process runs: the engine, the stores, a paced task type and moto's
SQS (DelaySeconds, visibility) read one clock that moves only when told, so minutes of paced
work (EMAIL's timetable, its hand-overs through delayed messages) run in moments, every
request and invocation counted as it would be."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from devstack.harness import Pipeline
from taskqueue.models import utcnow


@dataclass
class SimulatedTime:
    """Real time plus an offset that only grows (sleeping moves it on, without waiting)."""

    offset: float = 0.0

    def now(self) -> datetime:
        return utcnow() + timedelta(seconds=self.offset)

    def seconds(self) -> float:
        """A monotonic reading, for pacers."""
        return time.monotonic() + self.offset

    def unix(self, moment: datetime | None = None) -> float:
        """Seconds since the epoch: now, or of `moment` (moto's `unix_time`)."""
        return moment.timestamp() if moment is not None else time.time() + self.offset

    def unix_millis(self, moment: datetime | None = None) -> float:
        return self.unix(moment) * 1000

    def advance(self, seconds: float) -> None:
        self.offset += max(0.0, seconds)

    sleep = advance


@contextmanager
def simulated_time(engine: Any, stores: list[Any]) -> Iterator[SimulatedTime]:
    """The engine's clock and sleep, the stores' clocks and moto's SQS on one simulated
    time for the duration; each restored after."""
    import moto.sqs.models as sqs_models

    sim = SimulatedTime()
    saved_sqs = sqs_models.unix_time, sqs_models.unix_time_millis
    saved_engine = engine.clock, engine.sleep
    saved_stores = [store.table.clock for store in stores]
    sqs_models.unix_time, sqs_models.unix_time_millis = sim.unix, sim.unix_millis  # type: ignore[assignment]
    engine.clock, engine.sleep = sim.now, sim.sleep
    for store in stores:
        store.table.clock = sim.now
    try:
        yield sim
    finally:
        sqs_models.unix_time, sqs_models.unix_time_millis = saved_sqs
        engine.clock, engine.sleep = saved_engine
        for store, clock in zip(stores, saved_stores, strict=True):
            store.table.clock = clock


def next_delivery(pipeline: Pipeline, sim: SimulatedTime) -> float | None:
    """Seconds until the first delayed message of the pipeline's queues is delivered (read
    from moto's queues: SQS says how many are delayed, not until when); None: none is."""
    from moto.sqs.models import sqs_backends

    now = sim.unix_millis()
    due = []
    for url in pipeline.queue_urls:
        region = urlparse(url).netloc.split(".")[1]
        account, name = urlparse(url).path.strip("/").split("/")
        queue = sqs_backends[account][region].queues[name]
        due += [message.delayed_until for message in queue._messages if message.delayed]
    return None if not due else max(0.0, (min(due) - now) / 1000)


def drain_in_time(
    pipeline: Pipeline,
    sim: SimulatedTime,
    max_seconds: float = 24 * 3600.0,
    max_invocations: int = 100_000,
) -> int:
    """Invoke until no message is left, delayed ones included: whenever only delayed
    messages are, time moves on to the first one's delivery. Returns the invocations."""
    invocations = 0
    started = sim.offset
    while True:
        invocations += pipeline.run(max_invocations=max_invocations)
        wait = next_delivery(pipeline, sim)
        if wait is None:
            return invocations
        if sim.offset - started > max_seconds:
            raise AssertionError(f"messages still delayed after {max_seconds:.0f} s")
        # A millisecond past it: moto delivers once its clock is beyond the delay.
        sim.advance(wait + 0.001)
