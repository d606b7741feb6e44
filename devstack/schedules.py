"""EventBridge schedules, locally: invoke a function at its template's ``rate(...)``.

As on AWS: the first invocation comes one period after the schedule is created, then one
each period; a rule's target gets EventBridge's "Scheduled Event" (or the target's
``Input``), a Scheduler schedule's target its ``Input`` (``{}`` without one). A failed
invocation is reported and the schedule goes on. ``cron(...)`` expressions are not emulated
(said at start-up). ``every`` overrides the period for every schedule (the tests run the
sweeper every second instead of every minute).
"""

from __future__ import annotations

import json
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from devstack.resources import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, ScheduleEventSource
from devstack.runtime import EventSourceThread, LocalFunction, say


def scheduled_event(
    source: ScheduleEventSource,
    now: datetime,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT_ID,
) -> Any:
    """What the function receives from the schedule at `now`."""
    if source.input is not None:
        return json.loads(source.input)
    if source.scheduler:
        return {}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{source.name}"],
        "detail": {},
    }


class SchedulePoller(EventSourceThread):
    """One thread per schedule: wait a period, invoke, repeat until stopped."""

    def __init__(
        self, function: LocalFunction, source: ScheduleEventSource, every: float | None = None
    ) -> None:
        period = every or source.seconds
        if not period:
            raise ValueError(f"{source.name}: {source.expression} is not a rate() schedule")
        self.function = function
        self.source = source
        self.period = float(period)
        self.invocations = 0
        self._last: Any = None
        super().__init__(f"{function.logical_id}-{source.name}")

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            event = scheduled_event(self.source, datetime.now(UTC))
            try:
                answer = self.function.invoke(event)
            except Exception:
                if not self._stop.is_set():
                    say(
                        f"{self.function.logical_id} failed on its schedule {self.source.name}\n"
                        + traceback.format_exc().rstrip()
                    )
                continue
            self.invocations += 1
            if answer != self._last:
                # A changed answer only: a schedule every second would fill the terminal.
                say(f"{self.source.name:<28} {self.function.logical_id} answered {answer}")
                self._last = answer
