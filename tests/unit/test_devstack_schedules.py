"""The local stack's schedule emulation: rate() expressions, the schedules read from the
template, the events a scheduled function receives, and the poller's period."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.harness import transformed_template
from devstack.resources import ScheduleEventSource, rate_seconds, schedules_of
from devstack.schedules import SchedulePoller, scheduled_event


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate( 10 minutes )", 600),
        ("rate(1 second)", None),  # not a unit EventBridge has
        ("cron(0 12 * * ? *)", None),
        ("at(2026-12-01T00:00:00)", None),
        ("", None),
    ],
)
def test_rate_expressions_in_seconds(expression: str, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds


def test_the_sweeper_is_the_templates_one_scheduled_function_every_minute() -> None:
    transformed = transformed_template()
    assert schedules_of(transformed, "SweeperFunction") == (
        ScheduleEventSource(name="SweeperFunctionEveryMinute", expression="rate(1 minute)"),
    )
    assert schedules_of(transformed, "WorkerFunction") == ()


def test_rules_and_scheduler_schedules_are_read_with_their_state_and_input() -> None:
    # Given a template with a disabled rule carrying an Input, a pattern rule and a ScheduleV2
    target = {"Arn": {"Fn::GetAtt": ["Fn", "Arn"]}}
    template = {
        "Resources": {
            "Rule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "ScheduleExpression": "rate(5 minutes)",
                    "State": "DISABLED",
                    "Targets": [{**target, "Id": "t", "Input": '{"a": 1}'}],
                },
            },
            "Pattern": {
                "Type": "AWS::Events::Rule",
                "Properties": {"EventPattern": {"source": ["x"]}, "Targets": [target]},
            },
            "V2": {
                "Type": "AWS::Scheduler::Schedule",
                "Properties": {"ScheduleExpression": "rate(2 hours)", "Target": target},
            },
        }
    }
    # When its schedules of Fn are read
    found = schedules_of(template, "Fn")
    # Then the schedule rule and the Scheduler schedule, not the pattern rule
    assert found == (
        ScheduleEventSource("Rule", "rate(5 minutes)", input='{"a": 1}', enabled=False),
        ScheduleEventSource("V2", "rate(2 hours)", scheduler=True),
    )
    assert [source.seconds for source in found] == [300, 7200]


def test_a_rule_target_gets_eventbridges_scheduled_event() -> None:
    now = datetime(2026, 11, 30, 20, 0, 5, tzinfo=UTC)
    event = scheduled_event(ScheduleEventSource("EveryMinute", "rate(1 minute)"), now)
    assert {k: v for k, v in event.items() if k != "id"} == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-30T20:00:05Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/EveryMinute"],
        "detail": {},
    }


def test_an_input_replaces_the_event_and_a_scheduler_target_without_one_gets_an_empty_one() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    with_input = ScheduleEventSource("R", "rate(1 minute)", input='{"a": 1}')
    assert scheduled_event(with_input, now) == {"a": 1}
    assert scheduled_event(ScheduleEventSource("S", "rate(1 day)", scheduler=True), now) == {}


class CountingFunction:
    """Stands in for a LocalFunction: records its invocations; the second one fails."""

    logical_id = "SweeperFunction"

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.lock = threading.Lock()

    def invoke(self, event: Any) -> Any:
        with self.lock:
            self.events.append(event)
            if len(self.events) == 2:
                raise RuntimeError("a failed sweep")
            return {"sent": 0}


def test_the_poller_invokes_each_period_goes_on_after_a_failure_and_stops() -> None:
    # Given a minute schedule run every 0.1 s
    function = CountingFunction()
    source = ScheduleEventSource("EveryMinute", "rate(1 minute)")
    poller = SchedulePoller(function, source, every=0.1)  # type: ignore[arg-type]
    assert poller.period == 0.1
    # When it runs for about half a second, then stops
    poller.start()
    time.sleep(0.55)
    poller.stop()
    stopped_at = len(function.events)
    time.sleep(0.3)
    # Then it invoked about five times (none at once: a period first), past the failed one
    assert 3 <= stopped_at <= 6
    assert poller.invocations == stopped_at - 1
    assert all(event["detail-type"] == "Scheduled Event" for event in function.events)
    # And nothing after its stop
    assert len(function.events) == stopped_at and poller.alive_threads == []


def test_a_cron_schedule_needs_a_period_to_be_emulated() -> None:
    cron = ScheduleEventSource("Nightly", "cron(0 3 * * ? *)")
    with pytest.raises(ValueError, match="is not a rate"):
        SchedulePoller(CountingFunction(), cron)  # type: ignore[arg-type]
    assert SchedulePoller(CountingFunction(), cron, every=2).period == 2  # type: ignore[arg-type]
