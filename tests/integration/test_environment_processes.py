"""The local stack's execution environments in processes of their own (devstack.runtime with
``separate_processes``, devstack.lambda_process): what Lambda's environments do, with a small
handler written for each test."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.resources import FunctionEventSources
from devstack.runtime import InvocationError, LocalFunction

HANDLER = """
import os, sys, time

loaded_in = os.getpid()

def lambda_handler(event, context):
    if event.get("print"):
        print(event["print"])
        print("and to stderr", file=sys.stderr)
    if event.get("raise"):
        raise ValueError(event["raise"])
    if event.get("crash"):
        os._exit(3)
    if event.get("until_expired"):
        while context.get_remaining_time_in_millis() > 0:
            time.sleep(0.01)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {
        "pid": os.getpid(),
        "loaded_in": loaded_in,
        "event": event,
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


@pytest.fixture
def function(tmp_path: Path) -> Iterator[LocalFunction]:
    (tmp_path / "app.py").write_text(HANDLER, encoding="utf-8")
    config = FunctionEventSources(
        function="TestFunction",
        timeout=3,
        memory_size=1024,
        handler="app.lambda_handler",
        code_uri=str(tmp_path),
    )
    local = LocalFunction("TestFunction", config, "stack-test", separate_processes=True)
    yield local
    local.close()


def running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except OSError:
        return "Z"


pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
    # Serial (tests/conftest.py): processes of their own, timeouts and stops asserted in wall time.
    pytest.mark.serial,
]


def test_an_invocation_runs_in_a_warm_process_of_its_own_with_lambdas_context(
    function: LocalFunction,
) -> None:
    # Given a function whose environment was warmed at start-up
    function.warm()
    function.ready()
    # When it is invoked twice
    first = function.invoke({"n": 1})
    second = function.invoke({"n": 2})
    # Then both ran in one other process, which loaded the handler once
    assert first["pid"] != os.getpid()
    assert first["pid"] == first["loaded_in"] == second["pid"] == second["loaded_in"]
    assert [first["event"], second["event"]] == [{"n": 1}, {"n": 2}]
    # And with the function's context: its name, memory and a remaining time from its Timeout
    assert (first["function"], first["memory"]) == ("stack-test", 1024)
    assert 2_000 < first["remaining_ms"] <= 3_000


def test_invocations_at_once_get_one_environment_each(function: LocalFunction) -> None:
    # Given two invocations running at the same time
    answers: list[dict[str, int]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(function.invoke({"sleep": 0.5})))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each had a process of its own
    assert len({answer["pid"] for answer in answers}) == 2


def test_each_environment_leads_a_session_of_its_own(function: LocalFunction) -> None:
    # Given two environments of the function
    answers: list[dict[str, int]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(function.invoke({"sleep": 0.3})))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pids = sorted(answer["pid"] for answer in answers)
    # Then each leads its own session (the kernel's autogroup gives it a CPU share of its own),
    # none the devstack's
    assert [os.getsid(pid) for pid in pids] == pids
    assert os.getsid(0) not in pids


def test_handler_output_reaches_the_devstacks_output(
    function: LocalFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the devstack's stdout, where the relay thread writes each line, read as it grows:
    # polling capfd instead truncates its file after each read, and a line the relay writes
    # between that read and the truncation is lost (it failed so once under load)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    # When the handler prints to stdout and stderr
    answer = function.invoke({"print": "hello from the handler"})
    # Then its lines come out of the devstack's stdout, and the answer is intact
    deadline = time.monotonic() + 5
    while "and to stderr" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = out.getvalue()
    assert "hello from the handler\n" in seen and "and to stderr\n" in seen
    assert answer["event"] == {"print": "hello from the handler"}


def test_a_handler_error_is_raised_with_its_traceback_and_the_environment_kept(
    function: LocalFunction,
) -> None:
    before = function.invoke({})["pid"]
    # When the handler raises
    with pytest.raises(InvocationError) as failure:
        function.invoke({"raise": "bad record"})
    # Then the caller gets its traceback, and the next invocation reuses the environment
    assert "ValueError: bad record" in str(failure.value)
    assert 'File "' in str(failure.value)
    assert function.invoke({})["pid"] == before


def test_a_crashed_environment_is_replaced(function: LocalFunction) -> None:
    before = function.invoke({})["pid"]
    # When the handler's process dies mid-invocation
    with pytest.raises(InvocationError, match=r"exited \(3\)"):
        function.invoke({"crash": True})
    # Then the next invocation cold-starts a new environment
    after = function.invoke({})["pid"]
    assert after != before and not running(before)


def test_an_invocation_past_its_timeout_is_ended_with_its_process(
    function: LocalFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("devstack.runtime.TIMEOUT_GRACE_SECONDS", 0.5)
    started = time.monotonic()
    # When the handler runs past the function's 3 s Timeout
    with pytest.raises(InvocationError, match="exited"):
        function.invoke({"sleep": 30})
    # Then it is killed at the Timeout (plus the grace)
    assert 3 <= time.monotonic() - started < 6


def test_expiring_invocations_ends_a_running_one_and_starts_later_ones_expired(
    function: LocalFunction,
) -> None:
    # Given an invocation that runs until its remaining time is zero
    answers: list[dict[str, int]] = []
    worker = threading.Thread(target=lambda: answers.append(function.invoke({"until_expired": 1})))
    function.warm()
    function.ready()
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    # When the devstack tells running invocations their time is up (as it does at stop)
    function.expire_invocations()
    worker.join(5)
    # Then it returns at once, and a later invocation starts with no time left
    assert time.monotonic() - started < 1
    assert answers and answers[0]["remaining_ms"] == 0
    assert function.invoke({})["remaining_ms"] == 0


def test_closing_the_function_leaves_no_process(function: LocalFunction) -> None:
    # Given two environments, one busy and one idle
    function.warm()
    function.warm()
    busy = threading.Thread(target=lambda: _ignore_errors(function, {"sleep": 30}))
    busy.start()
    time.sleep(1.0)
    pids = function.pids()
    assert len(pids) == 2
    # When the function is closed
    started = time.monotonic()
    function.close()
    busy.join(10)
    # Then both processes are gone within the close's bound
    assert time.monotonic() - started < 5
    assert not [pid for pid in pids if running(pid)]


def _ignore_errors(function: LocalFunction, event: dict[str, object]) -> None:
    with contextlib.suppress(InvocationError):
        function.invoke(event)
