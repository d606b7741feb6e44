"""Parallel tasks: what a part costs beyond its own chunks (measured in moto), and a design
figure for a 10 GB CSV in 200 parts: wall time at Lambda's default concurrency from the
measured CPU per GB, and the cost of the orchestration beside Step Functions Distributed Map.

Measured: BENCH_NOOP_PARTS (parts of empty chunks) against BENCH_NOOP with as many chunks in
one task, through the API and worker handlers in-process; the difference, per part, is what
the fan-out and fan-in add (the part's claim and its count, its message, its share of the
parent's writes and reads). Modelled (stated below, not measured): Lambda's speed and
scaling, AWS's request latencies, Step Functions' billing of a Distributed Map.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.pricing import PRICES
from bench.report import table
from bench.world import World, in_process_world
from devstack.sim_time import SimulatedTime
from taskqueue import wiring
from taskqueue.models import ChunkState
from taskqueue.task_types.base import Plan, TaskContext
from taskqueue.task_types.data_processing import PART_READERS
from taskqueue.task_types.email import MAX_PARALLEL as EMAIL_MAX_PARALLEL
from taskqueue.task_types.email import Email
from taskqueue.task_types.image_processing import MAX_PARALLEL as IMAGES_MAX_PARALLEL

GOAL_EXTRA_REQUESTS = 3.0  # per part, beyond its own chunks
# The parent's requests that carry many parts each: a part more adds one only now and then.
BATCHED = ("dynamodb.BatchWriteItem", "dynamodb.BatchGetItem")
GOAL_WALL_SECONDS = 60.0  # 10 GB CSV, 200 parts
PARTS = {"small": 8, "full": 32}
CHUNKS_PER_PART = 4

# ---------------------------------------------------------------- the design figure's model
GB = 10.0
DESIGN_PARTS = 200
# DATA_PROCESSING's measured CPU per GB (docs/benchmarks.md, section 6: DuckDB, chunks sized
# by time, a 200 MB CSV on this machine).
CPU_SECONDS_PER_GB = 70.7
LAMBDA_MEMORY_MB = 1024  # template.yaml's worker
VCPU_PER_MB = 1 / 1769  # Lambda: one vCPU at 1,769 MB, in proportion below
ACCOUNT_CONCURRENCY = 1000  # Lambda's default concurrency per Region
PARTS_MAXIMUM_CONCURRENCY = 200  # template.yaml: PartsQueueEvent's ScalingConfig
ESM_START_CONCURRENCY = 5  # pollers an SQS event source mapping starts with
ESM_SCALE_PER_MINUTE = 300  # concurrent invocations it adds a minute while a backlog lasts
SEND_MS = 8.0  # an SQS SendMessage in-region (the split sends each lane's first part)
HOP_SECONDS = 0.5  # a message through SQS to an invocation (parent -> parts -> parent)
GET_MS = 15.0  # an S3 GET of a part's accumulators (the merge reads each, PART_READERS at a time)
PLAN_SECONDS = 0.5  # the header read, 8 BatchWriteItem of the part items, the parent's write
# Step Functions Distributed Map, one Express child workflow per part (a Lambda task state
# waiting for the part): a state transition per child started, and the child's Express
# request and duration (64 MB increments, at least 100 ms).
SFN_EXPRESS_REQUEST = 1.00 / 1_000_000
SFN_EXPRESS_GB_SECOND = 0.00001667
SFN_PARENT_TRANSITIONS = 5  # start, the map state, its end, the merge task, succeed


@dataclass(frozen=True)
class Workload:
    """One piece of work run whole and in parts over the same chunks: `whole(n)` and
    `split(n)` give the task type and params of n parts' worth of it."""

    label: str
    whole: Callable[[int], tuple[str, dict[str, Any]]]
    split: Callable[[int], tuple[str, dict[str, Any]]]
    most_parts: int = 1000  # what its params allow (twice the parts measured at the most)


NOOP = Workload(
    f"BENCH_NOOP, {CHUNKS_PER_PART} empty chunks a part",
    lambda n: ("BENCH_NOOP", {"chunks": n * CHUNKS_PER_PART}),
    lambda n: (
        "BENCH_NOOP_PARTS",
        {"parts": n, "chunks": CHUNKS_PER_PART, "max_parallel": n},
    ),
)
IMAGES_PER_PART = 2
IMAGES = Workload(
    f"IMAGE_PROCESSING, {IMAGES_PER_PART} generated images a part, one a chunk",
    lambda n: ("IMAGE_PROCESSING", _images(n)),
    lambda n: ("IMAGE_PROCESSING", {**_images(n), "max_parallel": n}),
    most_parts=min(IMAGES_MAX_PARALLEL, 200 // IMAGES_PER_PART),  # generate_count <= 200
)
# EMAIL's defaults: 50 recipients a batch at 10 a second, a batch every 5 s, so that every
# wait between batches is a hand-over through the queue, in the whole run as in the parts.
EMAIL_BATCH = 50
EMAIL_BATCHES_PER_PART = 2
EMAILS = Workload(
    f"EMAIL, {EMAIL_BATCHES_PER_PART} batches of {EMAIL_BATCH} a part, 10 a second",
    lambda n: ("EMAIL", _emails(n)),
    lambda n: ("EMAIL", {**_emails(n), "max_parallel": n}),
    most_parts=EMAIL_MAX_PARALLEL,
)


def _images(parts: int) -> dict[str, Any]:
    count = parts * IMAGES_PER_PART
    return {"generate_count": count, "images_per_chunk": 1, "width": 32, "height": 32}


def _emails(parts: int) -> dict[str, Any]:
    return {
        "recipient_count": parts * EMAIL_BATCHES_PER_PART * EMAIL_BATCH,
        "subject": "Hello {name}",
        "body": "You are number {index}.",
        "batch_size": EMAIL_BATCH,
        "rate_per_second": 10,
    }


@dataclass
class Run:
    """What one task cost, from submit to its end, every role counted."""

    requests: Counter[str]  # worker + API: the orchestration
    task: Counter[str]  # the task type's own (S3, SES)
    wru: float  # table and index write units
    invocations: int


@dataclass
class PartCost:
    label: str
    parts: int
    split: Run
    whole: Run
    # Requests one more part adds, by operation (measured with twice the parts): what a
    # part costs when the parent's fixed share (its split, its claim for the merge, its
    # finish) is spread over many parts, as at 200. All requests, the task type's own too.
    marginal_by_operation: dict[str, float] = field(default_factory=dict)

    @property
    def marginal(self) -> float:
        return sum(self.marginal_by_operation.values())

    @property
    def own(self) -> float:
        """A part's own requests: one part more, less the parent's batched writes of the
        part items (25 a request) and reads of them (100 a request), which a part more
        only sometimes tips into one more request."""
        return sum(v for k, v in self.marginal_by_operation.items() if k not in BATCHED)

    def at_scale(self, parts: int) -> float:
        """Requests a part with its share of the parent's, in a task of `parts` parts: its
        own, the batched writes and reads, and the rest of the parent's as measured."""
        fixed = self.extra_per_part * self.parts - self.own * self.parts
        fixed -= sum(self.extra_by_operation().get(op, 0.0) * self.parts for op in BATCHED)
        return self.own + fixed / parts + 1 / 25 + 1 / 100

    @property
    def extra_per_part(self) -> float:
        """All requests a part adds, orchestration and the task type's own."""
        return sum(self.extra_by_operation().values())

    def extra_by_operation(self) -> dict[str, float]:
        split = self.split.requests + self.split.task
        whole = self.whole.requests + self.whole.task
        keys = set(split) | set(whole)
        return {
            key: (split[key] - whole[key]) / self.parts
            for key in sorted(keys)
            if split[key] != whole[key]
        }

    @property
    def wru_per_part(self) -> float:
        return (self.split.wru - self.whole.wru) / self.parts

    @property
    def invocations_per_part(self) -> float:
        """Worker invocations a part adds beyond its own first one."""
        return (self.split.invocations - self.whole.invocations) / self.parts - 1

    @property
    def dollars_per_part(self) -> float:
        """Orchestration dollars a part adds: its extra requests, write units and
        invocations beyond the part's own first one (both designs invoke Lambda once a
        part). The task type's own requests (S3, SES) are the same in both designs."""
        extra = self.extra_by_operation()
        sqs = sum(v for k, v in extra.items() if k.startswith("sqs."))
        reads = extra.get("dynamodb.BatchGetItem", 0.0)
        # Each message sent is also received and deleted by the event source mapping.
        return (
            3 * sqs * PRICES["sqs_request"]
            + max(0.0, self.wru_per_part) * PRICES["dynamodb_wru"]
            + reads * PRICES["dynamodb_rru"]
            + max(0.0, self.invocations_per_part) * PRICES["lambda_request"]
        )

    def ours_per_task(self) -> float:
        """The orchestration the parts add to one task of `parts` parts."""
        return self.parts * self.dollars_per_part

    def sfn_per_task(self) -> float:
        """Step Functions Distributed Map over the same parts, each billed its least (a
        lower bound: a part's child runs as long as the part, images and paced email
        alike)."""
        return sfn_distributed_map(self.parts, 0.0)


def sfn_distributed_map(parts: int, part_seconds: float) -> float:
    """A Distributed Map of `parts` Express children waiting for a Lambda each: the
    parent's transitions, a transition per child started, the child's request and its
    duration (64 MB, at least 100 ms)."""
    child = SFN_EXPRESS_REQUEST + SFN_EXPRESS_GB_SECOND * (64 / 1024) * max(0.1, part_seconds)
    return (SFN_PARENT_TRANSITIONS + parts) * PRICES["sfn_state_transition"] + parts * child


def run_task(world: World, sim: SimulatedTime, task_type: str, params: dict[str, Any]) -> Run:
    """Submit one task and run it to SUCCESS on simulated time, counting what it took."""
    meter = world.meter
    meter.clear()
    task_id = world.submit(task_type, params)
    invocations = world.drain_in_time(sim)
    task = meter.requests("task")
    requests = meter.requests("worker") + meter.requests("api")
    wru = meter.table_write_units() + meter.index_write_units()
    status = world.status(task_id)
    if status != "SUCCESS":
        raise RuntimeError(f"{task_type} {params} ended {status}")
    return Run(requests, task, wru, invocations)


def measure(world: World, sim: SimulatedTime, work: Workload, parts: int) -> PartCost:
    def extra(count: int) -> tuple[Run, Run]:
        split = run_task(world, sim, *work.split(count))
        return split, run_task(world, sim, *work.whole(count))

    split, whole = extra(parts)
    doubled, wider = extra(2 * parts)
    once = PartCost(work.label, parts, split, whole).extra_by_operation()
    twice = PartCost(work.label, 2 * parts, doubled, wider).extra_by_operation()
    marginal = {
        op: (2 * twice.get(op, 0.0) - once.get(op, 0.0))
        for op in sorted(set(once) | set(twice))
        if 2 * twice.get(op, 0.0) != once.get(op, 0.0)
    }
    return PartCost(work.label, parts, split, whole, marginal)


@dataclass
class Design:
    part_cpu_seconds: float
    part_seconds: float
    last_start: float
    merge_seconds: float
    wall_seconds: float
    wall_without_ramp: float
    ours_dollars: float
    sfn_dollars: float


def design(cost: PartCost) -> Design:
    vcpu = min(1.0, LAMBDA_MEMORY_MB * VCPU_PER_MB)
    part_cpu = CPU_SECONDS_PER_GB * GB / DESIGN_PARTS
    part_seconds = part_cpu / vcpu
    concurrency = min(ACCOUNT_CONCURRENCY, PARTS_MAXIMUM_CONCURRENCY, DESIGN_PARTS)
    # Part i starts once the mapping runs i + 1 invocations at once (it adds a few a second).
    last_start = max(0.0, (concurrency - ESM_START_CONCURRENCY) * 60.0 / ESM_SCALE_PER_MINUTE)
    waves = math.ceil(DESIGN_PARTS / concurrency)
    sends = concurrency * SEND_MS / 1000
    merge = math.ceil(DESIGN_PARTS / PART_READERS) * GET_MS / 1000 + 0.5
    fixed = PLAN_SECONDS + sends + 3 * HOP_SECONDS + merge
    wall = fixed + last_start + waves * part_seconds
    sfn = sfn_distributed_map(DESIGN_PARTS, part_seconds)
    return Design(
        part_cpu_seconds=part_cpu,
        part_seconds=part_seconds,
        last_start=last_start,
        merge_seconds=merge,
        wall_seconds=wall,
        wall_without_ramp=fixed + waves * part_seconds,
        ours_dollars=DESIGN_PARTS * cost.dollars_per_part,
        sfn_dollars=sfn,
    )


@dataclass
class ParallelResult:
    costs: list[PartCost]  # BENCH_NOOP first: the design figure's
    design: Design
    first_slot: FirstSlot | None = None

    def goal_met(self) -> bool:
        return (
            all(cost.own <= GOAL_EXTRA_REQUESTS for cost in self.costs)
            and self.design.wall_seconds < GOAL_WALL_SECONDS
        )

    def render(self) -> str:
        d = self.design
        costs = self.costs
        ops = sorted({op for cost in costs for op in cost.extra_by_operation()})
        rows = [
            [op, *[f"{cost.extra_by_operation().get(op, 0.0):+.2f}" for cost in costs]]
            for op in ops
        ]
        rows += [
            ["all requests", *[f"{cost.extra_per_part:+.2f}" for cost in costs]],
            ["one part more (marginal)", *[f"{cost.marginal:+.2f}" for cost in costs]],
            ["a part's own (its batched share aside)", *[f"{cost.own:+.2f}" for cost in costs]],
            [
                f"with its share at {DESIGN_PARTS} parts",
                *[f"{cost.at_scale(DESIGN_PARTS):+.3f}" for cost in costs],
            ],
            ["write units (table + indexes)", *[f"{cost.wru_per_part:+.2f}" for cost in costs]],
            [
                "worker invocations beyond its first",
                *[f"{cost.invocations_per_part:+.2f}" for cost in costs],
            ],
            [
                "$ per task: ours (the parts' orchestration)",
                *[f"{cost.ours_per_task():.8f}" for cost in costs],
            ],
            [
                "$ per task: Distributed Map (at least)",
                *[f"{cost.sfn_per_task():.8f}" for cost in costs],
            ],
            [
                "Distributed Map / ours",
                *[f"{cost.sfn_per_task() / cost.ours_per_task():.1f}x" for cost in costs],
            ],
        ]
        lines = [
            "parallel tasks: parts against the same chunks in one task (requests of the API, "
            "the worker and the task type, per part; simulated time)",
            table(["per part", *[f"{cost.label}; {cost.parts} parts" for cost in costs]], rows),
            "",
            f"design: {GB:g} GB CSV in {DESIGN_PARTS} parts, {CPU_SECONDS_PER_GB} CPU-s/GB, "
            f"Lambda {LAMBDA_MEMORY_MB} MB ({min(1.0, LAMBDA_MEMORY_MB * VCPU_PER_MB):.2f} vCPU)",
            table(
                ["figure", "value"],
                [
                    ["CPU per part", f"{d.part_cpu_seconds:.2f} s"],
                    ["wall per part", f"{d.part_seconds:.2f} s"],
                    ["last part starts (mapping scaling up)", f"{d.last_start:.1f} s"],
                    [
                        f"merge (a GET per part, {PART_READERS} at a time; the report)",
                        f"{d.merge_seconds:.1f} s",
                    ],
                    ["wall, submit to SUCCESS", f"{d.wall_seconds:.1f} s"],
                    ["wall, were all parts started at once", f"{d.wall_without_ramp:.1f} s"],
                    ["orchestration, ours", f"${d.ours_dollars:.6f}"],
                    ["orchestration, Step Functions Distributed Map", f"${d.sfn_dollars:.6f}"],
                    ["Distributed Map / ours", f"{d.sfn_dollars / d.ours_dollars:.0f}x"],
                ],
            ),
            f"goals: <= {GOAL_EXTRA_REQUESTS:g} requests a part beyond its chunks ("
            + "; ".join(
                f"{cost.label.split(',')[0]} {cost.own:.2f} a part's own, "
                f"{cost.extra_per_part:.2f} with the parent's share over {cost.parts} parts"
                for cost in costs
            )
            + f"); under {GOAL_WALL_SECONDS:g} s for 10 GB ({d.wall_seconds:.1f} s): "
            f"{'met' if self.goal_met() else 'NOT met'}",
        ]
        if self.first_slot is not None:
            lines += [
                "",
                f"EMAIL in {self.first_slot.parts} parts ({EMAILS.label}), per part: every "
                "lane started at once (before) or held back to its first slot (after)",
                table(["per part", "lanes at once", "first slot"], self.first_slot.rows()),
            ]
        return "\n".join(lines)


WORKLOADS = (NOOP, IMAGES, EMAILS)


class EmailLanesAtOnce(Email):
    """EMAIL as it was before a lane was held back to its first slot: every lane's first
    part is sent at once, and one after the first hands over until its slot comes."""

    def plan(self, params: Any, state: ChunkState, ctx: TaskContext) -> Plan | None:
        plan = super().plan(params, state, ctx)
        return None if plan is None else replace(plan, start_after=())


@dataclass
class FirstSlot:
    """An EMAIL task in parts with its lanes started at once (before) and each held back to
    its first slot (after): what the split run took, per part."""

    parts: int
    before: Run
    after: Run

    def rows(self) -> list[list[str]]:
        def per_part(figure: Callable[[Run], float]) -> list[str]:
            return [f"{figure(run) / self.parts:.2f}" for run in (self.before, self.after)]

        return [
            ["SES requests", *per_part(lambda run: _service(run.task, "sesv2"))],
            ["SQS messages sent", *per_part(lambda run: run.requests["sqs.SendMessage"])],
            ["worker invocations", *per_part(lambda run: run.invocations)],
            ["DynamoDB requests", *per_part(lambda run: _service(run.requests, "dynamodb"))],
            ["S3 requests", *per_part(lambda run: _service(run.task, "s3"))],
            ["all requests", *per_part(lambda run: sum((run.requests + run.task).values()))],
        ]


def _service(requests: Counter[str], service: str) -> int:
    return sum(n for key, n in requests.items() if key.startswith(f"{service}."))


def first_slot(world: World, sim: SimulatedTime, parts: int) -> FirstSlot:
    engine, service = wiring.engine(), wiring.service()
    paced = engine.registry["EMAIL"]
    before_type = EmailLanesAtOnce(sleep=paced.sleep, clock=paced.clock, pacer=paced.pacer)
    engine.registry = service.registry = {**engine.registry, "EMAIL": before_type}
    try:
        before = run_task(world, sim, *EMAILS.split(parts))
    finally:
        engine.registry = service.registry = {**engine.registry, "EMAIL": paced}
    return FirstSlot(parts, before, run_task(world, sim, *EMAILS.split(parts)))


def run(
    size: str = "small", workloads: tuple[Workload, ...] = WORKLOADS, parts: int | None = None
) -> ParallelResult:
    """Each workload in `parts` parts (and twice as many, for the marginal part) against
    the same chunks whole; EMAIL's lanes also started at once, for the first-slot figure."""
    parts = parts or PARTS[size]
    with in_process_world(measure_sizes=True) as world, world.simulated_time() as sim:
        costs = [measure(world, sim, work, min(parts, work.most_parts // 2)) for work in workloads]
        lanes = min(parts, EMAILS.most_parts)
        slots = first_slot(world, sim, lanes) if EMAILS in workloads else None
    return ParallelResult(costs, design(costs[0]), slots)


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
