"""The in-process pipeline the counting benchmarks drive: moto, template resources, the
API and worker handlers, and a meter on every client they use.

The handlers get their own boto3 client per role (dependency injection, as the code allows)
so requests are attributed to the API, the worker or the task type's own code.
"""

from __future__ import annotations

import inspect
import io
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from moto import mock_aws

from bench.meter import Meter
from bench.tasktypes import BENCH_TYPES
from devstack.resources import (
    LocalResources,
    create_resources,
    function_environment,
    load_template,
    transform_template,
)
from taskqueue.task_types import REGISTRY
from tests.helpers import Pipeline, call_api, http_event, load_function, reset_function_caches

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


@cache
def transformed_template() -> dict[str, Any]:
    return transform_template(load_template())


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

    @property
    def table(self) -> str:
        return self.env["TABLE_NAME"]

    def pipeline(self) -> Pipeline:
        return Pipeline(self.sqs, [self.env["HIGH_PRIORITY_QUEUE_URL"], self.env["QUEUE_URL"]])

    def drain(self, max_invocations: int = 100_000) -> int:
        """Invoke the worker until the task queues are empty; returns the invocations."""
        with redirect_stdout(io.StringIO()):
            return self.pipeline().run(max_invocations=max_invocations)

    def submit(self, task_type: str, params: dict[str, Any], owner: str = OWNER) -> str:
        """POST /tasks through the API handler, as API Gateway would call it."""
        event = http_event("POST", "/tasks", body={"type": task_type, "params": params}, sub=owner)
        with redirect_stdout(io.StringIO()):
            response = call_api(event)
        if response.status != 201:
            raise RuntimeError(f"submit failed: {response.status} {response.body}")
        return str(response.body["id"])


class _NoTableBackups:
    """Stands in for the `copy` module inside moto's DynamoDB models.

    moto deep-copies a whole table for every item of a TransactWriteItems (to roll back on
    failure), which makes each transaction O(table size): a load of a few thousand tasks
    would take hours. Loads run with this only when they assert that no request failed, so
    no rollback is ever needed and the state (and every count) is what AWS would have.
    """

    def __init__(self, real: Any) -> None:
        self._real = real

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else self._real.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def no_transaction_backups() -> Iterator[None]:
    import moto.dynamodb.models as models

    real = models.copy
    models.copy = _NoTableBackups(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        models.copy = real


_QUERY_KEYS = threading.local()


@contextmanager
def fast_moto_queries() -> Iterator[None]:
    """moto answers a Query by sorting the *whole table* (``Table.all_items()``) and then
    comparing every item's partition key through its slow DynamoType equality: seconds per
    Query at 10,000 items. Here ``all_items`` hands a Query only the items whose partition
    key attributes equal the query's (raw type and value), unsorted; moto then filters and
    sorts those by the index's keys exactly as before, so every answer is unchanged.
    (A Scan would see another order: none is made.)
    """
    from moto.dynamodb.models.table import Table

    original_query, original_all_items = Table.query, Table.all_items
    signature = inspect.signature(original_query)

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        _QUERY_KEYS.conditions = bound.arguments.get("hash_key_conditions")
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _QUERY_KEYS.conditions = None

    def all_items(self: Table) -> list[Any]:
        if self.range_key_attr:
            items = [item for hash_set in self.items.values() for item in hash_set.values()]
        else:
            items = list(self.items.values())
        conditions = getattr(_QUERY_KEYS, "conditions", None)
        if not conditions:
            return items
        return [item for item in items if all(_same(item, name, v) for name, v in conditions)]

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.query = original_query  # type: ignore[method-assign]
        Table.all_items = original_all_items  # type: ignore[method-assign]


def _same(item: Any, name: str, expected: Any) -> bool:
    value = item.attrs.get(name)
    return value is not None and value.type == expected.type and value.value == expected.value


@contextmanager
def in_process_world(measure_sizes: bool = True) -> Iterator[World]:
    """moto in-process with the template's resources and metered API and worker handlers."""
    template = transformed_template()
    saved = dict(os.environ)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    try:
        with mock_aws():
            resources = create_resources(boto3.Session(region_name=REGION), template)
            env = {
                **function_environment(template, "ApiFunction", resources),
                **function_environment(template, "WorkerFunction", resources),
                **QUIET_ENV,
            }
            os.environ.update(env)
            reset_function_caches()
            api = load_function("api")
            worker = load_function("worker")
            registry = {**REGISTRY, **BENCH_TYPES}
            service, engine = api.service(), worker.engine()
            service.registry = registry
            engine.registry = registry
            # One client per role, so each request is attributed to who made it.
            service.store._client = boto3.client("dynamodb")
            service.dispatcher._client = boto3.client("sqs")
            engine.store._client = boto3.client("dynamodb")
            engine.dispatcher._client = boto3.client("sqs")
            meter = Meter(
                image_client=boto3.client("dynamodb") if measure_sizes else None,
                table_name=env["TABLE_NAME"],
            )
            from taskqueue.aws import client as shared_client

            meter.attach_all(
                [
                    (service.store.client, "api"),
                    (service.dispatcher.client, "api"),
                    (engine.store.client, "worker"),
                    (engine.dispatcher.client, "worker"),
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
            )
    finally:
        reset_function_caches()
        os.environ.clear()
        os.environ.update(saved)
