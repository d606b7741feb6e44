"""The in-process pipeline the counting benchmarks drive: moto, template resources, the
API and worker handlers, and a meter on every client they use.

The handlers get their own boto3 client per role (dependency injection, as the code allows)
so requests are attributed to the API, the worker or the task type's own code.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any

import boto3

from bench.meter import Meter
from bench.tasktypes import BENCH_TYPES
from devstack.harness import (
    Pipeline,
    StreamDrain,
    call_api,
    http_event,
    load_function,
    reset_caches,
    restored_environment,
    stream_source,
    template_resources,
    transformed_template,
)
from devstack.moto_patches import partition_queries, temporarily, undo_log_transactions
from devstack.moto_sesv2 import bulk_email
from devstack.resources import LocalResources
from devstack.sim_time import SimulatedTime, drain_in_time, simulated_time
from devstack.stack import handler_environment
from taskqueue import wiring
from taskqueue.store.items import task_key
from taskqueue.task_types import REGISTRY
from taskqueue.task_types.email import Email, SesPacer

REGION = "us-east-1"
OWNER = "bench-user"
QUIET_ENV = {
    # Outside Lambda: no X-Ray daemon; handler logs at WARNING only. Metrics stay enabled
    # (disabled, Powertools keeps them and prints every 100th value anyway); their EMF
    # lines are swallowed by `quiet`.
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "LOG_LEVEL": "WARNING",
}
# Per-owner quotas as deployed (on by default), the bench owner's limits out of the way: what
# a busy owner's raised quota costs (docs/benchmarks.md, "Quotas"). BENCH_QUOTAS=off: off.
QUOTAS_ON_ENV = {
    "QUOTA_ACTIVE_TASKS": "10000000",
    "QUOTA_SUBMITS_PER_MINUTE": "10000000",
}
QUOTAS_OFF_ENV = {"QUOTAS_ENABLED": "off"}


def quotas_env() -> dict[str, str]:
    """The environment of BENCH_QUOTAS: "off", or the template's default (on)."""
    return QUOTAS_OFF_ENV if os.environ.get("BENCH_QUOTAS") == "off" else QUOTAS_ON_ENV


def stream_batch_size() -> int:
    """BatchSize of the counters' stream mapping in template.yaml."""
    return int(stream_source("CountersFunction").batch_size)


def function_property(logical_id: str, name: str) -> Any:
    """A property of a function in the transformed template (Globals applied)."""
    return transformed_template()["Resources"][logical_id]["Properties"].get(name)


@dataclass
class World:
    resources: LocalResources
    env: dict[str, str]
    api: Any
    worker: Any
    meter: Meter
    sqs: Any  # unmetered: the event source mapping's client
    s3: Any  # unmetered: for test data
    dynamodb: Any  # unmetered: for loading tables and reading back
    sesv2: Any  # unmetered: the sender's identity
    counters: StreamDrain  # the table's stream through the counters handler (unmetered reads)

    @property
    def table(self) -> str:
        return self.env["TABLE_NAME"]

    def pipeline(self, batch_size: int = 10) -> Pipeline:
        queues = ["HIGH_PRIORITY_QUEUE_URL", "QUEUE_URL", "PARTS_QUEUE_URL"]
        return Pipeline(self.sqs, [self.env[name] for name in queues], batch_size=batch_size)

    def drain(self, max_invocations: int = 100_000) -> int:
        """Invoke the worker until the task queues are empty; returns the invocations."""
        with redirect_stdout(io.StringIO()):
            return self.pipeline().run(max_invocations=max_invocations)

    def count(self, batch_size: int | None = None) -> int:
        """Feed the table's stream to the counters handler in batches, as its event source
        mapping would (default: the mapping's BatchSize); returns the invocations."""
        before = self.counters.invocations
        with redirect_stdout(io.StringIO()):
            self.counters.drain(batch_size)
        return self.counters.invocations - before

    def drain_in_time(self, sim: SimulatedTime) -> int:
        """Invoke the worker until the task queues are empty, delayed messages included,
        simulated time moving on while only those are left; returns the invocations. A
        message an invocation, as the parts' mapping reads them (BatchSize 1) and a quiet
        queue delivers them."""
        with redirect_stdout(io.StringIO()):
            return drain_in_time(self.pipeline(batch_size=1), sim)

    @contextmanager
    def simulated_time(self) -> Iterator[SimulatedTime]:
        """The engine, the stores and moto's SQS on simulated time, and EMAIL paced on it
        (its timetable and hand-overs exact; the account's rate out of the way: one process
        here stands for every worker, whose shares the pacer would add up in it)."""
        bulk_email()  # moto's SES v2 lacks SendBulkEmail (devstack.moto_sesv2)
        engine, service = wiring.engine(), wiring.service()
        registry = engine.registry
        sender = wiring.settings().email_sender
        if sender not in {
            i["IdentityName"] for i in self.sesv2.list_email_identities()["EmailIdentities"]
        }:
            self.sesv2.create_email_identity(EmailIdentity=sender)
        with simulated_time(engine, [engine.store, service.store]) as sim:
            email = Email(
                sleep=sim.sleep,
                clock=sim.now,
                pacer=SesPacer(clock=sim.seconds, account_rate=math.inf),
            )
            engine.registry = service.registry = {**registry, email.name: email}
            try:
                yield sim
            finally:
                engine.registry = service.registry = registry

    def status(self, task_id: str) -> str:
        """A task's status, read with the unmetered client."""
        item = self.dynamodb.get_item(TableName=self.table, Key=task_key(task_id))["Item"]
        return str(item["status"]["S"])

    def submit(self, task_type: str, params: dict[str, Any], owner: str = OWNER) -> str:
        """POST /tasks through the API handler, as API Gateway would call it."""
        event = http_event("POST", "/tasks", body={"type": task_type, "params": params}, sub=owner)
        with redirect_stdout(io.StringIO()):
            response = call_api(event)
        if response.status != 201:
            raise RuntimeError(f"submit failed: {response.status} {response.body}")
        return str(response.body["id"])


def no_transaction_backups() -> AbstractContextManager[None]:
    """moto without its whole-table copy per transaction (an undo log of the touched items
    instead, same semantics): a load of a few thousand tasks would otherwise take hours."""
    return temporarily(undo_log_transactions)


def fast_moto_queries() -> AbstractContextManager[None]:
    """moto handing a Query only its partition's items instead of sorting the whole table
    (same answers): seconds per Query at 10,000 items otherwise."""
    return temporarily(partition_queries)


@contextmanager
def in_process_world(measure_sizes: bool = True) -> Iterator[World]:
    """moto in-process with the template's resources and metered API and worker handlers."""
    template = transformed_template()
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    with restored_environment(), template_resources(template) as resources:
        env = {
            **handler_environment(template, resources, ["ApiFunction", "WorkerFunction"]),
            **QUIET_ENV,
            **quotas_env(),
        }
        os.environ.update(env)
        reset_caches()
        api = load_function("api")
        worker = load_function("worker")
        registry = {**REGISTRY, **BENCH_TYPES}
        service, engine, counter = wiring.service(), wiring.engine(), wiring.stream_counter()
        service.registry = registry
        engine.registry = registry
        # One client per role, so each request is attributed to who made it.
        service.store.table.client = boto3.client("dynamodb")
        service.dispatcher.client = boto3.client("sqs")
        engine.store.table.client = boto3.client("dynamodb")
        engine.dispatcher.client = boto3.client("sqs")
        counter.store.table.client = boto3.client("dynamodb")
        meter = Meter(
            image_client=boto3.client("dynamodb") if measure_sizes else None,
            table_name=env["TABLE_NAME"],
        )
        from taskqueue.aws import client as shared_client

        meter.attach_all(
            [
                (service.store.table.client, "api"),
                (service.dispatcher.client, "api"),
                (engine.store.table.client, "worker"),
                (engine.dispatcher.client, "worker"),
                (counter.store.table.client, "counters"),
                # what task types reach through TaskContext (S3, SES)
                (shared_client("s3"), "task"),
                (shared_client("sesv2"), "task"),
            ]
        )
        yield World(
            resources=resources,
            env=env,
            api=api,
            worker=worker,
            meter=meter,
            sqs=boto3.client("sqs"),
            s3=boto3.client("s3"),
            dynamodb=boto3.client("dynamodb"),
            sesv2=boto3.client("sesv2"),
            counters=StreamDrain.of(env["TABLE_NAME"]),
        )
