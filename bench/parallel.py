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
from dataclasses import dataclass

from bench.pricing import PRICES
from bench.report import table
from bench.world import World, in_process_world

GOAL_EXTRA_REQUESTS = 3.0  # per part, beyond its own chunks
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
GET_MS = 15.0  # an S3 GET of a part's accumulators (the merge reads each)
PLAN_SECONDS = 0.5  # the header read, 8 BatchWriteItem of the part items, the parent's write
# Step Functions Distributed Map, one Express child workflow per part (a Lambda task state
# waiting for the part): a state transition per child started, and the child's Express
# request and duration (64 MB increments, at least 100 ms).
SFN_EXPRESS_REQUEST = 1.00 / 1_000_000
SFN_EXPRESS_GB_SECOND = 0.00001667
SFN_PARENT_TRANSITIONS = 5  # start, the map state, its end, the merge task, succeed


@dataclass
class PartCost:
    parts: int
    chunks: int
    split: Counter[str]  # worker + API requests of the split task
    whole: Counter[str]  # of one task of parts x chunks chunks
    split_wru: float
    whole_wru: float
    # Requests one more part adds (measured with twice the parts): what a part costs when
    # the parent's fixed share (its split, its claim for the merge, its finish) is spread
    # over many parts, as at 200.
    marginal: float = 0.0

    @property
    def extra_per_part(self) -> float:
        return (sum(self.split.values()) - sum(self.whole.values())) / self.parts

    def extra_by_operation(self) -> dict[str, float]:
        keys = set(self.split) | set(self.whole)
        return {
            key: (self.split[key] - self.whole[key]) / self.parts
            for key in sorted(keys)
            if self.split[key] != self.whole[key]
        }

    @property
    def dollars_per_part(self) -> float:
        """Orchestration dollars a part adds: its extra requests and write units."""
        extra = self.extra_by_operation()
        sqs = sum(v for k, v in extra.items() if k.startswith("sqs."))
        # The part's own invocation (both designs invoke Lambda once per part) is not counted.
        wru = (self.split_wru - self.whole_wru) / self.parts
        reads = extra.get("dynamodb.BatchGetItem", 0.0)
        # Each message sent is also received and deleted by the event source mapping.
        return (
            3 * sqs * PRICES["sqs_request"]
            + max(0.0, wru) * PRICES["dynamodb_wru"]
            + reads * PRICES["dynamodb_rru"]
        )


def measure(world: World, parts: int, chunks: int) -> PartCost:
    meter = world.meter

    def run(task_type: str, params: dict) -> tuple[Counter[str], float]:
        meter.clear()
        world.submit(task_type, params)
        world.drain()
        requests = meter.requests("worker") + meter.requests("api")
        return requests, meter.table_write_units()

    def split_of(count: int) -> tuple[Counter[str], float]:
        return run("BENCH_NOOP_PARTS", {"parts": count, "chunks": chunks, "max_parallel": count})

    split, split_wru = split_of(parts)
    whole, whole_wru = run("BENCH_NOOP", {"chunks": parts * chunks})
    doubled, _ = split_of(2 * parts)
    wider, _ = run("BENCH_NOOP", {"chunks": 2 * parts * chunks})
    extra = sum(split.values()) - sum(whole.values())
    extra_doubled = sum(doubled.values()) - sum(wider.values())
    marginal = (extra_doubled - extra) / parts
    return PartCost(parts, chunks, split, whole, split_wru, whole_wru, marginal)


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
    merge = DESIGN_PARTS * GET_MS / 1000 + 0.5
    fixed = PLAN_SECONDS + sends + 3 * HOP_SECONDS + merge
    wall = fixed + last_start + waves * part_seconds
    sfn_child = SFN_EXPRESS_REQUEST + SFN_EXPRESS_GB_SECOND * (64 / 1024) * max(0.1, part_seconds)
    sfn = (SFN_PARENT_TRANSITIONS + DESIGN_PARTS) * PRICES["sfn_state_transition"]
    sfn += DESIGN_PARTS * sfn_child
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
    cost: PartCost
    design: Design

    def goal_met(self) -> bool:
        return (
            self.cost.marginal <= GOAL_EXTRA_REQUESTS
            and self.design.wall_seconds < GOAL_WALL_SECONDS
        )

    def render(self) -> str:
        cost, d = self.cost, self.design
        rows = [[op, f"{n:+.2f}"] for op, n in cost.extra_by_operation().items()]
        rows.append(["all requests", f"{cost.extra_per_part:+.2f}"])
        rows.append(["one part more (marginal)", f"{cost.marginal:+.2f}"])
        lines = [
            f"parallel tasks: {cost.parts} parts of {cost.chunks} empty chunks vs one task of "
            f"{cost.parts * cost.chunks} chunks (worker and API requests, per part)",
            table(["request", "per part"], rows),
            "",
            f"design: {GB:g} GB CSV in {DESIGN_PARTS} parts, {CPU_SECONDS_PER_GB} CPU-s/GB, "
            f"Lambda {LAMBDA_MEMORY_MB} MB ({min(1.0, LAMBDA_MEMORY_MB * VCPU_PER_MB):.2f} vCPU)",
            table(
                ["figure", "value"],
                [
                    ["CPU per part", f"{d.part_cpu_seconds:.2f} s"],
                    ["wall per part", f"{d.part_seconds:.2f} s"],
                    ["last part starts (mapping scaling up)", f"{d.last_start:.1f} s"],
                    ["merge (a GET per part, the report)", f"{d.merge_seconds:.1f} s"],
                    ["wall, submit to SUCCESS", f"{d.wall_seconds:.1f} s"],
                    ["wall, were all parts started at once", f"{d.wall_without_ramp:.1f} s"],
                    ["orchestration, ours", f"${d.ours_dollars:.6f}"],
                    ["orchestration, Step Functions Distributed Map", f"${d.sfn_dollars:.6f}"],
                    ["Distributed Map / ours", f"{d.sfn_dollars / d.ours_dollars:.0f}x"],
                ],
            ),
            f"goals: <= {GOAL_EXTRA_REQUESTS:g} requests a part beyond its chunks "
            f"({cost.marginal:.2f} a part more; {cost.extra_per_part:.2f} with the parent's "
            f"share over {cost.parts} parts); under {GOAL_WALL_SECONDS:g} s for 10 GB "
            f"({d.wall_seconds:.1f} s): {'met' if self.goal_met() else 'NOT met'}",
        ]
        return "\n".join(lines)


def run(size: str = "small") -> ParallelResult:
    with in_process_world(measure_sizes=True) as world:
        cost = measure(world, PARTS[size], CHUNKS_PER_PART)
    return ParallelResult(cost, design(cost))


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
