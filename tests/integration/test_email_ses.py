"""EMAIL against SES v2: moto (with SendBulkEmail and GetAccount added, see
devstack/moto_sesv2.py) for what it models, botocore's Stubber for what it cannot show
(throttling, per-destination transient failures)."""

# The moto fixture `aws` is shared with test_task_types_s3 by import; its parameters are it.
# ruff: noqa: F811

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from taskqueue.errors import TransientError
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import Plan, TaskContext
from taskqueue.task_types.email import Email, EmailParams, SesPacer
from tests.integration.test_task_types_s3 import (  # noqa: F401 - aws: the fixture
    BUCKET,
    OWNER,
    STATE_LIMIT,
    Aws,
    aws,
    drive,
    read_json,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Moment:
    """A clock for resume_at (datetime) and the pacer (seconds), moved by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return (self.now - NOW).total_seconds()


def email(clock: Moment | None = None, account_rate: float | None = math.inf) -> Email:
    """An EMAIL type whose account rate does not get in the way, unless asked to."""
    clock = clock or Moment()
    return Email(
        sleep=lambda _: None,
        clock=clock,
        pacer=SesPacer(clock=clock.seconds, account_rate=account_rate),
    )


class Counting:
    """The real (moto) client, counting the calls made through it."""

    def __init__(self, real: Any, bad: frozenset[str] = frozenset()) -> None:
        self.real = real
        self.bad = bad
        self.calls: list[tuple[str, int]] = []

    def get_account(self) -> Any:
        self.calls.append(("GetAccount", 0))
        return self.real.get_account()

    def send_bulk_email(self, **request: Any) -> Any:
        """Addresses in `bad` come back MESSAGE_REJECTED, as SES answers for a bounce."""
        entries = request["BulkEmailEntries"]
        self.calls.append(("SendBulkEmail", len(entries)))
        good = [e for e in entries if e["Destination"]["ToAddresses"][0] not in self.bad]
        answers = iter(
            self.real.send_bulk_email(**{**request, "BulkEmailEntries": good})[
                "BulkEmailEntryResults"
            ]
            if good
            else []
        )
        return {
            "BulkEmailEntryResults": [
                {"Status": "MESSAGE_REJECTED", "Error": f"{address} bounced"}
                if (address := e["Destination"]["ToAddresses"][0]) in self.bad
                else next(answers)
                for e in entries
            ]
        }


def sent_messages() -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def read_csv(aws: Aws, key: str) -> list[dict[str, str]]:
    body = aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return list(csv.DictReader(io.StringIO(body)))


# ---------------------------------------------------------------- moto


def test_recipients_go_fifty_to_a_call_rendered_byte_for_byte(aws: Aws) -> None:
    # Given 120 recipients, one with fields that look like markup and SES template syntax
    recipients = [f"r{n}@example.com" for n in range(120)]
    tricky = {"name": "Zoë <b>&amp;</b> \"{{body}}\" 'x'", "plan": "{{subject}} ✓\r\nBcc: x"}
    params = EmailParams(
        recipients=recipients,
        subject="Hello {name}! {index:04d}",
        body="Dear {name},\n plan {plan:>12} {{literal}}\n",
        fields={"r7@example.com": tricky},
    )
    ses = Counting(aws.sesv2)

    # When the task runs, each chunk also repeated as after a crash
    result, states = drive(email(), params, aws.ctx(sesv2=ses))

    # Then 3 calls of at most 50 sent every message exactly once
    assert ses.calls == [
        ("SendBulkEmail", 50),
        ("SendBulkEmail", 50),
        ("SendBulkEmail", 20),
    ]
    assert len(states) - 1 == 3
    messages = sent_messages()
    assert [m.destinations["ToAddresses"] for m in messages] == [[r] for r in recipients]
    # ... each exactly as our own rendering says: SES substitutes and escapes nothing
    assert (messages[7].subject, messages[7].body) == params.message(7)
    assert messages[7].subject == "Hello " + tricky["name"] + "! 0008"
    assert (
        messages[7].body == "Dear " + tricky["name"] + ",\n plan " + tricky["plan"] + " {literal}\n"
    )
    assert (messages[0].subject, messages[0].body) == (
        "Hello r0! 0001",
        "Dear r0,\n plan              {literal}\n",
    )
    assert (result.total_items, result.failed_items) == (120, 0)
    assert result.summary["sent"] == 120


def test_a_bounced_recipient_is_recorded_the_rest_sent_and_all_downloadable(aws: Aws) -> None:
    # Given 7 recipients of whom one bounces, 3 per chunk
    recipients = [f"r{n}@example.com" for n in range(7)]
    params = EmailParams(
        recipients=recipients,
        subject="Hello {name}",
        body="You are number {index}.",
        batch_size=3,
    )
    ses = Counting(aws.sesv2, bad=frozenset({"r4@example.com"}))

    # When the task runs
    result, states = drive(email(), params, aws.ctx(sesv2=ses))

    # Then the summary stays small and counts the failure; the task is a partial success
    assert len(states) - 1 == 3
    assert (result.total_items, result.failed_items) == (7, 1)
    assert result.summary == {
        "recipients": 7,
        "sent": 6,
        "failed": 1,
        "failure_codes": {"MESSAGE_REJECTED": 1},
        "failures": [
            {
                "index": 5,
                "email": "r4@example.com",
                "code": "MESSAGE_REJECTED",
                "message": "r4@example.com bounced",
            }
        ],
        "failures_truncated": False,
        "recipients_csv": f"results/{OWNER}/task1/recipients.csv",
    }
    assert read_json(aws, result.location or "") == result.summary
    # ... and every recipient's outcome is in the CSV offered for download
    assert result.outputs == [f"results/{OWNER}/task1/recipients.csv"]
    rows = read_csv(aws, result.outputs[0])
    ids = [m.id for m in sent_messages()]
    assert [(r["index"], r["email"], r["status"]) for r in rows] == [
        (str(n + 1), f"r{n}@example.com", "failed" if n == 4 else "sent") for n in range(7)
    ]
    assert [r["message_id"] for r in rows if r["status"] == "sent"] == ids
    assert rows[4] | {"message_id": ""} == {
        "index": "5",
        "email": "r4@example.com",
        "status": "failed",
        "message_id": "",
        "code": "MESSAGE_REJECTED",
        "reason": "r4@example.com bounced",
    }


def test_an_unverified_sender_fails_every_recipient_so_the_task_fails(aws: Aws) -> None:
    params = EmailParams(recipient_count=5, subject="s", body="b", batch_size=2)
    ctx = aws.ctx()
    ctx.email_sender = "unverified@elsewhere.test"

    result, _ = drive(email(), params, ctx)

    assert (result.summary["sent"], result.summary["failed"]) == (0, 5)
    assert result.summary["failure_codes"] == {"MESSAGE_REJECTED": 5}
    # All failed: the engine makes this FAILED (all_items_failed), with the result kept.
    assert (result.total_items, result.failed_items) == (5, 5)


def test_state_and_summary_stay_small_when_thousands_fail(aws: Aws) -> None:
    params = EmailParams(recipient_count=2000, subject="s" * 200, body="b")
    everyone = frozenset(f"success+{n}@simulator.amazonses.com" for n in range(1, 2001))

    result, states = drive(email(), params, aws.ctx(sesv2=Counting(aws.sesv2, everyone)), False)

    assert result.summary["failed"] == 2000
    assert len(result.summary["failures"]) == 20
    assert result.summary["failures_truncated"] is True
    assert max(len(s.model_dump_json()) for s in states) < STATE_LIMIT
    assert len(json.dumps(result.summary)) < 4096
    assert len(read_csv(aws, result.outputs[0])) == 2000


@pytest.mark.parametrize("n", [1, 49, 50, 51, 1000])
def test_requests_to_ses_are_at_most_bulk_calls_plus_one_quota_read(aws: Aws, n: int) -> None:
    # Given moto's account quota, read once, and a process that never runs out of its share
    params = EmailParams(recipient_count=n, subject="s", body="b")
    ses = Counting(aws.sesv2)
    an_hour_later = itertools.count(0, 3600).__next__
    task = Email(sleep=lambda _: None, pacer=SesPacer(clock=an_hour_later))

    _, states = drive(task, params, aws.ctx(sesv2=ses), repeat=False)

    chunks = len(states) - 1
    assert len(ses.calls) == math.ceil(n / 50) + 1 <= math.ceil(n / 50) + chunks


def test_chunks_hand_over_until_their_sends_fit_the_task_rate(aws: Aws) -> None:
    # Given a task allowed 10 emails a second
    clock = Moment()
    params = EmailParams(recipient_count=120, subject="s", body="b", rate_per_second=10)
    task = email(clock)
    ctx = aws.ctx()

    # When its chunks run
    first = task.run_chunk(params, task.start(params, ctx), ctx)
    second = task.run_chunk(params, first, ctx)
    last = task.run_chunk(params, second, ctx)

    # Then each says when the next may start (no sleeping) and the last needs no wait
    assert first.resume_at == NOW + timedelta(seconds=5)
    assert second.resume_at == NOW + timedelta(seconds=5)
    assert last.done and last.resume_at is None


def test_a_process_out_of_its_share_hands_the_task_back_without_sending(aws: Aws) -> None:
    # Given moto's account rate (1 a second) shared by 2 worker processes
    clock = Moment()
    task = email(clock, account_rate=None)
    ses = Counting(aws.sesv2)
    ctx = aws.ctx(sesv2=ses)
    ctx.email_max_concurrency = 2
    params = EmailParams(recipient_count=10, subject="s", body="b", batch_size=5)
    state = task.start(params, ctx)

    # When a chunk of 5 is sent, and the next one asked for at once and 10 s later
    state = task.run_chunk(params, state, ctx)
    refused = task.run_chunk(params, state, ctx)
    clock.now += timedelta(seconds=10)
    done = task.run_chunk(params, refused, ctx)

    # Then the second sends nothing and comes back when the account could have sent 5
    # (another process may be free by then); 10 s on, this process has its share again
    assert refused.cursor == 5 and refused.resume_at == NOW + timedelta(seconds=5)
    assert done.done
    assert ses.calls == [("GetAccount", 0), ("SendBulkEmail", 5), ("SendBulkEmail", 5)]


# ---------------------------------------------------------------- in parallel groups


class Timed(Counting):
    """Counting, with each send's moment and the part (task id) that made it."""

    def __init__(self, real: Any, clock: Moment, bad: frozenset[str] = frozenset()) -> None:
        super().__init__(real, bad)
        self.clock = clock
        self.sends: list[tuple[float, int]] = []

    def send_bulk_email(self, **request: Any) -> Any:
        self.sends.append((self.clock.seconds(), len(request["BulkEmailEntries"])))
        return super().send_bulk_email(**request)


def run_in_parts(
    task: Email, params: EmailParams, clock: Moment, aws: Aws, ses: Any, task_id: str
) -> tuple[TaskResult, list[int]]:
    """Plan a task's parts and run them all at once, as the parts' queue would: always the
    part due first, each chunk delivered twice from its checkpoint (a duplicate, or a
    worker dead before its checkpoint); then merge. Returns the result and which part made
    each send."""
    parent = aws.ctx(task_id, sesv2=ses)
    plan = task.plan(params, task.start(params, parent), parent)
    assert plan is not None
    states = dict(enumerate(plan.parts))
    results: dict[int, dict[str, Any]] = {}
    senders: list[int] = []
    while states:
        index, state = min(states.items(), key=lambda item: (item[1].resume_at or NOW, item[0]))
        clock.now = max(clock.now, state.resume_at or NOW)
        ctx = aws.ctx(f"{task_id}.{index}", sesv2=ses)
        stored = ChunkState.model_validate_json(state.model_dump_json())
        calls = len(ses.calls)
        state = task.run_chunk(params, stored, ctx)
        senders += [index] * (len(ses.calls) - calls)
        again = task.run_chunk(params, stored, ctx)
        assert again.model_dump(exclude={"resume_at"}) == state.model_dump(exclude={"resume_at"})
        assert len(state.model_dump_json()) < STATE_LIMIT
        if state.done:
            results[index] = task.finish_part(params, state, ctx).summary
            del states[index]
        else:
            states[index] = state
    merged = task.merge(params, plan.parts[0], [results[i] for i in sorted(results)], parent)
    return merged, senders


def test_recipients_in_groups_give_the_whole_runs_result_and_csv_each_sent_once(
    aws: Aws,
) -> None:
    # Given 260 recipients, every 7th of whom bounces (more failures than the summary keeps)
    recipients = [f"r{n}@example.com" for n in range(260)]
    bad = frozenset(recipients[::7])
    params = EmailParams(recipients=recipients, subject="Hi {name}", body="n {index}")
    whole_ses, split_ses = Counting(aws.sesv2, bad), Counting(aws.sesv2, bad)
    # When the task runs whole, and split 3 ways (each chunk of each part delivered twice)
    whole, _ = drive(email(), params, aws.ctx("whole", sesv2=whole_ses))
    split_params = params.model_copy(update={"max_parallel": 3})
    clock = Moment()
    split, senders = run_in_parts(email(clock), split_params, clock, aws, split_ses, "split")
    # Then it was sent in 3 groups of whole batches, 0-99, 100-199, 200-259, every recipient
    # once (no repeated chunk sent again)
    assert senders == [0, 1, 2, 0, 1, 2]
    assert [n for call, n in split_ses.calls if call == "SendBulkEmail"] == [50] * 5 + [10]
    # and the result is the whole run's: counts, the first 20 failures in recipient order,
    # codes, and the downloadable CSV row for row (SES's message ids aside)
    assert split.summary == {
        **whole.summary,
        "recipients_csv": "results/alice/split/recipients.csv",
    }
    assert split.summary["failed"] == len(bad) == 38 and len(split.summary["failures"]) == 20
    assert (split.total_items, split.failed_items) == (whole.total_items, whole.failed_items)

    def rows(result: TaskResult) -> list[dict[str, str]]:
        return [
            row | {"message_id": bool(row["message_id"])}
            for row in read_csv(aws, result.outputs[0])
        ]

    assert rows(split) == rows(whole)
    assert [row["email"] for row in read_csv(aws, split.outputs[0])] == recipients


def test_parts_keep_to_the_task_rate_together(aws: Aws) -> None:
    # Given 1000 recipients at 20 a second, in batches of 50, split 4 ways
    clock = Moment()
    ses = Timed(aws.sesv2, clock)
    params = EmailParams(
        recipient_count=1000, subject="s", body="b", rate_per_second=20, max_parallel=4
    )
    ctx_rate = aws.ctx("split")
    assert ctx_rate.email_rate_per_second == 10  # the service's ceiling is lower: 10 a second
    # When the parts run at once, each as soon as it may
    run_in_parts(email(clock), params, clock, aws, ses, "split")
    # Then the task as a whole kept to 10 a second: in any stretch of time, no more than
    # that plus one batch was sent; and it took as long as the whole run takes (a batch every
    # 5 s), not longer
    sends = ses.sends
    assert sum(n for _, n in sends) == 1000
    for i, (start, _) in enumerate(sends):
        for j in range(i, len(sends)):
            sent = sum(n for _, n in sends[i : j + 1])
            assert sent <= 10 * (sends[j][0] - start) + 50
    assert sends[-1][0] == (1000 // 50 - 1) * 5


def four_ways(task: Email, ctx: TaskContext) -> tuple[EmailParams, Plan]:
    """800 recipients at the default 10 a second, in batches of 50, planned in 4 parts."""
    params = EmailParams(recipient_count=800, subject="s", body="b", max_parallel=4)
    plan = task.plan(params, task.start(params, ctx), ctx)
    assert plan is not None
    return params, plan


def test_each_lane_is_held_back_to_its_first_slot_and_sends_when_it_comes(aws: Aws) -> None:
    # Given 800 recipients at 10 a second in batches of 50 (a batch every 5 s), split 4 ways
    clock = Moment()
    task = email(clock)
    # When it is planned
    params, plan = four_ways(task, aws.ctx("slots"))
    # Then each lane's first part waits for its first slot in the task's timetable
    assert plan.start_after == (0.0, 5.0, 10.0, 15.0)
    # and, run a second before that slot, it would have to wait for it (a hand-over)
    part = plan.parts[3]
    clock.now += timedelta(seconds=plan.delay_of(3) - 1)
    early = task.run_chunk(params, part, aws.ctx("slots.3"))
    assert (early.cursor, early.resume_at) == (part.cursor, clock.now + timedelta(seconds=1))
    # while run when it comes, it sends its first batch at once
    clock.now += timedelta(seconds=1)
    first = task.run_chunk(params, part, aws.ctx("slots.3"))
    assert first.cursor == part.cursor + 50


def test_a_part_run_late_keeps_to_its_share_of_the_rate(aws: Aws) -> None:
    # Given a part of a task split 4 ways (10 a second) whose timetable is long past (its
    # retry after a failure)
    clock = Moment()
    task = email(clock)
    params, plan = four_ways(task, aws.ctx("late"))
    clock.now += timedelta(hours=1)
    # When its chunks run
    first = task.run_chunk(params, plan.parts[2], aws.ctx("late.2"))
    # Then it sends at once, and waits for a quarter of the rate after: 50 at 2.5 a second
    assert first.cursor == plan.parts[2].cursor + 50
    assert first.resume_at == clock.now + timedelta(seconds=20)


# ---------------------------------------------------------------- Stubber


def _entry(address: str) -> dict[str, Any]:
    return {
        "Destination": {"ToAddresses": [address]},
        "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": ANY}},
    }


def _expect(stub: Stubber, addresses: list[str], results: list[dict[str, Any]]) -> None:
    stub.add_response(
        "send_bulk_email",
        {"BulkEmailEntryResults": results},
        {
            "FromEmailAddress": ANY,
            "DefaultContent": ANY,
            "BulkEmailEntries": [_entry(a) for a in addresses],
        },
    )


def _throttle(stub: Stubber, code: str = "TooManyRequestsException", status: int = 429) -> None:
    stub.add_client_error("send_bulk_email", code, "slow down", http_status_code=status)


@pytest.fixture
def stubbed(aws: Aws) -> Iterator[tuple[Stubber, Any]]:
    import boto3

    client = boto3.client("sesv2", region_name="us-east-1")
    with Stubber(client) as stub:
        yield stub, aws.ctx(sesv2=client)
        stub.assert_no_pending_responses()


OK = {"Status": "SUCCESS", "MessageId": "m"}
ADDRESSES = [f"success+{n}@simulator.amazonses.com" for n in range(1, 4)]


def test_throttled_destinations_are_resent_in_the_chunk_and_never_recorded_failed(
    stubbed: tuple[Stubber, Any],
) -> None:
    # Given SES throttling one destination, then the whole call once, then accepting it
    stub, ctx = stubbed
    _expect(stub, ADDRESSES, [OK, {"Status": "ACCOUNT_THROTTLED", "Error": "rate"}, OK])
    _throttle(stub)
    _expect(stub, ADDRESSES[1:2], [OK])
    sleeps: list[float] = []
    task = Email(sleep=sleeps.append, pacer=SesPacer(account_rate=math.inf))
    params = EmailParams(recipient_count=3, subject="s", body="b")

    # When the chunk runs
    state = task.run_chunk(params, task.start(params, ctx), ctx)

    # Then all three are sent, after less than a second of waiting in the invocation
    assert (state.data["sent"], state.data["failed"]) == (3, 0)
    assert sleeps == [0.1, 0.3] and sum(sleeps) < 1


def test_throttling_past_the_chunks_retries_goes_to_the_engine_and_resends_only_the_rest(
    stubbed: tuple[Stubber, Any],
) -> None:
    # Given SES accepting one destination, then throttling the other two three times
    stub, ctx = stubbed
    _expect(stub, ADDRESSES, [OK, {"Status": "TRANSIENT_FAILURE"}, {"Status": "FAILED"}])
    for _ in range(2):
        _throttle(stub, "InternalFailure", 500)
    task = Email(sleep=lambda _: None, pacer=SesPacer(account_rate=math.inf))
    params = EmailParams(recipient_count=3, subject="s", body="b")
    start = task.start(params, ctx)

    # When the chunk runs, it raises for the engine's retry with backoff
    with pytest.raises(TransientError, match="2 of 3"):
        task.run_chunk(params, start, ctx)

    # Then the retried chunk (from the same checkpoint) sends only the two not yet sent
    _expect(stub, ADDRESSES[1:], [OK, {"Status": "MESSAGE_REJECTED", "Error": "no such user"}])
    state = task.run_chunk(params, ChunkState.model_validate_json(start.model_dump_json()), ctx)
    assert (state.data["sent"], state.data["failed"]) == (2, 1)
    assert state.data["failure_codes"] == {"MESSAGE_REJECTED": 1}


def test_throttling_past_the_chunks_retries_reschedules_it_without_spending_an_attempt(
    stubbed: tuple[Stubber, Any],
) -> None:
    # Given SES accepting one destination and throttling the others through every retry
    stub, ctx = stubbed
    throttled = {"Status": "ACCOUNT_THROTTLED", "Error": "Maximum sending rate exceeded."}
    _expect(stub, ADDRESSES, [throttled, OK, throttled])
    for _ in range(2):
        _throttle(stub)
    clock = Moment()
    task = Email(sleep=lambda _: None, clock=clock, pacer=SesPacer(account_rate=1.0))
    params = EmailParams(recipient_count=3, subject="s", body="b")
    start = task.start(params, ctx)

    # When the chunk runs, it hands the task back: no error, no attempt spent
    later = task.run_chunk(params, start, ctx)

    # Then it comes back when the account (1/s) could have sent the two, and sends only them
    assert (later.cursor, later.done, later.data) == (0, False, start.data)
    assert later.resume_at == NOW + timedelta(seconds=2)
    _expect(stub, [ADDRESSES[0], ADDRESSES[2]], [OK, OK])
    task.pacer = SesPacer(account_rate=1.0)  # a process with its share to spend
    state = task.run_chunk(params, later, ctx)
    assert (state.data["sent"], state.data["failed"], state.done) == (3, 0, True)


def test_a_call_refused_for_everyone_in_it_records_each_of_them(
    stubbed: tuple[Stubber, Any],
) -> None:
    stub, ctx = stubbed
    stub.add_client_error("send_bulk_email", "MessageRejected", "Email address is not verified.")
    task = Email(sleep=lambda _: None, pacer=SesPacer(account_rate=math.inf))
    params = EmailParams(recipient_count=3, subject="s", body="b")

    state = task.run_chunk(params, task.start(params, ctx), ctx)

    assert (state.data["sent"], state.data["failed"]) == (0, 3)
    assert state.data["failures"][0] == {
        "index": 1,
        "email": "success+1@simulator.amazonses.com",
        "code": "MessageRejected",
        "message": "Email address is not verified.",
    }


def test_a_send_that_succeeded_is_never_repeated_by_a_repeated_chunk(
    stubbed: tuple[Stubber, Any],
) -> None:
    # Given a chunk that sent everything, and a worker that died before its checkpoint
    stub, ctx = stubbed
    _expect(stub, ADDRESSES, [OK, OK, OK])
    task = Email(sleep=lambda _: None, pacer=SesPacer(account_rate=math.inf))
    params = EmailParams(recipient_count=3, subject="s", body="b")
    start = task.start(params, ctx)
    first = task.run_chunk(params, start, ctx)

    # When the chunk runs again from the last checkpoint (a call to SES would find no
    # stubbed response and raise)
    again = task.run_chunk(params, start, ctx)

    # Then it gives the same counts from the recorded outcomes
    assert again.data == first.data and again.done
