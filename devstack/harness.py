"""The one harness of tests, benchmarks and the local stack: the system in this process,
without ports.

- the Lambda side: :func:`lambda_context` (a settable remaining time), :func:`load_function`
  (functions/<name>/app.py as Lambda loads it), :func:`reset_caches` (every cached client,
  setting and wiring object of the handlers);
- the resources: :func:`template_resources` (moto in-process with the tables, queues and
  buckets of template.yaml);
- the events: :func:`http_event` and :func:`call_api` (the API function as API Gateway calls
  it), :func:`sqs_record` and :func:`sqs_event`;
- the event source mappings: :class:`Pipeline` (task queues drained through the worker) and
  :class:`StreamDrain` (a table's stream through the counters or push function);
- :func:`in_process_stack`: all of it at once, the API reached by requests.

For tests that want the real handlers around their code (a task type's own package, above
all: see docs/task-types.md), and for ``python -m devstack invoke``::

    with in_process_stack(task_type_modules=("number_sum",)) as stack:
        task = stack.submit("NUMBER_SUM", {"numbers": [1, 2, 3]})
        stack.drain()
        assert stack.api("GET", f"/tasks/{task['id']}").body["status"] == "SUCCESS"
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import boto3
import botocore.loaders
import botocore.session

from devstack.gateway import Route, http_routes
from devstack.gateway import call_api as call_gateway
from devstack.moto_sesv2 import bulk_email
from devstack.poller import QueueSource, delete_done, failed_message_ids
from devstack.poller import sqs_record as queue_record
from devstack.resources import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    LocalResources,
    StreamEventSource,
    Template,
    create_resources,
    event_sources,
    load_template,
    transform_template,
)
from devstack.runtime import (
    LambdaContext,
    LocalFunction,
    add_layers_to_path,
    load_function,
    reset_handler_caches,
    use_fake_aws,
)
from devstack.stack import DEV_USER, configure_handlers, local_functions, queue_sources
from devstack.streams import StreamReader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "ApiAnswer",
    "ApiResponse",
    "InProcessStack",
    "LambdaContext",
    "Pipeline",
    "StreamDrain",
    "call_api",
    "fresh_stack",
    "http_event",
    "in_process_stack",
    "lambda_context",
    "load_function",
    "reset_caches",
    "restored_environment",
    "sqs_event",
    "sqs_record",
    "stream_source",
    "template_resources",
]

# The one reset: every cached service, engine, client and the settings of the handlers.
reset_caches = reset_handler_caches

# The remaining time a context reports unless a test sets it: five minutes, in ms.
DEFAULT_REMAINING_MS = 300_000


# ------------------------------------------------------------------------------- Lambda


def lambda_context(
    function_name: str = "test-function",
    remaining_ms: int | Callable[[], int] = DEFAULT_REMAINING_MS,
    memory_limit_in_mb: int = 512,
) -> LambdaContext:
    """The Lambda context a handler gets, its remaining time fixed (milliseconds) or asked
    of a function on every call (a countdown makes a worker run out of time after N chunks)."""
    return LambdaContext(
        function_name=function_name,
        timeout_seconds=DEFAULT_REMAINING_MS // 1000,
        memory_limit_in_mb=memory_limit_in_mb,
        remaining=remaining_ms,
    )


# ------------------------------------------------------------------------------- resources


@functools.cache
def transformed_template() -> Template:
    """template.yaml after samtranslator, with its default parameters (read once)."""
    return transform_template(load_template())


@contextmanager
def template_resources(
    transformed: Template | None = None, parameters: Mapping[str, str] | None = None
) -> Iterator[LocalResources]:
    """moto in-process with every table, queue and bucket of the (transformed) template."""
    from moto import mock_aws

    template = transformed if transformed is not None else transformed_template()
    with mock_aws():
        yield create_resources(_session(), template, parameters=parameters)


@functools.cache
def _service_models() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def _session() -> boto3.Session:
    """A fresh session whose clients read the services' models from one shared loader: a
    fresh loader parses them from disk again, half a second for the three clients of
    `create_resources`, at every test's `aws`."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _service_models())
    return boto3.Session(botocore_session=core, region_name=DEFAULT_REGION)


# ------------------------------------------------------------------------------- events


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
        "accountId": DEFAULT_ACCOUNT_ID,
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
    """An API answer as a client reads it."""

    status: int
    body: Any  # the decoded JSON, or the text when it is not JSON
    headers: dict[str, str]


ApiAnswer = ApiResponse  # the name InProcessStack.api has answered with


def decoded_body(text: str) -> Any:
    """A response body: its JSON, or the text itself when it is not JSON (None when empty)."""
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


def call_api(event: dict[str, Any]) -> ApiResponse:
    """One invocation of the API function with an HTTP API event; its answer decoded."""
    app = load_function("api")
    response = app.lambda_handler(event, lambda_context(function_name="api"))
    raw = response.get("body") or ""
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return ApiResponse(response["statusCode"], decoded_body(raw), response.get("headers") or {})


def url_source(url: str, batch_size: int = 10, reports: bool = True) -> QueueSource:
    """A queue known by its URL (``.../<account>/<name>``) as an event source mapping."""
    parts = urlsplit(url)
    account, _, name = parts.path.strip("/").rpartition("/")
    host = parts.hostname or ""
    region = host.split(".")[1] if host.startswith("sqs.") else DEFAULT_REGION
    return QueueSource(
        queue=name,
        url=url,
        arn=f"arn:aws:sqs:{region}:{account or DEFAULT_ACCOUNT_ID}:{name}",
        region=region,
        batch_size=batch_size,
        window_seconds=0,
        reports_batch_item_failures=reports,
    )


TEST_QUEUE = url_source(f"https://sqs.{DEFAULT_REGION}.amazonaws.com/{DEFAULT_ACCOUNT_ID}/queue")


def sqs_record(
    body: str,
    queue_arn: str = TEST_QUEUE.arn,
    receive_count: int = 1,
    message_id: str | None = None,
    receipt: str = "receipt",
) -> dict[str, Any]:
    """An SQS record as Lambda hands it to a function, built from its parts."""
    message: Any = {
        "MessageId": message_id or uuid.uuid4().hex,
        "ReceiptHandle": receipt,
        "Body": body,
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1795507200000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1795507200000",
        },
    }
    return queue_record(message, dataclasses.replace(TEST_QUEUE, arn=queue_arn))


def sqs_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


# ------------------------------------------------------------------------------- mappings


def every_invocation_fresh() -> Callable[[], int]:
    return lambda: DEFAULT_REMAINING_MS


@dataclass
class Pipeline:
    """Drains queues through a function (the worker unless ``handler`` says otherwise), as
    the event source mapping would, the first queue of ``queue_urls`` first.

    Messages reported in batchItemFailures are left on the queue, invisible as after a
    real visibility timeout, until the test lets that timeout pass (`expire_visibility`);
    the rest are deleted.
    """

    sqs: Any
    queue_urls: list[str]
    # A new remaining-time function for each invocation (Lambda's clock restarts each time).
    budget: Callable[[], Callable[[], int]] = every_invocation_fresh
    invocations: int = 0
    invisible: list[tuple[str, str]] = field(default_factory=list)
    # Another function's invocation (it makes its own context); the worker's by default.
    handler: Callable[[dict[str, Any]], Any] | None = None
    batch_size: int = 10
    reports_batch_item_failures: bool = True

    def receive(self, max_messages: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        for url in self.queue_urls:
            messages = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max_messages or self.batch_size,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=3600,
            ).get("Messages", [])
            if messages:
                return [(url, m) for m in messages]
        return []

    def invoke(self, batch: list[tuple[str, dict[str, Any]]]) -> Any:
        """One invocation with a received batch (all from one queue); returns its answer."""
        url = batch[0][0]
        source = url_source(url, self.batch_size, self.reports_batch_item_failures)
        messages: list[Any] = [message for _, message in batch]
        event = sqs_event(queue_record(message, source) for message in messages)
        self.invocations += 1
        if self.handler is not None:
            response = self.handler(event)
        else:
            context = lambda_context(function_name="worker", remaining_ms=self.budget())
            response = load_function("worker").lambda_handler(event, context)
        ids = [message["MessageId"] for message in messages]
        failed = failed_message_ids(response, ids, self.reports_batch_item_failures)
        self.invisible.extend(
            (url, m["ReceiptHandle"]) for m in messages if m["MessageId"] in failed
        )
        delete_done(self.sqs, source, messages, failed)
        return response

    def step(self) -> bool:
        """One invocation if a queue has a visible message; whether there was one."""
        batch = self.receive()
        if batch:
            self.invoke(batch)
        return bool(batch)

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
            if not self.step():
                return self.invocations - start
        raise AssertionError(f"queues not drained after {max_invocations} invocations")


@functools.cache
def stream_source(logical_id: str) -> StreamEventSource:
    """The template's stream event source of a function (batch size, filters, position)."""
    return _stream_function(logical_id)[0]


@functools.cache
def _stream_function(logical_id: str) -> tuple[StreamEventSource, str]:
    """The function's stream event source and its directory under functions/ (the template
    parsed once: it costs a few tenths of a second, at every test's stream drain)."""
    sources = event_sources(load_template(), logical_id)
    (source,) = sources.streams
    return source, Path(sources.code_uri or "").name


@dataclass
class StreamDrain:
    """A table's stream through a function, as its event source mapping would read it (the
    template's batch size, filters and starting position): `drain` hands it everything
    written since the last drain, so stats read afterwards are what the dashboard shows
    once it caught up."""

    reader: StreamReader
    batch_size: int
    function: str = "counters"  # the function's directory under functions/
    invocations: int = 0

    @classmethod
    def of(cls, table: str, logical_id: str = "CountersFunction") -> StreamDrain:
        from botocore.config import Config

        source, function = _stream_function(logical_id)
        # moto answers on the regional endpoint only, not the account-based one botocore
        # picks for requests that carry a stream ARN.
        streams = boto3.client(
            "dynamodbstreams", config=Config(account_id_endpoint_mode="disabled")
        )
        reader = StreamReader.for_table(boto3.client("dynamodb"), streams, table, source.filters)
        if source.starting_position == "LATEST":
            reader.skip_to_latest()
        return cls(reader, source.batch_size, function)

    def invoke_next(self, batch_size: int | None = None) -> Any:
        """One invocation with the next batch (possibly empty); returns its answer."""
        batch = self.reader.read(batch_size or self.batch_size)
        self.invocations += 1
        return self._invoke(batch)

    def drain(self, batch_size: int | None = None) -> int:
        """Invoke the function until the stream is read; returns the records seen."""
        seen = 0
        while batch := self.reader.read(batch_size or self.batch_size):
            self.invocations += 1
            self._invoke(batch)
            seen += len(batch)
        return seen

    def _invoke(self, batch: list[dict[str, Any]]) -> Any:
        handler = load_function(self.function).lambda_handler
        return handler({"Records": batch}, lambda_context(self.function))


# ------------------------------------------------------------------------------- stack


@contextmanager
def fresh_stack(
    parameters: Mapping[str, str] | None = None,
) -> Iterator[tuple[Template, LocalResources, dict[str, LocalFunction]]]:
    """Fake credentials, moto in-process, and the template's tables, queues and buckets; yields
    the transformed template, the resources and the functions whose code is local."""
    use_fake_aws()
    add_layers_to_path()
    bulk_email()  # moto has no SES v2 SendBulkEmail or GetAccount (see devstack.moto_sesv2)
    transformed = transform_template(load_template(), parameters=parameters)
    with template_resources(transformed, parameters) as resources:
        yield transformed, resources, local_functions(transformed, resources)


@dataclass
class InProcessStack:
    """The running system of :func:`in_process_stack`."""

    resources: LocalResources
    functions: dict[str, LocalFunction]
    routes: list[Route]
    user: str = DEV_USER
    invocations: dict[str, int] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        """The data bucket: uploads under ``uploads/<owner>/``, results under ``results/``."""
        return self.resources.buckets["DataBucket"]

    @property
    def s3(self) -> S3Client:
        return boto3.client("s3", region_name=self.resources.region)

    @property
    def sqs(self) -> SQSClient:
        return boto3.client("sqs", region_name=self.resources.region)

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """One invocation of a function (its logical id) with an event; returns its answer."""
        self.invocations[function] = self.invocations.get(function, 0) + 1
        return self.functions[function].invoke(event)

    def api(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        user: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        """One request to the HTTP API (``target`` is the path and query) as ``user``."""
        sent = b"" if body is None else json.dumps(body).encode()
        answer = call_gateway(
            self.routes,
            self.invoke,
            user or self.user,
            method,
            target,
            [("content-type", "application/json"), *(headers or {}).items()],
            sent,
        )
        text = answer.body.decode("utf-8", errors="replace")
        headers = {k.lower(): v for k, v in answer.headers}
        return ApiResponse(answer.status, decoded_body(text), headers)

    def submit(self, task_type: str, params: dict[str, Any], **options: Any) -> dict[str, Any]:
        """POST /tasks; the created task, or RuntimeError with the API's answer."""
        answer = self.api("POST", "/tasks", {"type": task_type, "params": params, **options})
        if answer.status != 201:
            raise RuntimeError(f"POST /tasks answered {answer.status}: {answer.body}")
        task: dict[str, Any] = answer.body
        return task

    def task(self, task_id: str) -> dict[str, Any]:
        """GET /tasks/{id}; the task, or RuntimeError with the API's answer."""
        answer = self.api("GET", f"/tasks/{task_id}")
        if answer.status != 200:
            raise RuntimeError(f"GET /tasks/{task_id} answered {answer.status}: {answer.body}")
        task: dict[str, Any] = answer.body
        return task

    def drain(self, max_invocations: int = 200) -> int:
        """Every SQS event source mapping, as Lambda runs it, until no queue has a visible
        message; returns the invocations. Records a function reports failed stay on their
        queue, invisible; delayed messages (a retry's backoff, a paced continuation) are not
        waited for."""
        sqs = self.sqs
        pipelines = []
        for function in self.functions.values():
            sources = queue_sources(function, self.resources)
            if sources:
                pipelines.append(
                    Pipeline(
                        sqs,
                        [source.url for source in sources],
                        handler=functools.partial(self.invoke, function.logical_id),
                        batch_size=min(10, sources[0].batch_size),
                        reports_batch_item_failures=sources[0].reports_batch_item_failures,
                    )
                )
        count = 0
        while True:
            busy = False
            for pipeline in pipelines:
                batch = pipeline.receive()
                if not batch:
                    continue
                if count >= max_invocations:
                    raise RuntimeError(f"queues not drained after {max_invocations} invocations")
                busy = True
                count += 1
                pipeline.invoke(batch)
            if not busy:
                return count


@contextmanager
def restored_environment() -> Iterator[None]:
    """The process environment put back afterwards, and the handlers' caches of it dropped."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_caches()


@contextmanager
def in_process_stack(
    *,
    task_type_modules: Sequence[str] = (),
    parameters: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    user: str = DEV_USER,
) -> Iterator[InProcessStack]:
    """A fresh system: ``task_type_modules`` is the ``TaskTypeModules`` parameter (modules on
    sys.path exporting ``TASK_TYPES``), ``environment`` adds variables (a type's own settings).
    The process environment is put back afterwards."""
    overrides = dict(parameters or {})
    if task_type_modules:
        overrides["TaskTypeModules"] = ",".join(task_type_modules)
    with restored_environment():
        os.environ.update(environment or {})
        with fresh_stack(overrides) as (transformed, resources, functions):
            configure_handlers(transformed, resources, list(functions), dev_user=user)
            yield InProcessStack(resources, functions, http_routes(transformed), user)
