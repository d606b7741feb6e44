"""The system in this process, without ports: moto in-process, the resources of template.yaml,
API requests through the API function and the task queues drained through the worker, each
handler invoked as Lambda would invoke it.

For tests that want the real handlers around their code (a task type's own package, above
all: see docs/task-types.md), and for ``python -m devstack invoke``::

    with in_process_stack(task_type_modules=("number_sum",)) as stack:
        task = stack.submit("NUMBER_SUM", {"numbers": [1, 2, 3]})
        stack.drain()
        assert stack.api("GET", f"/tasks/{task['id']}").body["status"] == "SUCCESS"
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from devstack.gateway import Route, call_api, http_routes
from devstack.moto_sesv2 import bulk_email
from devstack.poller import delete_done, failed_message_ids, sqs_record
from devstack.resources import (
    DEFAULT_REGION,
    LocalResources,
    Template,
    create_resources,
    load_template,
    transform_template,
)
from devstack.runtime import LocalFunction, add_layers_to_path, reset_handler_caches, use_fake_aws
from devstack.stack import DEV_USER, configure_handlers, local_functions, queue_sources

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


@contextmanager
def fresh_stack(
    parameters: Mapping[str, str] | None = None,
) -> Iterator[tuple[Template, LocalResources, dict[str, LocalFunction]]]:
    """Fake credentials, moto in-process, and the template's tables, queues and buckets; yields
    the transformed template, the resources and the functions whose code is local."""
    use_fake_aws()
    add_layers_to_path()
    bulk_email()  # moto has no SES v2 SendBulkEmail or GetAccount (see devstack.moto_sesv2)
    from moto import mock_aws

    transformed = transform_template(load_template(), parameters=parameters)
    with mock_aws():
        resources = create_resources(
            boto3.Session(region_name=DEFAULT_REGION), transformed, parameters=parameters
        )
        yield transformed, resources, local_functions(transformed, resources)


@dataclass
class ApiAnswer:
    status: int
    body: Any  # the decoded JSON, or the text when it is not JSON
    headers: dict[str, str]


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
    ) -> ApiAnswer:
        """One request to the HTTP API (``target`` is the path and query) as ``user``."""
        sent = b"" if body is None else json.dumps(body).encode()
        answer = call_api(
            self.routes,
            self.invoke,
            user or self.user,
            method,
            target,
            [("content-type", "application/json"), *(headers or {}).items()],
            sent,
        )
        text = answer.body.decode("utf-8", errors="replace")
        try:
            decoded = json.loads(text) if text else None
        except json.JSONDecodeError:
            decoded = text
        return ApiAnswer(answer.status, decoded, {k.lower(): v for k, v in answer.headers})

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
        queue, invisible for its visibility timeout; delayed messages (a retry's backoff, a
        paced continuation) are not waited for."""
        sources = [
            (function, source)
            for function in self.functions.values()
            for source in queue_sources(function, self.resources)
        ]
        sqs = self.sqs
        count = 0
        while True:
            busy = False
            for function, source in sources:
                messages = sqs.receive_message(
                    QueueUrl=source.url,
                    MaxNumberOfMessages=min(10, source.batch_size),
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    continue
                if count >= max_invocations:
                    raise RuntimeError(f"queues not drained after {max_invocations} invocations")
                busy = True
                count += 1
                records = [sqs_record(message, source) for message in messages]
                ids = [record["messageId"] for record in records]
                response = self.invoke(function.logical_id, {"Records": records})
                failed = failed_message_ids(response, ids, source.reports_batch_item_failures)
                delete_done(sqs, source, messages, failed)
            if not busy:
                return count


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
    saved = dict(os.environ)
    overrides = dict(parameters or {})
    if task_type_modules:
        overrides["TaskTypeModules"] = ",".join(task_type_modules)
    try:
        os.environ.update(environment or {})
        with fresh_stack(overrides) as (transformed, resources, functions):
            configure_handlers(transformed, resources, list(functions), dev_user=user)
            yield InProcessStack(resources, functions, http_routes(transformed), user)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_handler_caches()
