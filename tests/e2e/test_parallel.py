"""A parallel DATA_PROCESSING task on the local stack: the same statistics as the whole-file
run, in less wall time with the pollers' concurrency raised.

The file is PARALLEL_E2E_MB megabytes (16 by default; 200 for the figure in
docs/benchmarks.md: `PARALLEL_E2E_MB=200 pytest tests/e2e/test_parallel.py -s`, which prints
the wall and CPU seconds of both runs, and the CPU of the stack's own process apart). The
wall time is asserted at 64 MB and above, where it is the work and not the stack's round
trips that is measured (docs/benchmarks.md, section 8). It is the task's own: from its
`created_at` to its `finished_at`. The test asks for the task once a second only: each GET
is an API invocation in the stack's process (~15 ms of CPU for a parent, which reads its
parts), and asked five times a second it took ~0.35 CPU-s from the parts on 2 cores.

Before the timed runs, a small parallel task starts the environments the parts will use and
loads what a first invocation loads (DuckDB, the AWS clients): the runs are measured on warm
environments, as provisioned concurrency gives on AWS; a cold start is measured in `python
-m bench coldstart`, not here.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from taskqueue.task_types.data_processing import BLOCK_ROWS, generated_block, generated_header
from tests.e2e.devstack_process import (
    Stack,
    _stat,
    cpu_seconds,
    descendants,
    get_task,
    moto_client,
    own_stack,
    submit,
    upload_ticket,
    wait_for,
)

MEGABYTES = int(os.environ.get("PARALLEL_E2E_MB", "16"))
WORKERS = 8
COLUMNS = 6
# The warm-up's file: 8 parts of the least a part is given (data_processing.MIN_PART_BYTES).
WARM_UP_MB = 9


@pytest.fixture(scope="module")
def wide_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own whose pollers run WORKERS invocations at once."""
    log = tmp_path_factory.mktemp("parallel") / "devstack.log"
    yield from own_stack(log, "--workers", str(WORKERS))


def generated_csv(megabytes: int) -> bytes:
    """The generator's rows (mixed magnitudes, empty and invalid cells) up to the size."""
    pieces = [generated_header(COLUMNS, ",").encode()]
    size, block = len(pieces[0]), 0
    while size < megabytes * 1024 * 1024:
        piece = generated_block(11, block, BLOCK_ROWS, COLUMNS, ",").encode()
        pieces.append(piece)
        size += len(piece)
        block += 1
    return b"".join(pieces)


def upload(stack: Stack, body: bytes, name: str = "parallel.csv") -> str:
    """Put the file where an upload goes (straight into the local S3: the API's presigned
    uploads stop at 100 MB)."""
    ticket = upload_ticket(stack, name, b"x", "text/csv")
    bucket = urlparse(ticket["url"]).path.split("/")[1]
    s3 = moto_client(stack, "s3")
    s3.put_object(Bucket=bucket, Key=ticket["key"], Body=body)
    key: str = ticket["key"]
    return key


def own_cpu_seconds(stack: Stack) -> float:
    """CPU time of the stack's own process (moto, the API, the pollers), without its
    environment processes."""
    fields = _stat(stack.process.pid)
    return sum(int(value) for value in fields[11:13]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """A finished task, its wall seconds (created to finished), the CPU seconds the stack
    spent meanwhile and the seconds that was measured over (until the test saw the task
    finished), those of them in the stack's own process, and the environment processes
    started meanwhile (cold)."""

    task: dict[str, Any]
    seconds: float
    cpu: float
    cpu_window: float
    own_cpu: float
    cold: int


def timed_run(stack: Stack, key: str, max_parallel: int) -> Run:
    environments = descendants(stack.process.pid)
    started, cpu, own = time.monotonic(), cpu_seconds(stack), own_cpu_seconds(stack)
    task = submit(stack, "DATA_PROCESSING", {"input_key": key, "max_parallel": max_parallel})
    done = wait_for(stack, task["id"], "SUCCESS", "FAILED", timeout=1800, every=1.0)
    window, cpu = time.monotonic() - started, cpu_seconds(stack) - cpu
    assert done["status"] == "SUCCESS", done["error"]
    cold = len(descendants(stack.process.pid) - environments)
    seconds = (at(done, "finished_at") - at(done, "created_at")).total_seconds()
    return Run(done, seconds, cpu, window, own_cpu_seconds(stack) - own, cold)


def at(item: dict[str, Any], name: str) -> datetime:
    return datetime.fromisoformat(item[name])


def finished_parts(stack: Stack, task: dict[str, Any]) -> list[dict[str, Any]]:
    return [get_task(stack, f"{task['id']}.{index}") for index in range(task["parts_total"])]


def hops(task: dict[str, Any], parts: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Where a parallel task's wall time went outside its parts, in seconds: submit to the
    split (the parent's first claim), the split to the first part's start, the last part's
    finish to the parent's (its count, the parent's message, the merge)."""
    to_split = at(task, "started_at") - at(task, "created_at")
    to_parts = min(at(part, "started_at") for part in parts) - at(task, "started_at")
    to_merge = at(task, "finished_at") - max(at(part, "finished_at") for part in parts)
    return to_split.total_seconds(), to_parts.total_seconds(), to_merge.total_seconds()


def same_statistics(split: dict[str, Any], whole: dict[str, Any]) -> None:
    """Counts exactly equal; sums and moments equal to the last bits a merge order changes."""
    assert {k: v for k, v in split.items() if k != "column_stats"} == {
        k: v for k, v in whole.items() if k != "column_stats"
    }
    for a, b in zip(split["column_stats"], whole["column_stats"], strict=True):
        assert a.keys() == b.keys()
        for name in a:
            if isinstance(a[name], float) and isinstance(b[name], float):
                assert math.isclose(a[name], b[name], rel_tol=1e-12, abs_tol=1e-9), name
            else:
                assert a[name] == b[name], name


def test_max_parallel_8_gives_the_whole_runs_statistics_in_less_time(
    wide_stack: Stack, tmp_path: Path
) -> None:
    # Given a generated CSV uploaded once, and warm environments for 8 parts
    body = generated_csv(MEGABYTES)
    key = upload(wide_stack, body)
    warm_up = upload(wide_stack, generated_csv(WARM_UP_MB), "warm-up.csv")
    assert timed_run(wide_stack, warm_up, WORKERS).task["parts_total"] == WORKERS
    # When it is analysed whole, then in parts 8 at a time
    one = timed_run(wide_stack, key, 1)
    eight = timed_run(wide_stack, key, 8)
    whole, split = one.task, eight.task
    parts = finished_parts(wide_stack, split)
    to_split, to_parts, to_merge = hops(split, parts)
    print(
        f"\n{len(body) / 1e6:.0f} MB on {os.cpu_count()} CPUs (load average "
        f"{os.getloadavg()[0]:.1f}): max_parallel 1 {one.seconds:.1f} s ({one.cpu:.1f} CPU-s, "
        f"{one.own_cpu:.1f} in the stack's process, {one.cold} cold environments), "
        f"max_parallel 8 {eight.seconds:.1f} s ({eight.cpu:.1f} CPU-s, {eight.own_cpu:.1f} in "
        f"the stack's process, {eight.cold} cold environments, {split['parts_total']} parts, "
        f"{sum(part['result']['chunks'] for part in parts)} chunks): "
        f"{eight.seconds / one.seconds:.2f}x the wall time; CPU share "
        f"{one.cpu / one.cpu_window:.2f} and {eight.cpu / eight.cpu_window:.2f} CPU-s a second; "
        f"submit to split {to_split:.2f} s, split to first part {to_parts:.2f} s, last part "
        f"to merged {to_merge:.2f} s; the whole run's submit to start "
        f"{(at(whole, 'started_at') - at(whole, 'created_at')).total_seconds():.2f} s"
    )
    # Then the statistics are the same, and the parts did the work
    same_statistics(split["result"], whole["result"])
    assert split["result"]["rows"] == whole["result"]["rows"] > 0
    assert split["parts_total"] == 8 and split["parts_done"] == 8
    assert [part["status"] for part in split["parts"]] == ["SUCCESS"] * 8
    # and the parent's first claim (its plan) did not wait out a batching window (1 s), nor
    # did its merge: each hop of the fan-out goes through the parts' queue
    assert to_split < 0.6 and to_merge < 0.6, (to_split, to_merge)
    if MEGABYTES >= 64:
        assert eight.seconds < 0.7 * one.seconds
