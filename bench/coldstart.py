"""Benchmark 4, cold start: how long a fresh interpreter takes to import each handler module,
and to import the API handler and answer its first request, beside ``import boto3`` (and
``import boto3`` plus the same AWS call) measured in the same run (runs interleaved, median).

Each run is a new ``python`` process that times only its own work (interpreter start-up is
excluded), with the function's environment as Lambda sets it with ``Tracing: Active`` (names
from template.yaml, ``LAMBDA_TASK_ROOT`` and a trace header), so Powertools behaves as on
Lambda. The first request is ``events/api_get_task.json``: the handler creates its DynamoDB
client and makes its one Query, which botocore serializes, signs and parses as usual; only
the network is left out (a ``before-send`` hook answers with a stored task). Work merely
moved from the import to the first request therefore shows in the second figure.
``-X importtime`` of the API handler names what is slow.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench import LAYER, ROOT
from bench.report import table
from devstack.runtime import FAKE_AWS_ENV
from taskqueue.models import Task, TaskStatus
from taskqueue.store.items import TaskItem, serialize

GOAL_RATIO = 1.5
HANDLERS = ("api", "worker", "dlq")
# Import, then answer the first request: the API handler, and boto3 making the same call.
FIRST_CALL = "boto3 + first call"
FIRST_REQUEST = "api + first request"
TARGETS = ("boto3", *HANDLERS, FIRST_CALL, FIRST_REQUEST)
ENVIRONMENT = {
    **FAKE_AWS_ENV,
    "AWS_LAMBDA_FUNCTION_NAME": "bench-cold-start",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "LAMBDA_TASK_ROOT": str(ROOT),
    "_X_AMZN_TRACE_ID": "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
    "POWERTOOLS_SERVICE_NAME": "taskqueue",
    "POWERTOOLS_METRICS_NAMESPACE": "TaskQueue",
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


def _program(target: str) -> str:
    """A script that prints its import seconds and its total seconds."""
    if target in ("boto3", FIRST_CALL):
        paths = [str(LAYER)]
        body = "import boto3"
    else:
        function = "api" if target == FIRST_REQUEST else target
        code_dir = ROOT / "functions" / function
        paths = [str(LAYER), str(code_dir)]
        body = (
            "import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('app', {str(code_dir / 'app.py')!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['app'] = module\n"
            "spec.loader.exec_module(module)"
        )
    request = ""
    if target in (FIRST_CALL, FIRST_REQUEST):
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
        "started = time.perf_counter()\n"
        f"{body}\n"
        "imported = time.perf_counter()\n"
        f"{request}\n"
        "print(imported - started, time.perf_counter() - started)\n"
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(ENVIRONMENT)
    return env


def run_seconds(target: str) -> tuple[float, float]:
    """(import seconds, total seconds) of one fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _program(target)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=True,
    )
    imported, total = done.stdout.strip().splitlines()[-1].split()
    return float(imported), float(total)


def loaded_modules(target: str) -> set[str]:
    """The modules a fresh interpreter holds once the target is done: what its cold start paid."""
    done = subprocess.run(
        [sys.executable, "-c", _program(target) + "print(' '.join(sys.modules))\n"],
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
    imports: dict[str, list[float]]  # seconds to import, per target
    totals: dict[str, list[float]]  # seconds to import and answer the first request
    profiles: dict[str, dict[str, float]]  # own-module ms per package, per target

    def median_ms(self, target: str, of: str = "import") -> float:
        return statistics.median((self.imports if of == "import" else self.totals)[target]) * 1000

    def ratio(self) -> float:
        """The goal's figure: importing the API handler, against a bare ``import boto3``."""
        return self.median_ms("api") / self.median_ms("boto3")

    def first_request_ratio(self) -> float:
        return self.median_ms(FIRST_REQUEST, "total") / self.median_ms(FIRST_CALL, "total")

    def goal_met(self) -> bool:
        return self.ratio() <= GOAL_RATIO

    def render(self) -> str:
        imports = [
            [
                name,
                f"{self.median_ms(name):.0f}",
                f"{min(self.imports[name]) * 1000:.0f}",
                f"{max(self.imports[name]) * 1000:.0f}",
                f"{self.median_ms(name) / self.median_ms('boto3'):.2f}x",
            ]
            for name in ("boto3", *HANDLERS)
        ]
        first = [
            [
                name,
                f"{self.median_ms(name):.0f}",
                f"{self.median_ms(name, 'total') - self.median_ms(name):.0f}",
                f"{self.median_ms(name, 'total'):.0f}",
                f"{self.median_ms(name, 'total') / self.median_ms(FIRST_CALL, 'total'):.2f}x",
            ]
            for name in (FIRST_CALL, FIRST_REQUEST)
        ]
        import_only, with_request = self.profiles["api"], self.profiles[FIRST_REQUEST]
        packages = sorted(with_request, key=lambda p: -with_request[p])[:12]
        verdict = "PASS" if self.goal_met() else "FAIL"
        return "\n".join(
            [
                f"== coldstart: fresh interpreters, median of {self.runs} interleaved runs ==",
                table(["import", "median ms", "min ms", "max ms", "vs boto3"], imports),
                "",
                table(
                    ["import + first request", "import ms", "+ request ms", "total ms", "vs boto3"],
                    first,
                    title="GET /tasks/{id} (events/api_get_task.json): the client, one Query, "
                    "the answer; boto3 makes the same Query",
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
                "same call",
                f"goal: API handler import <= {GOAL_RATIO}x a bare `import boto3`: "
                f"{self.ratio():.2f}x -> {verdict}",
            ]
        )


def run(size: str = "small") -> ColdStartResult:
    runs = 7 if size == "small" else 15
    imports: dict[str, list[float]] = {name: [] for name in TARGETS}
    totals: dict[str, list[float]] = {name: [] for name in TARGETS}
    for _ in range(runs):
        for name in TARGETS:
            imported, total = run_seconds(name)
            imports[name].append(imported)
            totals[name].append(total)
    profiles = {target: import_profile(target) for target in ("api", FIRST_REQUEST)}
    return ColdStartResult(runs, imports, totals, profiles)


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
