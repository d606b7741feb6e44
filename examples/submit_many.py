"""Submit 100 tasks, wait for them with a progress bar, and print a summary.

    pip install ./client
    TQ_URL=http://127.0.0.1:8000 python examples/submit_many.py            # the local stack
    python examples/submit_many.py --count 20 --type EMAIL \
        --params '{"recipient_count": 5, "subject": "Hi {name}", "body": "Hello"}'

The API URL and token come from the same places as `tq`'s (TQ_URL, TQ_TOKEN, the profile file).
Exits 1 if any task did not succeed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taskqueue_client import Client, Task, TaskStatus
from taskqueue_client.auth import token_source
from taskqueue_client.config import load_profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--type", default="DATA_PROCESSING")
    parser.add_argument("--params", type=json.loads, default={"rows": 2000})
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait at most")
    parser.add_argument("--concurrency", type=int, default=8, help="submits in flight at once")
    args = parser.parse_args(argv)
    console = Console()

    profile = load_profile()
    with Client(profile.require_url(), token_source(profile)) as client:
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            submitting = progress.add_task("submitted", total=args.count)

            def submit(_: int) -> Task:
                task = client.submit(args.type, args.params)
                progress.advance(submitting)
                return task

            # One client serves every thread (httpx's connection pool is thread-safe).
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                tasks = list(pool.map(submit, range(args.count)))
            finishing = progress.add_task("finished ", total=args.count)
            done: set[str] = set()

            def on_progress(task: Task) -> None:
                if task.finished and task.id not in done:
                    done.add(task.id)
                    progress.advance(finishing)

            finished = client.wait_all(tasks, args.timeout, on_progress)
        wall = time.monotonic() - started

    by_status = Counter(task.status for task in finished)
    durations = sorted(t.view.duration_seconds or 0.0 for t in finished if t.view.started_at)
    console.print(f"\n{args.count} {args.type} tasks in {wall:.1f} s ({args.count / wall:.1f}/s)")
    for status in TaskStatus:
        if by_status[status]:
            console.print(f"  {status.value:<9} {by_status[status]}")
    if durations:
        p95 = durations[min(len(durations) - 1, int(len(durations) * 0.95))]
        console.print(
            f"  run time per task: median {statistics.median(durations):.2f} s, "
            f"p95 {p95:.2f} s, max {durations[-1]:.2f} s"
        )
    for task in finished:
        if task.view.error:
            console.print(f"  {task.id}: {task.view.error.type}: {task.view.error.message}")
    return 0 if by_status[TaskStatus.SUCCESS] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
