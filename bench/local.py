"""Benchmark 5, local throughput: 500 one-chunk tasks through the local stack (``python -m
devstack dev`` in a subprocess, HTTP gateway, moto server, SQS poller), beside the same
tasks through the handlers called directly in-process (moto in-process, batches of 10).

Figures: tasks per second from the first submit to the last finish, and submit-to-start
latency (the task's ``started_at - created_at``, both written by the system's own clock).
The stack runs ``bench.devstack_noop``: devstack's own CLI with the BENCH_NOOP type added.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.report import table

START_TIMEOUT = 90.0
RUN_TIMEOUT = 900.0


@dataclass
class Throughput:
    label: str
    tasks: int
    seconds: float
    latencies: list[float]  # submit -> start, seconds
    submit_ms: float  # mean time of one submit call, as the caller sees it
    server_errors: int = 0  # submits answered 5xx (and retried)

    @property
    def per_second(self) -> float:
        return self.tasks / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def through_local_stack(count: int, clients: int = 1, workers: int = 1) -> Throughput:
    import requests

    port, moto_port = _free_port(), _free_port()
    log = Path(tempfile.mkstemp(prefix="bench-devstack-", suffix=".log")[1])
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-u", "-m", "bench.devstack_noop", "dev"),
                *("--port", str(port), "--moto-port", str(moto_port), "--workers", str(workers)),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"local stack did not start:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        session = requests.Session()
        body: dict[str, Any] = {"type": "BENCH_NOOP", "params": {"chunks": 1}}

        errors: list[int] = []

        def submit(_: int) -> tuple[str, float]:
            # A 5xx is retried (and counted): moto server can fail a transaction that runs
            # while another thread writes the table (see docs/benchmarks.md).
            started = time.perf_counter()
            for _attempt in range(5):
                response = session.post(f"{url}/tasks", json=body, timeout=30)
                if response.status_code < 500:
                    break
                errors.append(response.status_code)
            response.raise_for_status()
            return response.json()["id"], time.perf_counter() - started

        with ThreadPoolExecutor(max_workers=clients) as pool:
            submitted = list(pool.map(submit, range(count)))
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            stats = session.get(f"{url}/stats", timeout=30).json()
            done = stats["counts"]["by_status"].get("SUCCESS", 0)
            if done >= count:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} tasks finished")
            # /stats is 64 Queries: polled gently, so it does not slow what it watches
            time.sleep(5)

        def detail(task_id: str) -> dict:
            return session.get(f"{url}/tasks/{task_id}", timeout=30).json()

        with ThreadPoolExecutor(max_workers=clients) as pool:
            tasks = list(pool.map(detail, [task_id for task_id, _ in submitted]))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    label = f"local stack (HTTP, moto server, {clients} clients, {workers} poller workers)"
    result = _figures(label, tasks, [s for _, s in submitted])
    result.server_errors = len(errors)
    return result


def _figures(label: str, tasks: list[dict], submit_seconds: list[float]) -> Throughput:
    created = [_parse(t["created_at"]) for t in tasks]
    started = [_parse(t["started_at"]) for t in tasks]
    finished = [_parse(t["finished_at"]) for t in tasks]
    return Throughput(
        label=label,
        tasks=len(tasks),
        seconds=(max(finished) - min(created)).total_seconds(),
        latencies=[(s - c).total_seconds() for s, c in zip(started, created, strict=True)],
        submit_ms=statistics.mean(submit_seconds) * 1000,
    )


def in_process(count: int, batch: int = 10, table_copies: bool = True) -> Throughput:
    from contextlib import nullcontext

    from bench.world import in_process_world, no_transaction_backups
    from taskqueue import wiring
    from taskqueue.models import TaskView

    submit_seconds = []
    ids = []
    fast = nullcontext() if table_copies else no_transaction_backups()
    with in_process_world(measure_sizes=False) as world, fast:
        for n in range(count):
            started = time.perf_counter()
            ids.append(world.submit("BENCH_NOOP", {"chunks": 1}))
            submit_seconds.append(time.perf_counter() - started)
            if (n + 1) % batch == 0:
                world.drain()
        world.drain()
        store = wiring.new_store(wiring.settings(), client=world.dynamodb)
        tasks = [TaskView.of(t).model_dump(mode="json") for t in store.tasks.batch_get(ids)]
    label = f"in-process handlers (moto in-process, batches of {batch})"
    if not table_copies:
        label += ", without moto's per-transaction table copy"
    return _figures(label, tasks, submit_seconds)


@dataclass
class LocalResult:
    rows: list[Throughput]
    pending: str = ""

    def render(self) -> str:
        tasks = self.rows[-1].tasks
        out = [f"== local: {tasks} one-chunk tasks, submit-to-start latency and throughput =="]
        out.append(
            table(
                ["path", "tasks/s", "p50 latency s", "p99 latency s", "submit ms", "submit 5xx"],
                [
                    [
                        r.label,
                        f"{r.per_second:.1f}",
                        f"{r.percentile(0.5):.3f}",
                        f"{r.percentile(0.99):.3f}",
                        f"{r.submit_ms:.1f}",
                        r.server_errors,
                    ]
                    for r in self.rows
                ],
            )
        )
        if self.pending:
            out.append(f"local stack: PENDING ({self.pending})")
        return "\n".join(out)


def run(size: str = "small") -> LocalResult:
    count = 100 if size == "small" else 500
    rows = [in_process(count), in_process(count, table_copies=False)]
    pending = ""
    try:
        rows.insert(0, through_local_stack(count))
    except Exception as exc:  # report what stopped the stack and go on with the rest
        pending = f"{type(exc).__name__}: {str(exc)[:500]}"
    return LocalResult(rows, pending)


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return not result.pending
