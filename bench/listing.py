"""Benchmark 3, list cost: items and bytes DynamoDB reads for one page of GET /tasks.

Tasks are loaded straight into moto with BatchWriteItem (items from
``taskqueue.store.items.TaskItem``), one owner, spread over 30 days, three types and five
statuses. Then the first pages of 50 are listed with each filter through
``TaskListing.list_tasks``, counting the items every Query and BatchGetItem returns and their
bytes (DynamoDB item size rules). Goal: at most 3 x page size + shard count items per page,
and flat as the table grows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3

from bench.meter import Meter
from bench.report import table
from bench.world import fast_moto_queries, in_process_world
from taskqueue import wiring
from taskqueue.models import Task, TaskStatus, utcnow
from taskqueue.store import Store
from taskqueue.store.items import ACTIVE_STATUSES, TaskItem
from taskqueue.store.listing import MAX_CANDIDATES_PER_TASK

PAGE = 50
PAGES = 3
OWNER = "list-user"
TYPES = ("DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING")
STATUSES = (
    (TaskStatus.SUCCESS, 0.70),
    (TaskStatus.FAILED, 0.10),
    (TaskStatus.PENDING, 0.10),
    (TaskStatus.RUNNING, 0.05),
    (TaskStatus.CANCELLED, 0.05),
)
DAYS = 30
# The filters on one active status (their bound is `ListResult.active_bound`).
ACTIVE_FILTERS = tuple(f"status={status}" for status in sorted(ACTIVE_STATUSES))


def filters(now: datetime) -> dict[str, dict[str, Any]]:
    return {
        "none": {},
        "status=FAILED": {"status": TaskStatus.FAILED},
        # PENDING and RUNNING share the ACTIVE partition: read, then checked
        "status=PENDING": {"status": TaskStatus.PENDING},
        "status=RUNNING": {"status": TaskStatus.RUNNING},
        "type=EMAIL": {"task_type": "EMAIL"},
        "status=FAILED&type=EMAIL": {"status": TaskStatus.FAILED, "task_type": "EMAIL"},
        "created 20..10 days ago": {
            "created_after": now - timedelta(days=20),
            "created_before": now - timedelta(days=10),
        },
    }


@dataclass
class PageCost:
    filter: str
    page: int
    tasks: int
    queries: int
    query_items: int
    batch_gets: int
    batch_items: int
    bytes: int
    read_units: float

    @property
    def items(self) -> int:
        return self.query_items + self.batch_items


def load(
    dynamodb: Any, table_name: str, count: int, shard_count: int, now: datetime, seed: int = 7
) -> None:
    rng = random.Random(seed)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    span = timedelta(days=DAYS).total_seconds()
    batch: list[dict[str, Any]] = []
    for n in range(count):
        created = now - timedelta(seconds=span * (count - n) / count)
        status = rng.choices(statuses, weights)[0]
        task = Task(
            task_id=f"{rng.getrandbits(128):032x}",
            owner=OWNER,
            task_type=TYPES[n % len(TYPES)],
            params={"rows": 10_000, "columns": 5, "seed": n},
            status=status,
            progress=100 if status == TaskStatus.SUCCESS else 0,
            created_at=created,
            updated_at=created,
        )
        item = TaskItem.new(task, shard_count, status=status, log=[]).dynamodb()
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == 25:
            _write(dynamodb, table_name, batch)
            batch = []
    if batch:
        _write(dynamodb, table_name, batch)


def _write(dynamodb: Any, table_name: str, batch: list[dict[str, Any]]) -> None:
    pending: dict[str, Any] = {table_name: batch}
    while pending:
        pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def measure_pages(
    store: Store, meter: Meter, name: str, query: dict[str, Any], pages_wanted: int = PAGES
) -> list[PageCost]:
    pages = []
    cursor = None
    for number in range(1, pages_wanted + 1):
        meter.clear()
        page = store.listing.list_tasks(OWNER, limit=PAGE, cursor=cursor, **query)
        calls = meter.calls
        queries = [c for c in calls if c.operation == "Query"]
        gets = [c for c in calls if c.operation == "BatchGetItem"]
        pages.append(
            PageCost(
                filter=name,
                page=number,
                tasks=len(page.tasks),
                queries=len(queries),
                query_items=sum(c.items_read for c in queries),
                batch_gets=len(gets),
                batch_items=sum(c.items_read for c in gets),
                bytes=sum(c.bytes_read for c in calls),
                read_units=sum(c.read_units for c in calls),
            )
        )
        cursor = page.next_cursor
        if cursor is None:
            break
    return pages


@dataclass
class ListResult:
    sizes: list[int]
    pages: dict[int, list[PageCost]]  # table size -> pages
    shard_count: int

    @property
    def bound(self) -> int:
        return 3 * PAGE + self.shard_count

    @property
    def active_bound(self) -> int:
        """A page of one active status: its candidates' index entries and items, and what
        the shards' first reads buffered (both active statuses share the partition)."""
        return 2 * (MAX_CANDIDATES_PER_TASK * PAGE + self.shard_count)

    def bound_of(self, name: str) -> int:
        return self.active_bound if name in ACTIVE_FILTERS else self.bound

    def over_bound(self, size: int) -> dict[str, int]:
        """Filters whose worst page read more items than their bound, and how many."""
        return {n: w for n, w in self.worst(size).items() if w > self.bound_of(n)}

    def worst(self, size: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pages[size]:
            out[p.filter] = max(out.get(p.filter, 0), p.items)
        return out

    def full_pages(self, size: int) -> set[str]:
        """Filters whose pages at this size all held a full page of tasks."""
        short = {p.filter for p in self.pages[size] if p.tasks < PAGE}
        return {p.filter for p in self.pages[size]} - short

    def growth(self) -> dict[str, int]:
        """Extra items read by the worst page at the largest size over the smallest, for the
        filters that fill their pages at both (a filter with fewer matches reads less)."""
        small, large = self.sizes[0], self.sizes[-1]
        comparable = self.full_pages(small) & self.full_pages(large)
        return {n: self.worst(large)[n] - self.worst(small)[n] for n in sorted(comparable)}

    def goal_met(self) -> bool:
        bounded = not any(self.over_bound(size) for size in self.sizes)
        return bounded and all(extra <= 0.1 * self.bound for extra in self.growth().values())

    def render(self) -> str:
        out = [f"== list: pages of {PAGE}, one owner, {self.shard_count} index shards =="]
        for size in self.sizes:
            rows = [
                [
                    p.filter,
                    p.page,
                    p.tasks,
                    p.queries,
                    p.query_items,
                    p.batch_items,
                    p.items,
                    f"{p.bytes:,}",
                    f"{p.read_units:g}",
                ]
                for p in self.pages[size]
            ]
            out.append(
                table(
                    [
                        "filter",
                        "page",
                        "tasks",
                        "queries",
                        "index items",
                        "batch-get items",
                        "items read",
                        "bytes read",
                        "RRU",
                    ],
                    rows,
                    title=f"{size:,} tasks in the table",
                )
            )
            out.append("")
        worst = {size: self.worst(size) for size in self.sizes}
        names = list(worst[self.sizes[0]])
        out.append(
            table(
                ["worst page: items read", *[f"{s:,} tasks" for s in self.sizes]],
                [[n, *[worst[s][n] for s in self.sizes]] for n in names],
            )
        )
        verdict = "PASS" if self.goal_met() else "FAIL"
        growth = self.growth()
        active_peak = max(w[n] for w in worst.values() for n in ACTIVE_FILTERS)
        peak = max(w[n] for w in worst.values() for n in w if n not in ACTIVE_FILTERS)
        out.append(
            f"goal: <= 3 x {PAGE} + {self.shard_count} = {self.bound} items per page (PENDING "
            f"or RUNNING: <= 2 x ({MAX_CANDIDATES_PER_TASK} x {PAGE} + {self.shard_count}) = "
            f"{self.active_bound}), flat as the table grows: worst {peak} ({active_peak}), "
            f"largest growth {max(growth.values(), default=0):+d} "
            f"items ({self.sizes[0]:,} -> {self.sizes[-1]:,} tasks) -> {verdict}"
        )
        return "\n".join(out)


def run(size: str = "small", progress: Callable[[str], None] | None = None) -> ListResult:
    sizes = [1_000, 3_000] if size == "small" else [10_000, 100_000]
    pages_per_filter = 2 if size == "small" else PAGES
    pages: dict[int, list[PageCost]] = {}
    shard_count = 32
    with in_process_world(measure_sizes=False) as world, fast_moto_queries():
        shard_count = int(world.env.get("SHARD_COUNT", "32"))
        client = boto3.client("dynamodb")
        meter = Meter()
        meter.attach(client, "list")
        store = wiring.new_store(wiring.settings(), client=client)
        now = utcnow()
        loaded = 0
        for count in sizes:
            # Grow the same table: the smaller size's tasks stay, the newest are added.
            load(
                world.dynamodb,
                world.table,
                count - loaded,
                shard_count,
                now - timedelta(seconds=1),
                seed=count,
            )
            loaded = count
            if progress:
                progress(f"loaded {count:,} tasks")
            pages[count] = [
                p
                for name, query in filters(now).items()
                for p in measure_pages(store, meter, name, query, pages_per_filter)
            ]
    return ListResult(sizes, pages, shard_count)


def main(size: str) -> bool:
    result = run(size, progress=print)
    print(result.render())
    return result.goal_met()
