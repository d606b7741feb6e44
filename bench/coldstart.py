"""Benchmark 4, cold start: how long a fresh interpreter takes to import each handler module,
and to import the API handler and answer its first request, beside ``import boto3`` (and
``import boto3`` plus the same AWS call) measured in the same run (runs interleaved, in a new
order each round; medians).

Each run is a new ``python`` process that times only its own work (interpreter start-up is
excluded), with the function's environment as Lambda sets it with ``Tracing: Active`` (names
from template.yaml, ``LAMBDA_TASK_ROOT`` and a trace header), so Powertools behaves as on
Lambda. The first request is ``events/api_get_task.json``: the handler creates its DynamoDB
client and makes its one Query, which botocore serializes, signs and parses as usual; only
the network is left out (a ``before-send`` hook answers with a stored task). Work merely
moved from the import to the first request therefore shows in the second figure.
``-X importtime`` of the API handler names what is slow.

Two more comparisons place the figure. The stack alone, step by step: boto3 and pydantic, then
Powertools' logger and metrics (what every function of this design imports), then Powertools'
API resolver with validation; the resolver's share is what "without it" takes off the API
handler's figure. And bytecode: on Lambda the layer is read-only, so modules without
precompiled bytecode are compiled at every cold start. The API function is copied as Lambda
gets it (the distributions its first request loads, ``taskqueue``, ``functions/api``) without
bytecode, as ``sam build`` leaves the layer, and compiled as ``make build`` compiles it; the
runtime's boto3, the baseline, has its bytecode.

Each figure is the process's CPU time (``time.process_time``), beside its wall-clock time: a
cold start is CPU-bound work (the files come from the page cache), and on a shared machine CPU
time stays within a few percent from run to run where wall-clock time, paused whenever
another process runs, varies by a factor of two or more.

Every measured interpreter runs with ``PYTHONDONTWRITEBYTECODE=1`` (a run never changes what the
next one finds); the repository's own modules are compiled first, as the installed packages are.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from bench import LAYER, ROOT
from bench.report import table
from deploy.build import BYTECODE_OPTIONS
from devstack.runtime import FAKE_AWS_ENV
from taskqueue.models import Task, TaskStatus
from taskqueue.store.items import TaskItem, serialize

GOAL_RATIO = 1.5
HANDLERS = ("api", "worker", "dlq")
# Import, then answer the first request: the API handler, and boto3 making the same call.
FIRST_CALL = "boto3 + first call"
FIRST_REQUEST = "api + first request"
# The stack alone, step by step (each step imports the ones before): what any API on boto3,
# pydantic and Powertools pays before a line of its own.
PYDANTIC = "boto3 + pydantic"
POWERTOOLS = "+ Powertools logger, metrics"
RESOLVER = "+ Powertools API resolver"
STACK_STEPS = {
    PYDANTIC: "import boto3\nfrom pydantic import BaseModel, Field",
    POWERTOOLS: "from aws_lambda_powertools import Logger, Metrics\n"
    'Logger(service="taskqueue")\nMetrics(namespace="TaskQueue", service="taskqueue")',
    RESOLVER: "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\n"
    "APIGatewayHttpResolver(enable_validation=True)",
}
# The API function as deployed, import + first request: the layer without bytecode (as
# `sam build` leaves it), and compiled as `make build` compiles it (same options).
AS_BUILT = "layer without bytecode"
COMPILED = "layer with bytecode"
TARGETS = ("boto3", *HANDLERS, FIRST_CALL, FIRST_REQUEST, *STACK_STEPS)
ENVIRONMENT = {
    **FAKE_AWS_ENV,
    "AWS_LAMBDA_FUNCTION_NAME": "bench-cold-start",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "LAMBDA_TASK_ROOT": str(ROOT),
    "_X_AMZN_TRACE_ID": "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
    "POWERTOOLS_SERVICE_NAME": "taskqueue",
    "POWERTOOLS_METRICS_NAMESPACE": "TaskQueue",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
    "LOG_LEVEL": "INFO",
    "TABLE_NAME": "tasks",
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/tasks",
    "HIGH_PRIORITY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/high",
    "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "HIGH_PRIORITY_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/high-dlq",
    "DATA_BUCKET": "data",
    "SHARD_COUNT": "32",
    "RETENTION_DAYS": "30",
    "EMAIL_SENDER": "noreply@example.com",
    "CORS_ALLOW_ORIGIN": "*",
}
OWNER = "user-123"  # the JWT subject of events/api_get_task.json
TASK_ID = "0123456789abcdef0123456789abcdef"

# Both first-request programs answer DynamoDB's Query with the stored task (no network).
_ANSWER_QUERY = """\
import boto3
from botocore.awsrequest import AWSResponse

class _Body:
    def stream(self, **kwargs):
        yield QUERY_ANSWER

def _answer(request, **kwargs):
    return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, _Body())

boto3.setup_default_session()
boto3.DEFAULT_SESSION.events.register("before-send.dynamodb.Query", _answer)
"""
# What a bare boto3 function would do for the same request: one client, the same Query.
_BARE_CALL = f"""\
boto3.client("dynamodb").query(
    TableName="tasks",
    KeyConditionExpression="pk = :pk",
    ExpressionAttributeValues={{":pk": {{"S": "TASK#{TASK_ID}"}}}},
    ScanIndexForward=False,
    Limit=51,
    ConsistentRead=True,
)
"""
_HANDLER_CALL = """\
from types import SimpleNamespace

context = SimpleNamespace(
    function_name="bench-cold-start",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:bench-cold-start",
    aws_request_id="bench",
)
answer = module.lambda_handler(EVENT, context)
if answer["statusCode"] != 200:
    raise SystemExit(f"first request failed: {answer}")
"""


def query_answer() -> bytes:
    """DynamoDB's answer to the task's Query: the stored task, RUNNING, with two log lines."""
    created = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    task = Task(
        task_id=TASK_ID,
        owner=OWNER,
        task_type="DATA_PROCESSING",
        params={"rows": 100_000, "chunk_rows": 10_000},
        status=TaskStatus.RUNNING,
        progress=40,
        units_done=40_000,
        units_total=100_000,
        attempts=1,
        created_at=created,
        updated_at=created + timedelta(seconds=20),
    )
    shard_count = int(ENVIRONMENT["SHARD_COUNT"])
    item = TaskItem.new(task, shard_count, status=task.status, log=[]).dynamodb()
    item |= serialize(
        {
            "started_at": "2026-11-24T08:00:01.000000Z",
            "log": [
                {"time": "2026-11-24T08:00:00.000000Z", "level": "INFO", "message": "submitted"},
                {"time": "2026-11-24T08:00:01.000000Z", "level": "INFO", "message": "started"},
            ],
        }
    )
    return json.dumps({"Items": [item], "Count": 1, "ScannedCount": 1}).encode()


def _program(target: str, deployed: Path | None = None) -> str:
    """A script that prints its import seconds and its total seconds. With `deployed` (a copy
    made by `deployed_copy`), the API function runs from that copy instead of the repository."""
    if target in ("boto3", FIRST_CALL):
        paths = [str(LAYER)]
        body = "import boto3"
    elif target in STACK_STEPS:
        paths = [str(LAYER)]
        steps = list(STACK_STEPS)
        body = "\n".join(STACK_STEPS[step] for step in steps[: steps.index(target) + 1])
    else:
        function = "api" if target in (FIRST_REQUEST, AS_BUILT, COMPILED) else target
        root = deployed or ROOT
        code_dir = root / "functions" / function
        paths = [str(root / "layers" / "core"), str(code_dir)]
        if deployed:
            paths.insert(0, str(deployed / "python"))
        body = (
            "import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('app', {str(code_dir / 'app.py')!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['app'] = module\n"
            "spec.loader.exec_module(module)"
        )
    request = ""
    if target in (FIRST_CALL, FIRST_REQUEST, AS_BUILT, COMPILED):
        event = json.loads((ROOT / "events" / "api_get_task.json").read_text())
        request = (
            f"QUERY_ANSWER = {query_answer()!r}\n"
            f"EVENT = {event!r}\n"
            + _ANSWER_QUERY
            + (_BARE_CALL if target == FIRST_CALL else _HANDLER_CALL)
        )
    return (
        "import sys, time\n"
        f"sys.path[:0] = {paths!r}\n"
        "started, started_cpu = time.perf_counter(), time.process_time()\n"
        f"{body}\n"
        "imported, imported_cpu = time.perf_counter(), time.process_time()\n"
        f"{request}\n"
        "print(imported_cpu - started_cpu, time.process_time() - started_cpu,\n"
        "      imported - started, time.perf_counter() - started)\n"
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(ENVIRONMENT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def compile_bytecode(*paths: Path, options: tuple[str, ...] = ("-q",)) -> None:
    subprocess.run([sys.executable, "-m", "compileall", *options, *map(str, paths)], check=True)


def deployed_copy(into: Path) -> Path:
    """The API function as Lambda gets it, without bytecode: the installed distributions its
    first request loads (into ``python/``, the layer's directory), ``taskqueue`` and the
    function's code."""
    loaded = loaded_modules(FIRST_REQUEST) - loaded_modules("")
    by_module = importlib.metadata.packages_distributions()
    names = sorted({d for module in loaded for d in by_module.get(module.split(".")[0], ())})
    for name in names:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            if "__pycache__" in file.parts or file.suffix == ".pyc" or file.parts[0] == "..":
                continue
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                (into / "python" / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into / "python" / file)
    for part in ("layers/core/taskqueue", "functions/api"):
        shutil.copytree(ROOT / part, into / part, ignore=shutil.ignore_patterns("__pycache__"))
    return into


class Sample(NamedTuple):
    """One fresh interpreter's seconds: importing, then importing and the first request."""

    import_cpu: float
    total_cpu: float
    import_wall: float
    total_wall: float


def run_seconds(target: str, deployed: Path | None = None) -> Sample:
    """The seconds of one fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _program(target, deployed)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=True,
    )
    return Sample(*map(float, done.stdout.strip().splitlines()[-1].split()))


def loaded_modules(target: str) -> set[str]:
    """The modules a fresh interpreter holds once the target is done: what its cold start paid
    ("" for an interpreter that does nothing)."""
    program = _program(target) if target else "import sys\n"
    done = subprocess.run(
        [sys.executable, "-c", program + "print(' '.join(sys.modules))\n"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=True,
    )
    return set(done.stdout.strip().splitlines()[-1].split())


def import_profile(target: str) -> dict[str, float]:
    """Milliseconds spent in each root package's own modules, from one ``-X importtime`` run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _program(target)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=True,
    )
    self_us: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_part, _, name = line.removeprefix("import time:").split("|")
        self_us[name.strip().split(".")[0]] += int(self_part)
    return {root: us / 1000 for root, us in self_us.items()}


@dataclass
class ColdStartResult:
    runs: int
    samples: dict[str, list[Sample]]  # per target, one per run
    profiles: dict[str, dict[str, float]]  # own-module ms per package, per target
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def values_ms(self, target: str, of: str = "import", clock: str = "cpu") -> list[float]:
        return [getattr(s, f"{of}_{clock}") * 1000 for s in self.samples[target]]

    def median_ms(self, target: str, of: str = "import", clock: str = "cpu") -> float:
        return statistics.median(self.values_ms(target, of, clock))

    def ratio(self, clock: str = "cpu") -> float:
        """The goal's figure: importing the API handler, against a bare ``import boto3``."""
        return self.median_ms("api", clock=clock) / self.median_ms("boto3", clock=clock)

    def first_request_ratio(self, clock: str = "cpu") -> float:
        return self.median_ms(FIRST_REQUEST, "total", clock) / self.median_ms(
            FIRST_CALL, "total", clock
        )

    def goal_met(self) -> bool:
        return self.ratio() <= GOAL_RATIO

    def step_ms(self, step: str) -> float:
        """What one step of the stack adds to the import of the steps before it."""
        steps = ["boto3", *STACK_STEPS]
        return self.median_ms(step) - self.median_ms(steps[steps.index(step) - 1])

    def own_ms(self) -> float:
        """The API handler's import beyond the whole stack's: its own code."""
        return self.median_ms("api") - self.median_ms(RESOLVER)

    def ratio_without(self, *steps: str) -> float:
        """The goal's figure with these steps' own imports taken off the API handler's."""
        taken = sum(self.step_ms(step) for step in steps)
        return (self.median_ms("api") - taken) / self.median_ms("boto3")

    def render(self) -> str:
        def row(name: str, base: str, of: str) -> list[str]:
            """CPU median, min, max and ratio; wall-clock median and ratio."""
            cpu = self.values_ms(name, of)
            return [
                name,
                f"{statistics.median(cpu):.0f}",
                f"{min(cpu):.0f}",
                f"{max(cpu):.0f}",
                f"{statistics.median(cpu) / self.median_ms(base, of):.2f}x",
                f"{self.median_ms(name, of, 'wall'):.0f}",
                f"{self.median_ms(name, of, 'wall') / self.median_ms(base, of, 'wall'):.2f}x",
            ]

        columns = ["median ms", "min ms", "max ms", "vs boto3", "wall ms", "wall vs boto3"]
        imports = [row(name, "boto3", "import") for name in ("boto3", *HANDLERS, *STACK_STEPS)]
        first = [
            row(name, FIRST_CALL, "total")
            for name in (FIRST_CALL, FIRST_REQUEST, AS_BUILT, COMPILED)
            if name in self.samples
        ]
        import_only, with_request = self.profiles["api"], self.profiles[FIRST_REQUEST]
        packages = sorted(with_request, key=lambda p: -with_request[p])[:12]
        verdict = "PASS" if self.goal_met() else "FAIL"
        load = ", ".join(f"{value:.1f}" for value in self.load)
        return "\n".join(
            [
                f"== coldstart: fresh interpreters, median of {self.runs} interleaved runs; "
                f"CPU time, wall clock beside it (load average {load}) ==",
                table(["import", *columns], imports),
                "",
                table(
                    ["import + first request", *columns],
                    first,
                    title="GET /tasks/{id} (events/api_get_task.json): the client, one Query, "
                    "the answer; boto3 makes the same Query; the last rows run the API "
                    "function from a copy as deployed",
                ),
                "",
                table(
                    ["package (API handler)", "import ms", "import + first request ms"],
                    [
                        [p, f"{import_only.get(p, 0.0):.1f}", f"{with_request[p]:.1f}"]
                        for p in packages
                    ],
                    title="where the time goes (-X importtime, own modules per package, one run)",
                ),
                "",
                f"import + first request: {self.first_request_ratio():.2f}x boto3 making the "
                f"same call (wall clock {self.first_request_ratio('wall'):.2f}x)",
                "the stack's steps: "
                + ", ".join(
                    f"{step.removeprefix('+ ').removeprefix('boto3 + ')} +{self.step_ms(step):.0f} ms "
                    f"({self.step_ms(step) / self.median_ms('boto3'):.2f}x)"
                    for step in STACK_STEPS
                )
                + f"; the API handler's own code on top: +{self.own_ms():.0f} ms "
                f"({self.own_ms() / self.median_ms('boto3'):.2f}x)",
                "the API handler's import without Powertools' API resolver: "
                f"{self.ratio_without(RESOLVER):.2f}x; without pydantic's and the resolver's: "
                f"{self.ratio_without(PYDANTIC, RESOLVER):.2f}x",
                f"goal: API handler import <= {GOAL_RATIO}x a bare `import boto3`: "
                f"{self.ratio():.2f}x (wall clock {self.ratio('wall'):.2f}x) -> {verdict}",
            ]
        )


def run(size: str = "small", deployed: bool = True) -> ColdStartResult:
    """`deployed`: also time the API function from copies as deployed, with and without
    bytecode (a 50 MB copy; the tests leave it out)."""
    runs = 7 if size == "small" else 15
    compile_bytecode(LAYER, ROOT / "functions")
    with tempfile.TemporaryDirectory(prefix="coldstart-") as scratch:
        copies: dict[str, Path | None] = {name: None for name in TARGETS}
        if deployed:
            built = deployed_copy(Path(scratch) / "built")
            compiled = Path(shutil.copytree(built, Path(scratch) / "compiled"))
            compile_bytecode(compiled, options=BYTECODE_OPTIONS)
            copies |= {AS_BUILT: built, COMPILED: compiled}
        samples: dict[str, list[Sample]] = {name: [] for name in copies}
        for round_number in range(runs):
            # A new order each round: no target always follows the slow one without bytecode.
            order = list(copies.items())
            random.Random(round_number).shuffle(order)
            for name, copy in order:
                samples[name].append(run_seconds(name, copy))
    profiles = {target: import_profile(target) for target in ("api", FIRST_REQUEST)}
    return ColdStartResult(runs, samples, profiles)


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
