"""Benchmark 4, cold start: how long importing each handler module takes in a fresh
interpreter, beside ``import boto3`` measured in the same run (runs interleaved, median).

Each run is a new ``python`` process that times only the import (interpreter start-up is
excluded), with the function's environment as Lambda sets it (names from template.yaml) and
``AWS_LAMBDA_FUNCTION_NAME`` set, so Powertools behaves as on Lambda (the Tracer is active,
as ``Tracing: Active`` makes it). ``-X importtime`` of the API handler names what is slow.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

from bench import LAYER, ROOT
from bench.report import table

GOAL_RATIO = 1.5
HANDLERS = ("api", "worker", "dlq")
# The API handler again with POWERTOOLS_TRACE_DISABLED: what the active X-Ray tracer costs.
NO_TRACER = "api, tracer off"
ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "bench-cold-start",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
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


def _program(target: str) -> str:
    target = "api" if target == NO_TRACER else target
    if target == "boto3":
        body = "import boto3"
    else:
        code_dir = ROOT / "functions" / target
        body = (
            "import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('app', {str(code_dir / 'app.py')!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "sys.modules['app'] = module\n"
            "spec.loader.exec_module(module)"
        )
    paths = [str(LAYER)] if target == "boto3" else [str(LAYER), str(ROOT / "functions" / target)]
    return (
        "import sys, time\n"
        f"sys.path[:0] = {paths!r}\n"
        "started = time.perf_counter()\n"
        f"{body}\n"
        "print(time.perf_counter() - started)\n"
    )


def _env(target: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(ENVIRONMENT)
    if target == NO_TRACER:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def import_seconds(target: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _program(target)],
        capture_output=True,
        text=True,
        env=_env(target),
        cwd=ROOT,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def import_profile(target: str, top: int = 12) -> list[tuple[str, float, float]]:
    """(root package, self ms, cumulative ms of its top-level imports) from -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _program(target)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=True,
    )
    self_us: Counter[str] = Counter()
    cumulative_us: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_part, cumulative, name = line.removeprefix("import time:").split("|")
        root = name.strip().split(".")[0]
        self_us[root] += int(self_part)
        # The outermost import of a package holds the time of everything it pulled in.
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth <= 1 and cumulative_us[root] == 0:
            cumulative_us[root] = int(cumulative)
    ranked = sorted(self_us, key=lambda r: -self_us[r])[:top]
    return [(r, self_us[r] / 1000, cumulative_us[r] / 1000) for r in ranked]


@dataclass
class ColdStartResult:
    runs: int
    seconds: dict[str, list[float]]
    profile: list[tuple[str, float, float]]

    def median_ms(self, target: str) -> float:
        return statistics.median(self.seconds[target]) * 1000

    def ratio(self, target: str) -> float:
        return self.median_ms(target) / self.median_ms("boto3")

    def goal_met(self) -> bool:
        return self.ratio("api") <= GOAL_RATIO

    def render(self) -> str:
        rows = [
            [
                name,
                f"{self.median_ms(name):.0f}",
                f"{min(self.seconds[name]) * 1000:.0f}",
                f"{max(self.seconds[name]) * 1000:.0f}",
                f"{self.ratio(name):.2f}x",
            ]
            for name in ("boto3", *HANDLERS, NO_TRACER)
        ]
        verdict = "PASS" if self.goal_met() else "FAIL"
        return "\n".join(
            [
                f"== coldstart: import time in fresh interpreters, median of {self.runs} "
                "interleaved runs ==",
                table(["module", "median ms", "min ms", "max ms", "vs boto3"], rows),
                "",
                table(
                    ["package (API handler)", "own modules ms"],
                    [[r, f"{s:.1f}"] for r, s, _ in self.profile],
                    title="where the API handler's import time goes (-X importtime, one run)",
                ),
                "",
                f"goal: API handler <= {GOAL_RATIO}x a bare `import boto3`: "
                f"{self.ratio('api'):.2f}x -> {verdict}",
            ]
        )


def run(size: str = "small") -> ColdStartResult:
    runs = 7 if size == "small" else 15
    seconds: dict[str, list[float]] = {name: [] for name in ("boto3", *HANDLERS, NO_TRACER)}
    for _ in range(runs):
        for name in seconds:
            seconds[name].append(import_seconds(name))
    return ColdStartResult(runs, seconds, import_profile("api"))


def main(size: str) -> bool:
    result = run(size)
    print(result.render())
    return result.goal_met()
