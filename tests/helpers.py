"""Builders for Lambda events and an in-process stand-in for the SQS event source mapping."""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py under a unique module name (all are called app.py)."""
    module_name = f"{name}_app"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def reset_function_caches() -> None:
    """Forget cached settings, clients and services so a test's environment takes effect."""
    from taskqueue import wiring

    wiring.reset()


def claim_as_worker(store: Any, task_id: str, lease: str = "lease-1", seconds: int = 300) -> Any:
    """Claim a task the way the worker does (the lifecycle's row for its status), so that a
    test can then checkpoint and finish it under `lease`; returns the claimed task."""
    from taskqueue.lifecycle import Action, decide
    from taskqueue.models import utcnow

    task = store.tasks.get(task_id)
    transition = decide(task, Action.CLAIM, utcnow())
    return store.tasks.claim(transition, task_id, task.owner, task.task_type, lease, seconds)


def finish_as_worker(
    store: Any, task: Any, status: Any, lease: str = "lease-1", **done: Any
) -> None:
    """Finish a claimed task as the worker does: SUCCESS, FAILED or CANCELLED under `lease`."""
    from taskqueue.lifecycle import Action
    from taskqueue.models import TaskStatus

    action = {
        TaskStatus.SUCCESS: Action.SUCCEED,
        TaskStatus.FAILED: Action.FAIL,
        TaskStatus.CANCELLED: Action.STOP,
    }[status]
    fields = {"attempts": task.attempts, "error": "TestFailure: failed"}
    store.tasks.finish(action, task, lease, fields=fields, **done)


@functools.cache
def counters_stream_source() -> Any:
    """The template's stream event source of CountersFunction (batch size, window, filters)."""
    from devstack.resources import event_sources, load_template

    (source,) = event_sources(load_template(), "CountersFunction").streams
    return source


@dataclass
class CounterStream:
    """The tasks table's stream through the counters handler, as its event source mapping
    would (the template's batch size and filters): `drain` counts everything written since
    the last drain, so stats read afterwards are what the dashboard shows once it caught up."""

    reader: Any  # devstack.streams.StreamReader
    batch_size: int
    invocations: int = 0

    @classmethod
    def of(cls, table: str) -> CounterStream:
        import boto3
        from botocore.config import Config

        from devstack.streams import StreamReader

        source = counters_stream_source()
        # moto answers on the regional endpoint only, not the account-based one botocore
        # picks for requests that carry a stream ARN.
        streams = boto3.client(
            "dynamodbstreams", config=Config(account_id_endpoint_mode="disabled")
        )
        reader = StreamReader.for_table(boto3.client("dynamodb"), streams, table, source.filters)
        return cls(reader, source.batch_size)

    def drain(self, batch_size: int | None = None) -> int:
        """Invoke the counters handler until the stream is read; returns the records seen."""
        counters = load_function("counters")
        seen = 0
        while batch := self.reader.read(batch_size or self.batch_size):
            self.invocations += 1
            counters.lambda_handler({"Records": batch}, FakeLambdaContext("counters"))
            seen += len(batch)
        return seen


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    remaining_ms: Callable[[], int] = lambda: 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms()


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    sub: str | None = "user-123",
    raw_body: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the JWT authorizer passes it on."""
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if text is not None and base64_body:
        text = base64.b64encode(text.encode()).decode()
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "api",
        "domainName": "api.example.com",
        "domainPrefix": "api",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.1",
            "userAgent": "pytest",
        },
        "requestId": uuid.uuid4().hex,
        "routeKey": "$default",
        "stage": "$default",
        "time": "24/Nov/2026:08:00:00 +0000",
        "timeEpoch": 1795507200000,
    }
    if sub is not None:
        request_context["authorizer"] = {"jwt": {"claims": {"sub": sub}, "scopes": []}}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"content-type": "application/json", **(headers or {})},
        "queryStringParameters": query or None,
        "requestContext": request_context,
        "body": text,
        "isBase64Encoded": base64_body,
    }


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str]


def call_api(event: dict[str, Any]) -> ApiResponse:
    app = load_function("api")
    response = app.lambda_handler(event, FakeLambdaContext(function_name="api"))
    raw = response.get("body") or ""
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    try:
        body = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        body = raw
    return ApiResponse(response["statusCode"], body, response.get("headers") or {})


def sqs_record(
    body: str,
    queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:queue",
    receive_count: int = 1,
    message_id: str | None = None,
    receipt: str = "receipt",
) -> dict[str, Any]:
    return {
        "messageId": message_id or uuid.uuid4().hex,
        "receiptHandle": receipt,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1795507200000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1795507200000",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def sqs_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


@dataclass
class Pipeline:
    """Drains task queues through the worker handler, as the event source mapping would.

    Messages reported in batchItemFailures are left on the queue, invisible as after a
    real visibility timeout, until the test lets that timeout pass (`expire_visibility`);
    the rest are deleted.
    """

    sqs: Any
    queue_urls: list[str]
    # A new remaining-time function for each invocation (Lambda's clock restarts each time).
    budget: Callable[[], Callable[[], int]] = lambda: lambda: 300_000
    invocations: int = 0
    invisible: list[tuple[str, str]] = field(default_factory=list)

    def receive(self, max_messages: int = 10) -> list[tuple[str, dict[str, Any]]]:
        for url in self.queue_urls:
            messages = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages,
                AttributeNames=["All"],
                VisibilityTimeout=3600,
            ).get("Messages", [])
            if messages:
                return [(url, m) for m in messages]
        return []

    def invoke(self, batch: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        worker = load_function("worker")
        records = [
            sqs_record(
                m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                message_id=m["MessageId"],
                receipt=m["ReceiptHandle"],
            )
            for _, m in batch
        ]
        self.invocations += 1
        context = FakeLambdaContext(function_name="worker", remaining_ms=self.budget())
        response = worker.lambda_handler(sqs_event(records), context)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for url, message in batch:
            if message["MessageId"] in failed:
                self.invisible.append((url, message["ReceiptHandle"]))
            else:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return response

    def expire_visibility(self) -> int:
        """Let the visibility timeout of every failed message pass: they come back."""
        for url, receipt in self.invisible:
            self.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        count, self.invisible = len(self.invisible), []
        return count

    def run(self, max_invocations: int = 200) -> int:
        """Invoke until the queues are empty; returns the number of invocations."""
        start = self.invocations
        while self.invocations - start < max_invocations:
            batch = self.receive()
            if not batch:
                return self.invocations - start
            self.invoke(batch)
        raise AssertionError(f"queues not drained after {max_invocations} invocations")
