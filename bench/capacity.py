"""Benchmark 2, design capacity: which partition keys a load of tasks writes, and how many
tasks a second one owner (then 1,000 owners) can run before any key passes DynamoDB's
1,000 writes a second.

Tasks of 2 ``BENCH_NOOP`` chunks go through the API and worker handlers in-process. Every
successful write is recorded under its partition key, for the table and for each index (an
index write happens when an item's index key is put, or changed: a status transition is a
delete under the old gsi3pk/gsi4pk and a put under the new one).

Two capacity figures:
- *sample*: 1000 / (writes to the hottest shared key per task) in this run; with a few
  hundred tasks hashed over 32 or 64 shards it includes the sample's imbalance.
- *design*: the same for the hottest key *family* (a key with its shard number taken out),
  spread evenly over its shards: what a sustained load converges to. The goal is asserted on
  this figure, and the hashing noise of one-second windows at the goal rate is simulated.
Keys of one task (``TASK#<id>``, ``IDEMP#...``) take a bounded number of writes over the
task's life whatever the load, so they are shown apart and not used for capacity; so does
the marker of a counted stream batch (``COUNTED#<event>``, written once).

The status counters are written by the counters function, once per stream batch: the table's
stream is read in batches of the mapping's BatchSize after every 50 tasks (batches of about
300 records: fewer tasks per batch, so more counter writes per task, than at 10,000 tasks/s).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

from bench.report import table
from bench.world import in_process_world, no_transaction_backups
from taskqueue.quotas import QUOTA_SHARDS
from taskqueue.store.items import (
    ID_INDEX,
    QUOTA_PREFIX,
    STATS_SHARDS,
    THROUGHPUT_SHARDS,
    UNSENT_SHARDS,
    unsent_partition,
)

LIMIT = 1000  # writes (of <= 1 KB) a second per partition key
GOAL_TASKS_PER_SECOND = 10_000
CHUNKS = 2
_SHARD = re.compile(r"^(.*)#(\d+)$")


@dataclass
class CapacityResult:
    label: str
    owners: int
    tasks: int
    total_writes: int
    hottest_key: tuple[str, str]
    hottest_writes: int
    family_rows: list[
        tuple[str, str, int, float, float, float]
    ]  # target, family, shards, w/task, w/key/task, capacity
    per_task_max: tuple[str, float]  # heaviest per-task key kind, max writes over a task's life
    shard_count: int
    noise_peak: float  # simulated hottest key, writes in one second at the goal rate

    @property
    def sample_capacity(self) -> float:
        return LIMIT / (self.hottest_writes / self.tasks)

    @property
    def design_capacity(self) -> float:
        return min(row[5] for row in self.family_rows)

    def goal_met(self) -> bool:
        return self.design_capacity >= GOAL_TASKS_PER_SECOND

    def render(self) -> str:
        target, key = self.hottest_key
        out = [
            f"-- {self.label}: {self.tasks:,} tasks of {CHUNKS} chunks, {self.owners:,} owner(s), "
            f"{self.total_writes:,} writes (table + indexes) --",
            f"hottest shared key (sample): {target} {key!r}: {self.hottest_writes:,} writes, "
            f"{self.hottest_writes / self.total_writes:.2%} of all writes, "
            f"{self.hottest_writes / self.tasks:.4f} per task -> {self.sample_capacity:,.0f} tasks/s",
            table(
                ["table/index", "key family", "shards", "writes/task", "per key/task", "tasks/s"],
                [
                    [t, f, s, f"{w:.3f}", f"{k:.4f}", f"{c:,.0f}"]
                    for t, f, s, w, k, c in self.family_rows[:8]
                ],
                title="hottest key families, keys evenly hashed (design)",
            ),
            table(
                ["table/index", "key family", "shards", "writes/task", "per key/task", "tasks/s"],
                [
                    [t, f, s, f"{w:.4f}", f"{k:.5f}", f"{c:,.0f}"]
                    for t, f, s, w, k, c in self.family_rows
                    if f.startswith(("STATS#", "TPUT#"))
                ][:4],
                title="the status counters' partitions (written once per stream batch)",
            ),
            f"per-task keys: at most {self.per_task_max[1]:.0f} writes to one {self.per_task_max[0]} "
            "key over a task's whole life (not load-dependent)",
            f"design capacity: {self.design_capacity:,.0f} tasks/s before a key passes {LIMIT:,} "
            f"writes/s (load spread evenly over the owners); at {GOAL_TASKS_PER_SECOND:,} "
            "tasks/s the hottest key takes "
            f"~{self.noise_peak:,.0f} writes in its busiest second (hashing noise, simulated)",
        ]
        return "\n".join(out)


def family(target: str, key: str, shard_count: int) -> tuple[str, int] | None:
    """(family, shards) of a shared key; None for a key that belongs to one task."""
    if key.startswith(("TASK#", "IDEMP#", "COUNTED#")) or target == ID_INDEX:
        return None  # (by_owner_id: a hash of the owner and the task id's first characters)
    match = _SHARD.match(key)
    if match is None:
        return key, 1
    shards = {
        "STATS#": STATS_SHARDS,
        "TPUT#": THROUGHPUT_SHARDS,
        QUOTA_PREFIX: QUOTA_SHARDS,
        unsent_partition(0).removesuffix("0"): UNSENT_SHARDS,
    }.get(key[: key.index("#") + 1], shard_count)
    return f"{match.group(1)}#<shard>", shards


def analyse(
    label: str,
    owners: int,
    tasks: int,
    writes: Counter[tuple[str, str]],
    shard_count: int,
    seed: int = 0,
) -> CapacityResult:
    total = sum(writes.values())
    shared = {k: n for k, n in writes.items() if family(k[0], k[1], shard_count) is not None}
    hottest = max(shared, key=lambda k: shared[k])
    families: Counter[tuple[str, str]] = Counter()
    shards_of: dict[tuple[str, str], int] = {}
    for (target, key), n in shared.items():
        found = family(target, key, shard_count)
        assert found is not None
        families[(target, found[0])] += n
        shards_of[(target, found[0])] = found[1]
    rows = []
    for (target, name), n in families.items():
        # With the load spread evenly over the owners, a task writes the family this often.
        per_task = n / tasks
        shards = shards_of[(target, name)]
        per_key = per_task / shards
        rows.append((target, name, shards, per_task, per_key, LIMIT / per_key))
    rows.sort(key=lambda r: r[5])
    per_task_keys: Counter[str] = Counter()
    for (target, key), n in writes.items():
        if family(target, key, shard_count) is None:
            kind = f"{ID_INDEX} ..." if target == ID_INDEX else key.split("#", 1)[0] + "#..."
            per_task_keys[kind] = max(per_task_keys[kind], n)
    heaviest = max(per_task_keys.items(), key=lambda kv: kv[1])
    # Hashing noise: GOAL tasks/s of one owner spread over the hottest family's shards.
    _, _, shards, per_task, _, _ = rows[0]
    per_owner_task = per_task * owners  # the family is one owner's: only its tasks write it
    rng = random.Random(seed)
    peak = 0.0
    rate = max(1, GOAL_TASKS_PER_SECOND // owners)
    for _ in range(20):
        counts = Counter(rng.randrange(shards) for _ in range(rate))
        peak = max(peak, max(counts.values()) * per_owner_task)
    return CapacityResult(
        label=label,
        owners=owners,
        tasks=tasks,
        total_writes=total,
        hottest_key=hottest,
        hottest_writes=shared[hottest],
        family_rows=rows,
        per_task_max=heaviest,
        shard_count=shard_count,
        noise_peak=peak,
    )


def drive(owners: int, tasks_per_owner: int, label: str) -> CapacityResult:
    with in_process_world(measure_sizes=False) as world, no_transaction_backups():
        shard_count = int(world.env.get("SHARD_COUNT", "32"))
        submitted = 0
        for round_ in range(tasks_per_owner):
            for owner in range(owners):
                world.submit("BENCH_NOOP", {"chunks": CHUNKS}, owner=f"owner-{owner:04d}")
                submitted += 1
                if submitted % 50 == 0:
                    world.drain()
                    world.count()
            del round_
        world.drain()
        world.count()
        failed = [c for c in world.meter.calls if not c.ok]
        # No failed request, so moto never had to roll a transaction back (see world.py).
        assert not failed, f"{len(failed)} requests failed"
        return analyse(label, owners, submitted, world.meter.partition_writes(), shard_count)


@dataclass
class CapacityRun:
    one_owner: CapacityResult
    many_owners: CapacityResult

    def goal_met(self) -> bool:
        return self.one_owner.goal_met()

    def render(self) -> str:
        verdict = "PASS" if self.goal_met() else "FAIL"
        return "\n".join(
            [
                "== capacity: partition keys written by a load (in-process pipeline) ==",
                self.one_owner.render(),
                "",
                self.many_owners.render(),
                "",
                f"goal: >= {GOAL_TASKS_PER_SECOND:,} tasks/s for one owner (design): "
                f"{self.one_owner.design_capacity:,.0f} tasks/s -> {verdict}",
            ]
        )


def run(size: str = "small") -> CapacityRun:
    if size == "small":
        one = drive(1, 80, "one owner")
        many = drive(40, 1, "40 owners (small size)")
    else:
        one = drive(1, 3000, "one owner")
        many = drive(1000, 3, "1,000 owners")
    return CapacityRun(one, many)


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
