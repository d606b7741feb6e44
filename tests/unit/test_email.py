"""EMAIL without AWS: bounded templates, outcome classes as data, and the process pacer."""

from __future__ import annotations

import random
import time
import tracemalloc
from typing import Any

import pytest
from pydantic import ValidationError

from taskqueue.task_types.email import (
    CALL_ERRORS,
    ENTRY_STATUSES,
    FAILED,
    MAX_BODY_CHARS,
    RETRY,
    SENT,
    WAIT,
    EmailParams,
    SesPacer,
    call_error_class,
)
from taskqueue.task_types.email_template import MAX_SPEC_NUMBER, Template, check_template

# ---------------------------------------------------------------- hostile templates

HOSTILE = [
    pytest.param("{name:>999999999}", "more than 1000 characters", id="huge width"),
    pytest.param("{name:.999999999}", "more than 1000 characters", id="huge precision"),
    pytest.param("{index:999999999d}", "more than 1000 characters", id="huge numeric width"),
    pytest.param("{name:>1000}" * 800, "could reach", id="many wide fields"),
    pytest.param("{plan}" * 1666, "could reach", id="one long field repeated"),
    pytest.param("{name!r}", "conversions", id="conversion"),
]


@pytest.mark.serial  # tests/conftest.py: the bound is in wall time
@pytest.mark.parametrize(("body", "error"), HOSTILE)
def test_hostile_templates_are_refused_in_bounded_time_and_memory(body: str, error: str) -> None:
    # Given a body whose rendering would allocate far more than the cap (or reach into repr)
    fields = {"ada@example.com": {"plan": "p" * 500}}
    tracemalloc.start()
    started = time.perf_counter()

    # When it is validated as the API and the worker validate params
    with pytest.raises(ValidationError, match=error):
        EmailParams(recipients=["ada@example.com"], subject="s", body=body, fields=fields)

    # Then it is refused before anything of that size is rendered
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert time.perf_counter() - started < 1.0


def test_a_template_just_under_the_cap_is_accepted_and_renders_within_it() -> None:
    # Given a body of repeated long fields whose bound is just under the cap
    repeats = (MAX_BODY_CHARS - 10) // 500
    fields = {"ada@example.com": {"plan": "p" * 500}}

    # When it is validated and rendered
    params = EmailParams(
        recipients=["ada@example.com"], subject="s", body="{plan}" * repeats, fields=fields
    )
    _, body = params.message(0)

    # Then it renders at its full, bounded size
    assert len(body) == repeats * 500 <= MAX_BODY_CHARS


def test_email_and_index_cannot_be_replaced_by_a_recipients_fields() -> None:
    with pytest.raises(ValidationError, match="index cannot be replaced"):
        EmailParams(
            recipients=["ada@example.com"],
            subject="s",
            body="{index:03d}",
            fields={"ada@example.com": {"index": "x"}},
        )


SPECS = ["", ":>7", ":<3", ":^12", ":.2", ":5.3", ":*^9", ":=>4"]
NUMBER_SPECS = ["", ":d", ":03d", ":,", ":x", ":#b", ":+08.3f", ":e", ":.40%", ":_^11"]


def test_the_size_bound_holds_for_every_rendering() -> None:
    # Given random templates over text and numeric fields, and random values
    rng = random.Random(7)
    for _ in range(500):
        parts = []
        for _ in range(rng.randrange(1, 6)):
            parts.append("lit" * rng.randrange(0, 3))
            if rng.random() < 0.5:
                parts.append("{index" + rng.choice(NUMBER_SPECS) + "}")
            else:
                parts.append("{" + rng.choice(["name", "plan"]) + rng.choice(SPECS) + "}")
        text = "".join(parts)
        values = {"name": "n" * rng.randrange(0, 70), "plan": "é" * rng.randrange(0, 20)}
        values["index"] = rng.randrange(1, 10_001)
        lengths = {"name": len(values["name"]), "plan": len(values["plan"]), "index": 5}

        # When the template is parsed and rendered
        template = Template.parse("body", text, {"name", "plan", "index"})
        rendered = template.render(values)

        # Then the bound computed without rendering is never below the real length
        assert len(rendered) <= template.size_bound(lengths, frozenset({"index"})), text


def test_spec_numbers_at_the_limit_are_allowed() -> None:
    template = check_template(
        "body",
        f"{{name:>{MAX_SPEC_NUMBER}}}",
        {"name"},
        {"name": 3},
        frozenset(),
        cap=MAX_SPEC_NUMBER,
    )

    assert len(template.render({"name": "Ada"})) == MAX_SPEC_NUMBER


# ---------------------------------------------------------------- outcomes as data


@pytest.mark.parametrize(("status", "kind"), sorted(ENTRY_STATUSES.items()))
def test_every_ses_entry_status_has_a_class(status: str, kind: str) -> None:
    # Throttling waits (no attempt spent), SES's own failures are retried; only SUCCESS is
    # sent, and neither is ever a final failure.
    assert (kind == SENT) == (status == "SUCCESS")
    if "THROTTLED" in status or "QUOTA" in status:
        assert kind == WAIT
    elif status in ("TRANSIENT_FAILURE", "FAILED"):
        assert kind == RETRY
    else:
        assert kind in (SENT, FAILED)


def _client_error(code: str, status: int = 400) -> Exception:
    from botocore.exceptions import ClientError

    response: Any = {"Error": {"Code": code, "Message": code}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "SendBulkEmail")


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("TooManyRequestsException", 429, WAIT),
        ("Throttling", 400, WAIT),
        ("LimitExceededException", 400, WAIT),
        ("InternalFailure", 500, RETRY),
        ("ServiceUnavailable", 503, RETRY),
        ("SomethingNew", 503, RETRY),
        ("SomethingNew", 400, RETRY),
        *((code, 400, kind) for code, kind in CALL_ERRORS.items()),
    ],
)
def test_whole_call_errors_are_classed_by_code(code: str, status: int, kind: str) -> None:
    assert call_error_class(_client_error(code, status)) == kind


def test_a_connection_error_is_retried() -> None:
    from botocore.exceptions import EndpointConnectionError

    assert call_error_class(EndpointConnectionError(endpoint_url="https://x")) == RETRY


# ---------------------------------------------------------------- the process pacer


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Ses:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.calls = 0

    def get_account(self) -> dict[str, Any]:
        self.calls += 1
        return {"SendQuota": {"MaxSendRate": self.rate, "Max24HourSend": 1e6}}


def test_the_account_rate_is_read_once() -> None:
    ses, pacer = _Ses(14.0), SesPacer()

    rates = [pacer.read_quota(ses) for _ in range(3)]

    assert rates == [14.0, 14.0, 14.0]
    assert ses.calls == 1


def test_a_process_sends_its_share_then_says_when_to_try_again() -> None:
    # Given a process with a quarter share (4 processes) of an account rate of 8/s: 2/s
    clock = _Clock()
    pacer = SesPacer(clock=clock, account_rate=8.0)

    # When it sends 10, and is asked for 10 more at once, after 4 s, and when due (5 s)
    first = pacer.reserve(10, 4)
    refused = pacer.reserve(10, 4)
    clock.now += 4
    nearly = pacer.reserve(10, 4)
    clock.now += 1
    due = pacer.reserve(10, 4)

    # Then the first is granted; the next come back when the account could have sent 10
    # (1.25 s) or when this process may send again, whichever is first
    assert (first, refused, nearly, due) == (0.0, 1.25, 1.0, 0.0)


def test_a_retry_comes_no_sooner_than_a_second_unless_this_process_is_free_by_then() -> None:
    # Given a process of a 1000/s account shared by 70, that just sent 50 (3.5 s of share)
    clock = _Clock()
    pacer = SesPacer(clock=clock, account_rate=1000.0)
    pacer.reserve(50, 70)

    # When asked again at once, and 0.2 s before its share is back
    at_once = pacer.reserve(50, 70)
    clock.now += 3.3

    # Then the task goes back to the queue for a second (not 0.05 s, which would be slept
    # here and meet this process again); near the end the short wait is slept
    assert at_once == 1.0
    assert pacer.reserve(50, 70) == pytest.approx(0.2)


def test_at_most_the_account_rate_over_all_processes_whatever_the_tasks() -> None:
    # Given 4 processes sharing an account rate of 8/s, and 30 tasks of 50 recipients
    clock = _Clock()
    processes = [SesPacer(clock=clock, account_rate=8.0) for _ in range(4)]
    pending = {task: 50 for task in range(30)}
    sent_at: list[tuple[float, int]] = []

    # When every tenth of a second each process takes any task that has mail left
    for _ in range(3000):
        for pacer in processes:
            task = next((t for t, left in pending.items() if left), None)
            if task is not None and pacer.reserve(10, 4) == 0:
                pending[task] -= 10
                sent_at.append((clock.now, 10))
        clock.now += 0.1

    # Then in any 10 s window no more than 8/s were sent, plus one batch per process
    assert not any(pending.values())
    for start, _ in sent_at:
        window = sum(n for moment, n in sent_at if start <= moment < start + 10)
        assert window <= 8 * 10 + 4 * 10


def test_the_default_concurrency_share_matches_the_workers_in_the_template() -> None:
    # Given the template's worker: its queues' event source mappings (and any reserved
    # concurrency) bound how many worker processes run, hence send, at once
    from devstack.resources import load_template
    from taskqueue.config import Settings

    worker = load_template()["Resources"]["WorkerFunction"]["Properties"]
    # (the parts' queue included: EMAIL's parallel parts send from it)
    mappings = [event["Properties"] for event in worker["Events"].values()]
    most = sum(m["ScalingConfig"]["MaximumConcurrency"] for m in mappings if m.get("Queue"))
    most = min(most, worker.get("ReservedConcurrentExecutions", most))

    # Then each process's share of the account's rate is 1/that, by default
    assert Settings.model_fields["email_max_concurrency"].default == most == 280
