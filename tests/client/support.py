"""What the client's tests share, above all the client against the API handler in this
process: an httpx transport that turns each request into the API Gateway event the local
gateway builds (`devstack.gateway`), calls `functions/api`'s `lambda_handler`, and turns its
answer back into HTTP.

Presigned S3 URLs (uploads, downloads) go out through `requests`, which moto's `mock_aws`
intercepts, so they reach the same in-memory bucket the handlers use.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import httpx
import requests

from devstack.gateway import Route, call_api
from devstack.harness import lambda_context, load_function
from tests.pipeline_world import World, countdown

API_URL = "https://api.tasks.test"
# A task of three chunks (one image each) with three output files.
IMAGES = {
    "generate_count": 3,
    "width": 16,
    "height": 16,
    "output_format": "PNG",
    "images_per_chunk": 1,
}
# A task as the API answers it.
VIEW: dict[str, Any] = {
    "id": "a" * 32,
    "type": "DATA_PROCESSING",
    "status": "RUNNING",
    "priority": "normal",
    "params": {"rows": 10},
    "progress": 40,
    "units_done": 4,
    "units_total": 10,
    "attempts": 1,
    "max_attempts": 3,
    "timeout_seconds": None,
    "cancel_requested": False,
    "created_at": "2026-11-24T09:00:00.000001Z",
    "updated_at": "2026-11-24T09:00:02Z",
    "started_at": "2026-11-24T09:00:01Z",
    "finished_at": None,
    "run_at": None,
    "duration_seconds": 1.5,
    "error": None,
    "result": None,
    "result_location": None,
    "outputs": [],
    "failed_items": 0,
    "parts_total": 0,
    "parts_done": 0,
    "chain_id": None,
    "chain_position": 0,
    "chain_length": 0,
    "previous_result": None,
}


def jwt_for(user: str) -> str:
    """An unsigned JWT naming `user` (the stand-in authorizer reads its claims unverified)."""
    payload = base64.urlsafe_b64encode(json.dumps({"sub": user}).encode()).decode().rstrip("=")
    return f"x.{payload}.x"


class LambdaTransport(httpx.BaseTransport):
    """API Gateway + ApiFunction in-process. Without a valid bearer token an authorized route
    answers 401 `{"message": "Unauthorized"}`, as the HTTP API's JWT authorizer does."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = request.read()
        if f"{request.url.scheme}://{request.url.host}" != API_URL:
            return self._outside(request, body)
        answer = call_api(
            self.routes,
            self._invoke,
            None,  # no dev user: the authorizer wants a token
            request.method,
            request.url.raw_path.decode(),
            list(request.headers.multi_items()),
            body,
            source_ip="203.0.113.1",
        )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

    @staticmethod
    def _invoke(function: str, event: dict[str, Any]) -> Any:
        assert function == "ApiFunction"  # every route of the HTTP API is the API function's
        return load_function("api").lambda_handler(event, lambda_context("api"))

    def _outside(self, request: httpx.Request, body: bytes) -> httpx.Response:
        sent: Any = requests.request(
            request.method,
            str(request.url),
            headers=dict(request.headers),
            data=body,
            timeout=10,
        )
        return httpx.Response(
            sent.status_code, headers=list(sent.headers.items()), content=sent.content
        )


def step(world: World, chunks_per_invocation: int = 1) -> None:
    """One worker invocation on whatever is queued, with time for so many chunks."""
    pipeline = world.pipeline(countdown(chunks_per_invocation))
    batch = pipeline.receive()
    if batch:
        pipeline.invoke(batch)


def unreadable_upload(world: World, key: str) -> str:
    """A UTF-16 upload at `key`: DATA_PROCESSING fails it at once (`unreadable_input`); a
    missing upload would be refused at submit already."""
    boto3.client("s3").put_object(
        Bucket=world.resources.buckets["DataBucket"], Key=key, Body=b"\xff\xfea\x00"
    )
    return key
