"""`python -m devstack dev` as a subprocess on free ports, and small HTTP helpers to drive it.

Shared by the e2e tests (through the session fixture `stack` of tests/e2e/conftest.py) and by
`python -m tests.e2e.screenshots`. Every helper takes optional `headers`: a request with
`Authorization: Bearer <jwt>` acts as the user named by the token's `sub` (see `bearer_for`).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
TASK_TIMEOUT = 30.0


class StackError(RuntimeError):
    """The local stack did not start, or a task did not reach the awaited state."""


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    url: str
    moto_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_stack(log: Path, *options: str) -> Stack:
    """Starts the devstack on two free ports; returns once /health answers 200."""
    port, moto_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-u", "-m", "devstack", "dev", "--port", str(port)]
    command += ["--moto-port", str(moto_port), *options]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{moto_port}", log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"devstack exited with {process.returncode}:\n{stack.output()}")
        try:
            if requests.get(f"{stack.url}/health", timeout=2).status_code == 200:
                return stack
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise StackError(f"devstack not ready within {START_TIMEOUT} s:\n{stack.output()}")


def own_stack(log: Path, *options: str) -> Iterator[Stack]:
    """A module fixture's body: a stack of its own with `options`, stopped (cleanly) after."""
    import pytest

    try:
        running = start_stack(log, *options)
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    yield running
    assert stop_stack(running) == 0, running.output()


def moto_client(stack: Stack, service: str) -> Any:
    """A boto3 client of the stack's moto server (S3, DynamoDB, SQS as the functions see them)."""
    import boto3

    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=stack.moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def stop_stack(stack: Stack, timeout: float = 10.0) -> int:
    """SIGINT, as Ctrl-C would; kills the process if it does not stop within `timeout`."""
    stack.process.send_signal(signal.SIGINT)
    try:
        return stack.process.wait(timeout)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        stack.process.wait()
        raise


# ------------------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> set[int]:
    """Processes whose parent chain leads to pid (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cpu_seconds(stack: Stack) -> float:
    """CPU time the stack has used so far: its process, the children it has reaped and those
    still running (its environment processes), user and system (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat(stack.process.pid)
    total = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    for pid in descendants(stack.process.pid):
        try:
            total += sum(int(value) for value in _stat(pid)[11:13])
        except (OSError, IndexError):
            continue  # ended meanwhile: counted in its parent's cutime once reaped
    return total / ticks


# ------------------------------------------------------------------------------- HTTP


def bearer_for(user: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """Headers that make the devstack act as `user`, in Cognito `groups` (it decodes the JWT
    without verifying)."""
    claims: dict[str, object] = {"sub": user}
    if groups:
        claims["cognito:groups"] = list(groups)
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return {"Authorization": f"Bearer x.{payload}.x"}


def submit(
    stack: Stack,
    task_type: str,
    params: dict[str, Any],
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    response = requests.post(
        f"{stack.url}/tasks",
        json={"type": task_type, "params": params, **extra},
        headers=headers,
        timeout=10,
    )
    if response.status_code != 201:
        raise StackError(f"POST /tasks answered {response.status_code}: {response.text}")
    task: dict[str, Any] = response.json()
    return task


def get_task(stack: Stack, task_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = requests.get(f"{stack.url}/tasks/{task_id}", headers=headers, timeout=10)
    if response.status_code != 200:
        raise StackError(f"GET /tasks/{task_id} answered {response.status_code}: {response.text}")
    task: dict[str, Any] = response.json()
    return task


def wait_for(
    stack: Stack,
    task_id: str,
    *statuses: str,
    headers: dict[str, str] | None = None,
    timeout: float = TASK_TIMEOUT,
    every: float = 0.2,
) -> dict[str, Any]:
    """The task once it is in one of `statuses`, asked for `every` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        task = get_task(stack, task_id, headers)
        if task["status"] in statuses:
            return task
        if time.monotonic() > deadline:
            raise StackError(
                f"task {task_id} is {task['status']}, not {statuses}:\n{stack.output()[-4000:]}"
            )
        time.sleep(every)


def upload_ticket(
    stack: Stack,
    filename: str,
    content: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = requests.post(
        f"{stack.url}/uploads",
        json={"filename": filename, "content_type": content_type, "size": len(content)},
        headers=headers,
        timeout=10,
    )
    if response.status_code != 201:
        raise StackError(f"POST /uploads answered {response.status_code}: {response.text}")
    ticket: dict[str, Any] = response.json()
    return ticket


def unreadable_like(content: bytes) -> bytes:
    """UTF-16 text of the same size as `content` (a ticket binds the size): DATA_PROCESSING
    fails it at once, `unreadable_input`, and the good file can replace it later."""
    return b"\xff\xfe" + b"a\x00" * ((len(content) - 2) // 2) + b"\x00" * (len(content) % 2)


def put_upload(ticket: dict[str, Any], content: bytes) -> None:
    response = requests.put(ticket["url"], data=content, headers=ticket["headers"], timeout=10)
    if response.status_code != 200:
        raise StackError(f"PUT of the upload answered {response.status_code}: {response.text}")
