"""Pure model behaviour: schedule validation, progress, durations and sortable time strings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from taskqueue.models import (
    ChunkState,
    SubmitTaskRequest,
    Task,
    TaskStatus,
    TaskView,
    format_time,
    parse_time,
    utcnow,
)

START = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)


def task(**changes: object) -> Task:
    values: dict[str, object] = {
        "task_id": "a" * 32,
        "owner": "alice",
        "task_type": "EMAIL",
        "params": {},
        "status": TaskStatus.PENDING,
        "created_at": START,
        "updated_at": START,
    }
    values.update(changes)
    return Task.model_validate(values)


def only_error(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, object]:
    errors = exc.value.errors(include_url=False)
    assert len(errors) == 1
    return dict(errors[0])


# ------------------------------------------------------------------ SubmitTaskRequest


def test_submit_request_accepts_run_at_with_a_time_zone() -> None:
    request = SubmitTaskRequest.model_validate(
        {"type": "EMAIL", "run_at": "2026-11-24T09:00:00+02:00"}
    )

    assert request.run_at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert request.delay_seconds is None


def test_submit_request_accepts_delay_seconds_alone() -> None:
    request = SubmitTaskRequest.model_validate({"type": "EMAIL", "delay_seconds": 60})

    assert request.delay_seconds == 60
    assert request.run_at is None


def test_submit_request_rejects_run_at_together_with_delay_seconds() -> None:
    with pytest.raises(ValidationError) as exc:
        SubmitTaskRequest.model_validate(
            {"type": "EMAIL", "run_at": "2026-11-24T09:00:00Z", "delay_seconds": 60}
        )

    assert only_error(exc)["msg"] == "Value error, give run_at or delay_seconds, not both"


def test_submit_request_rejects_run_at_without_a_time_zone() -> None:
    with pytest.raises(ValidationError) as exc:
        SubmitTaskRequest.model_validate({"type": "EMAIL", "run_at": "2026-11-24T09:00:00"})

    assert only_error(exc)["msg"] == (
        "Value error, run_at needs a time zone, e.g. 2026-11-24T09:00:00Z"
    )


@pytest.mark.parametrize("delay", [-1, 365 * 24 * 3600 + 1])
def test_submit_request_rejects_delay_outside_zero_to_a_year(delay: int) -> None:
    with pytest.raises(ValidationError) as exc:
        SubmitTaskRequest.model_validate({"type": "EMAIL", "delay_seconds": delay})

    assert only_error(exc)["loc"] == ("delay_seconds",)


def test_submit_request_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        SubmitTaskRequest.model_validate({"type": "EMAIL", "owner": "mallory"})

    error = only_error(exc)
    assert (error["loc"], error["type"]) == (("owner",), "extra_forbidden")


# ------------------------------------------------------------------ ChunkState.progress


def test_progress_is_the_floored_percentage_of_units_done() -> None:
    assert ChunkState(units_total=3, units_done=1).progress == 33


def test_progress_is_zero_when_there_are_no_units() -> None:
    assert ChunkState(units_total=0, units_done=0).progress == 0


def test_progress_stays_below_100_until_the_state_is_done() -> None:
    assert ChunkState(units_total=10, units_done=10).progress == 99
    assert ChunkState(units_total=10, units_done=12).progress == 99


def test_progress_is_100_once_done_whatever_the_units() -> None:
    assert ChunkState(units_total=10, units_done=3, done=True).progress == 100
    assert ChunkState(units_total=0, done=True).progress == 100


# ------------------------------------------------------------------ TaskView.of duration


def test_duration_of_a_finished_task_is_finish_minus_start() -> None:
    finished = task(
        status=TaskStatus.SUCCESS,
        started_at=START + timedelta(seconds=5),
        finished_at=START + timedelta(seconds=95, milliseconds=250),
    )

    assert TaskView.of(finished).duration_seconds == 90.25


def test_duration_of_a_task_never_started_is_none() -> None:
    assert TaskView.of(task()).duration_seconds is None


def test_duration_of_a_cancelled_task_never_started_is_none() -> None:
    cancelled = task(status=TaskStatus.CANCELLED, finished_at=START + timedelta(seconds=3))

    assert TaskView.of(cancelled).duration_seconds is None


def test_duration_of_a_running_task_counts_up_to_now() -> None:
    started = utcnow() - timedelta(seconds=30)
    running = task(status=TaskStatus.RUNNING, started_at=started)

    before = (utcnow() - started).total_seconds()
    duration = TaskView.of(running).duration_seconds
    after = (utcnow() - started).total_seconds()

    assert duration is not None
    assert before <= duration <= after


# ------------------------------------------------------------------ time formatting


def test_formatted_times_are_fixed_width_utc_with_microseconds() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))

    assert format_time(moment) == "2026-01-02T01:04:05.000000Z"


def test_formatted_times_sort_as_the_times_do() -> None:
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))]
    moments = [
        (START + timedelta(microseconds=rng.randrange(-(10**12), 10**12))).astimezone(
            rng.choice(zones)
        )
        for _ in range(500)
    ]
    moments += [START, START + timedelta(microseconds=1), START + timedelta(seconds=1)]

    by_text = sorted(moments, key=format_time)

    assert by_text == sorted(moments)
    assert len({len(format_time(m)) for m in moments}) == 1


def test_parse_time_reads_back_what_format_time_wrote() -> None:
    moment = datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)

    assert parse_time(format_time(moment)) == moment
