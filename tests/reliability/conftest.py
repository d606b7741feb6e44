"""Fixtures of the reliability suite: the in-process system on a simulated clock, with a
task type whose result is known, and moto made fast enough for thousands of tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from devstack.harness import StreamDrain, load_function, reset_caches
from devstack.moto_patches import (
    partition_queries,
    serialize_dynamodb_requests,
    undo_log_transactions,
)
from taskqueue import wiring
from taskqueue.observability import logger, metrics
from taskqueue.task_types import REGISTRY
from taskqueue.task_types.email import Email, SesPacer
from tests.reliability.chaos import ChunkSum, Harness, Ledger, PartSum, SimClock


@pytest.fixture(autouse=True)
def _faster_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    undo_log_transactions(monkeypatch.setattr)
    partition_queries(monkeypatch.setattr)


@pytest.fixture
def harness(
    aws: Any,
    function_env: Callable[[str], dict[str, str]],
    transformed_template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Harness]:
    env = function_env("WorkerFunction")  # the three functions get the same variables
    # No EMF lines on stdout: Powertools prints a full metric set even when disabled.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setattr(metrics, "add_metric", lambda **_: None)
    reset_caches()
    boto3.client("ses").verify_email_identity(EmailAddress=env["EMAIL_SENDER"])
    worker, api, dlq, counters = (
        load_function(name) for name in ("worker", "api", "dlq", "counters")
    )
    engine, service = wiring.engine(), wiring.service()
    clock = SimClock()
    ledger = Ledger(clock=clock.now)
    chunksum = ChunkSum(ledger)
    partsum = PartSum(ledger)
    # Pacing is not what this suite checks: an unbounded account rate, on the simulated clock.
    email = Email(sleep=lambda _: None, clock=clock.now, pacer=SesPacer(account_rate=1e9))
    registry = {**REGISTRY, "CHUNKSUM": chunksum, "PARTSUM": partsum, "EMAIL": email}
    engine.registry = service.registry = registry
    engine.safety_margin_ms = 0
    engine.backoff_base_seconds = 0  # retries are due at once: SQS delays are real time
    store = wiring.new_store(wiring.settings())  # the test's own reader
    engine.clock = clock.now
    for each in (engine.store, service.store, store):
        each.table.clock = clock.now
    level = logger.log_level
    logger.setLevel(logging.CRITICAL)  # thousands of expected warnings (lease lost, ...)
    queue_props = transformed_template["Resources"]["TaskQueue"]["Properties"]
    try:
        yield Harness(
            aws,
            env,
            worker,
            api,
            dlq,
            engine,
            store,
            clock,
            ledger,
            chunksum,
            partsum,
            boto3.client("sqs"),
            int(queue_props["VisibilityTimeout"]),
            counters,
            StreamDrain.of(env["TABLE_NAME"]).reader,
        )
    finally:
        logger.setLevel(level)
        metrics.clear_metrics()
        reset_caches()


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each moto DynamoDB request runs alone, as DynamoDB applies each request atomically
    (moto's tables are not thread-safe); conflicting writes then fail the losers' conditions,
    which is exactly the path under test."""
    serialize_dynamodb_requests(monkeypatch.setattr)
