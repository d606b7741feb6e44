"""Benchmark 1, cost per task: AWS requests, DynamoDB units, Lambda and dollars per task,
beside the same work orchestrated by Step Functions Standard.

Tasks of 1, 10 and 100 chunks of ``BENCH_NOOP`` (chunks that make no AWS calls, so what is
counted is the orchestration) are submitted through the API handler and drained through the
worker handler, in-process against moto, one task per worker invocation; the table's stream
then goes through the counters handler. A DATA_PROCESSING task's own S3 requests are
reported apart.

Three loads are priced. **Quiet**: every batch holds one task (one worker invocation per
task, the stream records of one task per counters invocation); the goal is on this one.
**At load**: SQS batches of 10 messages and stream batches of up to the mapping's BatchSize
records (measured over a burst of tasks counted together). **Worst case**: quiet, and every
stream record in a batch of its own (a task outlasting the 10 s batching window on an
otherwise idle system), which only the counters' cost changes.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from bench.meter import Meter
from bench.pricing import PRICES, PRICES_AS_OF, price_table
from bench.report import table
from bench.world import OWNER, World, function_property, in_process_world, stream_batch_size

GOAL_RATIO = 25.0  # orchestration at least 25x below Step Functions Standard (10 chunks)
GOAL_CHUNKS = 10

# ---------------------------------------------------------------- models (stated, not measured)

# Lambda duration model: moto's latency says nothing about AWS's, so billed time is modelled
# as a fixed cost per invocation plus a typical in-region latency per AWS request made.
# Powertools resolver / batch processor / the counters' parsing of a batch of records.
INVOCATION_OVERHEAD_MS = {"api": 5.0, "worker": 3.0, "counters": 5.0}
REQUEST_LATENCY_MS = {
    "dynamodb.GetItem": 4.0,
    "dynamodb.UpdateItem": 6.0,
    "dynamodb.PutItem": 6.0,
    "dynamodb.Query": 6.0,
    "dynamodb.BatchGetItem": 8.0,
    "dynamodb.TransactWriteItems": 12.0,
    "sqs.SendMessage": 8.0,
}
DEFAULT_LATENCY_MS = 10.0
# The event source mapping's SQS requests: one ReceiveMessage and one DeleteMessageBatch per
# batch. Batches of one message here (a quiet queue: the worst case); at load a batch holds
# up to 10 messages and this drops to 0.2 requests a message.
ESM_REQUESTS_PER_BATCH = 2
SQS_BATCH_AT_LOAD = 10
# Tasks submitted together for the at-load figures of the counters.
LOAD_TASKS = {"small": 20, "full": 100}
# Step Functions Standard, one execution per task, a loop over the chunks:
#   Start (Lambda task) -> [RunChunk (Lambda task) -> MoreChunks? (Choice)] x N
#   -> Finish (Lambda task) -> Done (Succeed)        = 2N + 3 state transitions
# with a Retry on each Lambda task state; the assumed retry rate below adds one transition
# (and one Lambda request) per retried state. Each Lambda task state is one invocation.
SFN_RETRY_RATE = 0.01


def sfn_transitions(chunks: int) -> float:
    lambda_states = chunks + 2
    return 2 * chunks + 3 + SFN_RETRY_RATE * lambda_states


def sfn_lambda_requests(chunks: int) -> float:
    return (chunks + 2) * (1 + SFN_RETRY_RATE)


# ---------------------------------------------------------------- measurement


@dataclass
class TaskCost:
    label: str
    chunks: int
    tasks: int
    requests: dict[str, Counter[str]]  # role -> "service.Operation" -> per task
    wru_table: float  # quiet: the counters' writes for one task per stream batch
    wru_index: float
    rru: float
    wru_by_step: dict[str, float]
    wru_by_item: dict[str, float]
    worker_invocations: float
    counters_invocations: float
    sqs_ours: float
    gb_seconds: dict[str, float]  # role -> modelled GB-s per task (quiet)
    counters_at_load: LoadCounters
    counters_alone: LoadCounters  # each stream record in a batch of its own
    s3: Counter[str] = field(default_factory=Counter)

    @property
    def sqs_esm(self) -> float:
        return ESM_REQUESTS_PER_BATCH * self.worker_invocations

    @property
    def wru_counters(self) -> float:
        return self.wru_by_step.get("counters", 0.0)

    def dollars(self, at_load: bool = False) -> dict[str, float]:
        """Per task, by component, quiet (the worst case) or at load."""
        p = PRICES
        s3_puts = sum(v for k, v in self.s3.items() if k.split(".")[1] in _S3_PUT_CLASS)
        s3_gets = sum(self.s3.values()) - s3_puts
        wru = self.wru_table + self.wru_index
        worker_invocations = self.worker_invocations
        worker_gb_s = self.gb_seconds["worker"]
        counters_invocations = self.counters_invocations
        counters_gb_s = self.gb_seconds["counters"]
        if at_load:
            load = self.counters_at_load
            wru += load.wru - self.wru_counters
            worker_invocations /= SQS_BATCH_AT_LOAD
            worker_gb_s -= self.gb_seconds["worker_overhead"] * (1 - 1 / SQS_BATCH_AT_LOAD)
            counters_invocations = load.invocations
            counters_gb_s = load.gb_seconds
        return {
            "DynamoDB writes": wru * p["dynamodb_wru"],
            "DynamoDB reads": self.rru * p["dynamodb_rru"],
            "SQS": (self.sqs_ours + ESM_REQUESTS_PER_BATCH * worker_invocations) * p["sqs_request"],
            "Lambda requests (worker)": worker_invocations * p["lambda_request"],
            "Lambda GB-s (worker, orchestration)": worker_gb_s * p["lambda_gb_second_arm64"],
            "Lambda requests + GB-s (counters)": counters_invocations * p["lambda_request"]
            + counters_gb_s * p["lambda_gb_second_arm64"],
            "API Gateway (submit)": 1 * p["http_api_request"],
            "Lambda requests + GB-s (API)": p["lambda_request"]
            + self.gb_seconds["api"] * p["lambda_gb_second_arm64"],
            "S3 (the task's own work)": s3_puts * p["s3_put_request"]
            + s3_gets * p["s3_get_request"],
        }

    def orchestration(self, at_load: bool = False) -> float:
        """What moves a submitted task through its chunks: compared with Step Functions."""
        d = self.dollars(at_load)
        return sum(d[k] for k in ORCHESTRATION)

    def sfn(self) -> float:
        return (
            sfn_transitions(self.chunks) * PRICES["sfn_state_transition"]
            + sfn_lambda_requests(self.chunks) * PRICES["lambda_request"]
        )

    def ratio(self, at_load: bool = False) -> float:
        return self.sfn() / self.orchestration(at_load)

    def ratio_alone(self) -> float:
        """Quiet, and every transition of the task counted in a stream batch of its own (a
        task outlasting the batching window on an otherwise idle system)."""
        alone = self.counters_alone
        extra = (alone.wru - self.wru_counters) * PRICES["dynamodb_wru"] + (
            alone.invocations - self.counters_invocations
        ) * PRICES["lambda_request"]
        extra += (alone.gb_seconds - self.gb_seconds["counters"]) * PRICES["lambda_gb_second_arm64"]
        return self.sfn() / (self.orchestration() + extra)


@dataclass
class LoadCounters:
    """The counters' cost per task when a burst of tasks is counted in full stream batches."""

    tasks: int
    wru: float
    invocations: float
    gb_seconds: float
    # Of `wru`, the quota give-backs: each of an owner's quota shard items written at most
    # once a batch, so it depends on how many shards the burst's task ids hash to.
    quota_wru: float = 0.0


ORCHESTRATION = (
    "DynamoDB writes",
    "DynamoDB reads",
    "SQS",
    "Lambda requests (worker)",
    "Lambda GB-s (worker, orchestration)",
    "Lambda requests + GB-s (counters)",
)
_S3_PUT_CLASS = {
    "PutObject",
    "CopyObject",
    "ListObjectsV2",
    "ListObjects",
    "ListParts",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
}


def _steps(meter: Meter) -> dict[int, str]:
    """Each write request's step: submit, claim, checkpoints, finish, or counters."""
    steps: dict[int, str] = {}
    worker_calls = sorted({w.call for w in meter.writes if w.role == "worker" and w.sk == "META"})
    for write in meter.writes:
        if write.role in ("api", "counters"):
            steps[write.call] = "submit" if write.role == "api" else "counters"
        elif write.call == worker_calls[0]:
            steps[write.call] = "claim"
        elif write.call == worker_calls[-1]:
            steps[write.call] = "finish"
        else:
            steps[write.call] = "checkpoints"
    return steps


def _item_kind(sk: str, pk: str) -> str:
    if pk.startswith(("STATS#", "TPUT#")):
        return "status counters"
    if pk.startswith("COUNTED#"):
        return "counted-batch markers"
    if pk.startswith("IDEMP#"):
        return "idempotency"
    return "task item"


def _gb_seconds(role: str, invocations: float, requests: Counter[str]) -> float:
    memory_gb = function_property(ROLE_FUNCTIONS[role], "MemorySize") / 1024
    billed_ms = math.ceil(invocations * INVOCATION_OVERHEAD_MS[role] + _latency(requests))
    return billed_ms / 1000 * memory_gb


ROLE_FUNCTIONS = {"api": "ApiFunction", "worker": "WorkerFunction", "counters": "CountersFunction"}


def measure(
    world: World,
    label: str,
    task_type: str,
    params: dict,
    chunks: int,
    tasks: int,
    load_tasks: int,
) -> TaskCost:
    """Submit and run `tasks` tasks one after another, each counted in a stream batch of its
    own (quiet), then `load_tasks` together counted in full batches (at load)."""
    meter = world.meter
    requests: dict[str, Counter[str]] = {
        "api": Counter(),
        "worker": Counter(),
        "counters": Counter(),
    }
    s3: Counter[str] = Counter()
    totals: defaultdict[str, float] = defaultdict(float)
    by_step: defaultdict[str, float] = defaultdict(float)
    by_item: defaultdict[str, float] = defaultdict(float)
    gb_s: defaultdict[str, float] = defaultdict(float)
    for _ in range(tasks):
        meter.clear()
        world.submit(task_type, params)
        invocations = world.drain()
        counted = world.count()
        for role in requests:
            requests[role].update(meter.requests(role))
        for key, count in meter.requests("task").items():
            if key.startswith("s3."):
                s3[key] += count
        totals["wru_table"] += meter.table_write_units()
        totals["wru_index"] += meter.index_write_units()
        totals["rru"] += meter.read_units()
        totals["invocations"] += invocations
        totals["counters_invocations"] += counted
        totals["sqs_ours"] += sum(c for k, c in meter.requests().items() if k.startswith("sqs."))
        steps = _steps(meter)
        for write in meter.writes:
            by_step[steps[write.call]] += (write.write_units or 0) + len(write.index_writes)
            by_item[_item_kind(write.sk, write.pk)] += write.write_units or 0
            by_item["index entries"] += len(write.index_writes)
        for role, calls in (("worker", invocations), ("api", 1), ("counters", counted)):
            gb_s[role] += _gb_seconds(role, calls, meter.requests(role))
        gb_s["worker_overhead"] += _gb_seconds("worker", invocations, Counter())
    n = float(tasks)
    return TaskCost(
        label=label,
        chunks=chunks,
        tasks=tasks,
        requests={role: Counter({k: v / n for k, v in c.items()}) for role, c in requests.items()},
        wru_table=totals["wru_table"] / n,
        wru_index=totals["wru_index"] / n,
        rru=totals["rru"] / n,
        wru_by_step={k: v / n for k, v in by_step.items()},
        wru_by_item={k: v / n for k, v in by_item.items()},
        worker_invocations=totals["invocations"] / n,
        counters_invocations=totals["counters_invocations"] / n,
        sqs_ours=totals["sqs_ours"] / n,
        gb_seconds={k: v / n for k, v in gb_s.items()},
        counters_at_load=_counted_in_batches(world, task_type, params, load_tasks, batch=None),
        counters_alone=_counted_in_batches(world, task_type, params, 1, batch=1),
        s3=Counter({k: v / n for k, v in s3.items()}),
    )


def _counted_in_batches(
    world: World, task_type: str, params: dict, tasks: int, batch: int | None
) -> LoadCounters:
    """The counters' cost per task for `tasks` run together, their stream read in batches of
    `batch` records (None: the mapping's BatchSize)."""
    for _ in range(tasks):
        world.submit(task_type, params)
    world.drain()
    world.meter.clear()
    invocations = world.count(batch)
    return LoadCounters(
        tasks=tasks,
        wru=world.meter.write_units("counters") / tasks,
        quota_wru=sum(
            w.write_units or 0
            for w in world.meter.writes
            if w.role == "counters" and w.pk.startswith("QUOTA#")
        )
        / tasks,
        invocations=invocations / tasks,
        gb_seconds=_gb_seconds("counters", invocations, world.meter.requests("counters")) / tasks,
    )


def _latency(requests: Counter[str]) -> float:
    return sum(REQUEST_LATENCY_MS.get(k, DEFAULT_LATENCY_MS) * n for k, n in requests.items())


def _csv(rows: int, columns: int = 5) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    lines = [header] + [
        ",".join(str((r * 7919 + c * 104729) % 100000 / 100) for c in range(columns))
        for r in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class CostResult:
    noop: list[TaskCost]
    data_processing: TaskCost

    def goal(self) -> TaskCost:
        return next(c for c in self.noop if c.chunks == GOAL_CHUNKS)

    def goal_met(self) -> bool:
        return self.goal().ratio() >= GOAL_RATIO

    def render(self) -> str:
        out = [
            "== cost: per task, in-process pipeline (moto); quiet = one task per worker "
            "invocation and per counters invocation ==",
            table(["price (us-east-1, " + PRICES_AS_OF + ")", "$"], price_table()),
            "",
        ]
        every = [*self.noop, self.data_processing]
        ops = sorted({(r, k) for c in every for r, cnt in c.requests.items() for k in cnt})
        out.append(
            table(
                ["role", "request", *[c.label for c in every]],
                [[r, k, *[c.requests[r].get(k, 0.0) for c in every]] for r, k in ops]
                + [
                    [
                        "all",
                        "total",
                        *[sum(sum(x.values()) for x in c.requests.values()) for c in every],
                    ],
                    ["esm", "sqs (modelled)", *[c.sqs_esm for c in every]],
                ]
                + [
                    ["task", k, *[c.s3.get(k, 0.0) for c in every]]
                    for k in sorted(self.data_processing.s3)
                ],
                title="AWS requests per task",
            )
        )
        out.append("")
        steps = ["submit", "claim", "checkpoints", "finish", "counters"]
        kinds = sorted({k for c in every for k in c.wru_by_item})
        out.append(
            table(
                ["units per task", *[c.label for c in every]],
                [
                    ["DynamoDB WRU, table", *[c.wru_table for c in every]],
                    ["DynamoDB WRU, indexes", *[c.wru_index for c in every]],
                    ["DynamoDB WRU, total", *[c.wru_table + c.wru_index for c in every]],
                    *[
                        [f"  WRU in {s}", *[c.wru_by_step.get(s, 0.0) for c in every]]
                        for s in steps
                    ],
                    *[
                        [f"  WRU on {k}", *[c.wru_by_item.get(k, 0.0) for c in every]]
                        for k in kinds
                    ],
                    [
                        "  WRU in counters, at load",
                        *[c.counters_at_load.wru for c in every],
                    ],
                    [
                        "  WRU in counters, a record per batch",
                        *[c.counters_alone.wru for c in every],
                    ],
                    ["DynamoDB RRU", *[c.rru for c in every]],
                    ["SQS requests (ours + ESM)", *[c.sqs_ours + c.sqs_esm for c in every]],
                    ["worker invocations", *[c.worker_invocations for c in every]],
                    ["worker GB-s (modelled)", *[c.gb_seconds["worker"] for c in every]],
                    ["API GB-s (modelled)", *[c.gb_seconds["api"] for c in every]],
                    ["counters invocations", *[c.counters_invocations for c in every]],
                    [
                        "counters invocations, at load",
                        *[c.counters_at_load.invocations for c in every],
                    ],
                    ["counters GB-s (modelled)", *[c.gb_seconds["counters"] for c in every]],
                    ["SFN state transitions", *[sfn_transitions(c.chunks) for c in every]],
                ],
                title="Units per task",
            )
        )
        out.append("")
        components = list(every[0].dollars())
        out.append(
            table(
                ["$ per million tasks", *[c.label for c in every]],
                [[k, *[f"{c.dollars()[k] * 1e6:,.2f}" for c in every]] for k in components]
                + [
                    ["ours: orchestration", *[f"{c.orchestration() * 1e6:,.2f}" for c in every]],
                    ["ours: all in", *[f"{sum(c.dollars().values()) * 1e6:,.2f}" for c in every]],
                    ["Step Functions Standard", *[f"{c.sfn() * 1e6:,.2f}" for c in every]],
                    ["SFN / ours (orchestration)", *[f"{c.ratio():.1f}x" for c in every]],
                    [
                        "ours: orchestration, at load",
                        *[f"{c.orchestration(at_load=True) * 1e6:,.2f}" for c in every],
                    ],
                    [
                        "SFN / ours, at load",
                        *[f"{c.ratio(at_load=True):.1f}x" for c in every],
                    ],
                    [
                        "SFN / ours, quiet, a stream record per batch",
                        *[f"{c.ratio_alone():.1f}x" for c in every],
                    ],
                ],
                title="Dollars per million tasks",
            )
        )
        goal = self.goal()
        verdict = "PASS" if self.goal_met() else "FAIL"
        out += [
            "",
            f"models: Lambda billed ms = {INVOCATION_OVERHEAD_MS} per invocation + per request "
            f"{REQUEST_LATENCY_MS} (else {DEFAULT_LATENCY_MS}); memory from template.yaml; "
            f"ESM = {ESM_REQUESTS_PER_BATCH} SQS requests per batch (of one quiet, of "
            f"{SQS_BATCH_AT_LOAD} at load); counters at load: {goal.counters_at_load.tasks} tasks "
            f"counted in stream batches of up to {stream_batch_size()}; SFN = 2N+3 "
            f"transitions + {SFN_RETRY_RATE:.0%} retries of the N+2 Lambda task states, "
            "+ one Lambda request per task state.",
            f"goal: orchestration >= {GOAL_RATIO:.0f}x below Step Functions Standard for "
            f"{GOAL_CHUNKS}-chunk tasks, quiet (a task per batch): {goal.ratio():.1f}x "
            f"-> {verdict}; at load {goal.ratio(at_load=True):.1f}x; worst case, every "
            f"stream record in a batch of its own: {goal.ratio_alone():.1f}x",
        ]
        return "\n".join(out)


def run(size: str = "small") -> CostResult:
    tasks = 1 if size == "small" else 3
    load = LOAD_TASKS[size]
    with in_process_world() as world:
        noop = [
            measure(
                world,
                f"{n} chunk{'s' if n > 1 else ''}",
                "BENCH_NOOP",
                {"chunks": n},
                n,
                tasks,
                load if n < 100 else load // 4,
            )
            for n in (1, 10, 100)
        ]
        # DATA_PROCESSING over an uploaded CSV of about 10 chunks of 64 KiB.
        key = f"uploads/{OWNER}/bench.csv"
        body = _csv(rows=14_000 if size == "full" else 5_000)
        world.s3.put_object(Bucket=world.env["DATA_BUCKET"], Key=key, Body=body)
        params = {"input_key": key, "chunk_bytes": 64 * 1024}
        chunks = math.ceil(len(body) / (64 * 1024))  # one chunk per 64 KiB range
        data = measure(
            world,
            f"DATA_PROCESSING, {chunks} chunks",
            "DATA_PROCESSING",
            params,
            chunks,
            tasks,
            load // 4,
        )
        # claim, one checkpoint per chunk but the last (one invocation), finish
        measured = round(data.requests["worker"].get("dynamodb.UpdateItem", 0)) - 2 + 1
        assert measured == chunks, f"DATA_PROCESSING ran {measured} chunks, expected {chunks}"
    return CostResult(noop, data)


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
