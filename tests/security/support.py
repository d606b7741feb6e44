"""Shared by the security tests: the API handler behind a WSGI adapter, users, and URL checks.

The adapter turns each WSGI request (what schemathesis and werkzeug send) into the HTTP API
payload 2.0 event API Gateway would pass on after the JWT authorizer, calls the API Lambda
handler in-process, and turns its answer back into a WSGI response. Like API Gateway, it
passes the path percent-decoded (`rawPath`) and joins repeated query parameters with commas.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlparse

import pytest
from botocore.client import BaseClient

from tests.helpers import ApiResponse, call_api, http_event, load_function

ALICE = "user-alice-0001"
BOB = "user-bob-0002"
FUZZER = "user-fuzz-0003"
# The header a test uses to choose the caller; it stands in for the JWT the authorizer checked.
SUB_HEADER = "x-test-sub"

ERROR_CODES = (400, 401, 404, 409, 413, 422, 429, 503)
UPLOAD_URL_MAX_SECONDS = 900
DOWNLOAD_URL_MAX_SECONDS = 3600


@dataclass
class LambdaWsgiAdapter:
    """A WSGI application whose every request is one invocation of the API Lambda handler."""

    default_sub: str | None = FUZZER
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)

    def event_of(self, environ: dict[str, Any]) -> dict[str, Any]:
        method = environ["REQUEST_METHOD"]
        # WSGI hands the path over as latin-1 text of the raw bytes; API Gateway gives UTF-8.
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
        query_string = environ.get("QUERY_STRING", "")
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers[key[5:].replace("_", "-").lower()] = value
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        # As the JWT authorizer does: without a token there are no claims (the handler then
        # answers 401); a test may name the caller outright with SUB_HEADER.
        token = headers.get("authorization", "").strip()
        sub = headers.pop(SUB_HEADER, self.default_sub if token else None)
        event = http_event(method, path, sub=sub or None)
        event["headers"] = headers
        event["rawQueryString"] = query_string
        joined: dict[str, list[str]] = {}
        for name, value in parse_qsl(query_string, keep_blank_values=True):
            joined.setdefault(name, []).append(value)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in joined.items()} or None
        if raw:
            try:
                event["body"], event["isBase64Encoded"] = raw.decode("utf-8"), False
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
        return event

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        event = self.event_of(environ)
        try:
            response = invoke(event)
        except Exception as exc:  # a Lambda error: API Gateway answers 500, so do we
            self.crashes.append(
                f"{event['requestContext']['http']['method']} {event['rawPath']}: {exc!r}"
            )
            response = {
                "statusCode": 500,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"message": "Internal Server Error"}),
            }
        self.requests += 1
        status = int(response["statusCode"])
        self.statuses[status] = self.statuses.get(status, 0) + 1
        body = response.get("body") or ""
        payload = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        headers = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
        headers += [("Set-Cookie", c) for c in response.get("cookies") or []]
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "?"
        start_response(f"{status} {reason}", headers)
        return [payload]


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    from tests.helpers import FakeLambdaContext

    app = load_function("api")
    result: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext(function_name="api"))
    return result


def api(
    method: str,
    path: str,
    *,
    sub: str | None = ALICE,
    body: Any = None,
    query: dict[str, str] | None = None,
    **kwargs: Any,
) -> ApiResponse:
    return call_api(http_event(method, path, sub=sub, body=body, query=query, **kwargs))


def assert_error_shape(response: ApiResponse, status: int | None = None) -> None:
    """`{"error": {"code", "message", "details"}}` with a 4xx status (or the one given)."""
    if status is not None:
        assert response.status == status, (response.status, response.body)
    assert 400 <= response.status < 500, (response.status, response.body)
    assert isinstance(response.body, dict) and set(response.body) == {"error"}, response.body
    error = response.body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str), error


def presigned_expiry(url: str) -> int:
    """Lifetime in seconds of a presigned S3 URL (SigV4 X-Amz-Expires or SigV2 Expires)."""
    query = parse_qs(urlparse(url).query)
    if "X-Amz-Expires" in query:
        return int(query["X-Amz-Expires"][0])
    if "Expires" in query and "X-Amz-Date" not in query:
        # SigV2 carries an absolute epoch time; the lifetime is checked against "now".
        import time

        return int(query["Expires"][0]) - int(time.time())
    raise AssertionError(f"presigned URL without an expiry: {url}")


def presigned_key(url: str, bucket: str) -> str:
    """The object key a presigned URL grants (path-style or virtual-hosted style)."""
    from urllib.parse import unquote

    parsed = urlparse(url)
    path = unquote(parsed.path)
    if parsed.hostname and parsed.hostname.startswith(f"{bucket}."):
        return path.lstrip("/")
    prefix = f"/{bucket}/"
    assert path.startswith(prefix), url
    return path[len(prefix) :]


def error_response_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    }


def with_documented_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of the spec where every operation documents DESIGN.md's error answers.

    The served spec documents only 422, with Powertools' `{"detail": [...]}` shape, which
    the API never sends. Adding the errors DESIGN.md promises (`{"error": {...}}`) lets the
    fuzzer check every error body against the real contract; test_served_spec_* below flag
    the gap in the served spec itself.
    """
    patched = json.loads(json.dumps(spec))
    schemas = patched.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorResponse"] = error_response_schema()
    for operations in patched["paths"].values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code in ERROR_CODES:
                responses[str(code)] = {
                    "description": HTTPStatus(code).phrase,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                }
    cancel = patched["paths"]["/tasks/{task_id}"]["delete"]["responses"]
    cancel.setdefault("200", {**cancel["202"], "description": "cancelled"})
    return patched


def fetch_spec(sub: str | None = None) -> dict[str, Any]:
    response = api("GET", "/openapi.json", sub=sub)
    assert response.status == 200, response
    spec: dict[str, Any] = response.body
    return spec


# ------------------------------------------------------------------ one moto world per module


@dataclass
class World:
    """moto with the resources of template.yaml, shared by the tests of one module.

    Creating the resources takes about a second; the security tests make hundreds of small
    requests, so each module builds its world once. Tests that need a clean slate use users
    of their own (`fresh_user`).
    """

    aws: Any  # devstack.resources.LocalResources
    template: dict[str, Any]
    patch: Any  # pytest.MonkeyPatch
    sqs: Any

    def as_function(self, logical_id: str = "ApiFunction") -> dict[str, str]:
        """Sets that function's environment and forgets cached settings and clients."""
        from devstack.resources import function_environment
        from tests.helpers import reset_function_caches

        environment = function_environment(self.template, logical_id, self.aws)
        for name, value in environment.items():
            self.patch.setenv(name, value)
        reset_function_caches()
        return environment

    @property
    def task_queues(self) -> list[str]:
        return [self.aws.queues["TaskQueue"], self.aws.queues["HighPriorityQueue"]]

    def drain(self) -> None:
        """Runs the worker over whatever is queued, as the event source mapping would."""
        from tests.helpers import Pipeline

        self.as_function("WorkerFunction")
        try:
            Pipeline(self.sqs, self.task_queues).run()
        finally:
            self.as_function("ApiFunction")

    def purge(self) -> None:
        """Deletes every visible task message (PurgeQueue is allowed once a minute only)."""
        for url in self.task_queues:
            while messages := self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages"):
                for message in messages:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@contextmanager
def moto_world(template: dict[str, Any]) -> Iterator[World]:
    """A module-scoped stand-in for conftest's `aws` + `settings_env` fixtures."""
    import boto3
    import pytest

    from devstack.harness import template_resources
    from tests.conftest import FAKE_AWS_ENV
    from tests.helpers import reset_function_caches

    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        patch.delenv("DEV_AUTH_USER", raising=False)
        reset_function_caches()
        with template_resources(template) as resources:
            world = World(resources, template, patch, boto3.client("sqs", region_name="us-east-1"))
            world.as_function("ApiFunction")
            try:
                yield world
            finally:
                reset_function_caches()


def fresh_user(label: str = "user") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


@contextmanager
def recorded_aws_calls() -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    """Every botocore call made inside the block: (service, operation, parameters)."""
    calls: list[tuple[str, str, dict[str, Any]]] = []
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: BaseClient, operation: str, params: Any) -> Any:
        calls.append((self.meta.service_model.service_name, operation, dict(params)))
        return original(self, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", recording)
        yield calls
