"""The local stack's translations, without a server: HTTP <-> API Gateway events, SQS records."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from websockets.server import ServerProtocol

from devstack.gateway import (
    Route,
    bearer_claims,
    find_route,
    http_answer,
    http_api_event,
    http_routes,
)
from devstack.poller import QueueSource, SqsPoller, failed_message_ids, sqs_record
from devstack.resources import event_sources
from devstack.websocket import (
    LocalConnection,
    WebSocketApi,
    authorizer_context,
    local_config,
    websocket_api,
    websocket_event,
)

ROUTES = [
    Route("GET", "/tasks", "ApiFunction", True),
    Route("GET", "/tasks/{id}", "ApiFunction", True),
    Route("POST", "/tasks/{id}/retry", "ApiFunction", True),
    Route("GET", "/health", "ApiFunction", False),
]


def event(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "method": "GET",
        "target": "/tasks",
        "headers": [("Host", "127.0.0.1:8000")],
        "body": b"",
        "source_ip": "127.0.0.1",
        "protocol": "HTTP/1.1",
        "route": ROUTES[0],
        "path_parameters": {},
        "claims": {"sub": "dev-user"},
        **overrides,
    }
    return http_api_event(**arguments)


def test_routes_come_from_the_transformed_template(transformed_template: dict[str, Any]) -> None:
    routes = {route.key: route for route in http_routes(transformed_template)}

    assert routes["POST /tasks"].function == "ApiFunction"
    assert routes["POST /tasks/{id}/retry"].authorized is True
    assert routes["GET /health"].authorized is False
    assert {route.first_segment for route in routes.values()} >= {
        "tasks",
        "task-types",
        "stats",
        "uploads",
        "dead-letters",
        "health",
        "openapi.json",
        "docs",
    }


def test_path_parameters_and_method_fallback() -> None:
    route, params = find_route(ROUTES, "POST", "/tasks/abc/retry")
    preflight, _ = find_route(ROUTES, "OPTIONS", "/tasks/abc")
    missing, _ = find_route(ROUTES, "GET", "/tasks/abc/other")

    assert route is not None and route.key == "POST /tasks/{id}/retry"
    assert params == {"id": "abc"}
    assert preflight is not None and preflight.key == "GET /tasks/{id}"
    assert missing is None


def test_repeated_query_keys_and_headers_are_comma_joined() -> None:
    built = event(
        target="/tasks?status=FAILED&status=CANCELLED&limit=5",
        headers=[("X-Trace", "a"), ("x-trace", "b"), ("Cookie", "theme=dark; lang=en")],
    )

    assert built["rawQueryString"] == "status=FAILED&status=CANCELLED&limit=5"
    assert built["queryStringParameters"] == {"status": "FAILED,CANCELLED", "limit": "5"}
    assert built["headers"]["x-trace"] == "a,b"
    assert built["cookies"] == ["theme=dark", "lang=en"]
    assert "cookie" not in built["headers"]
    assert built["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "dev-user"
    assert built["requestContext"]["http"]["path"] == "/tasks"
    assert built["routeKey"] == "GET /tasks"


def test_binary_body_is_base64_and_json_is_text() -> None:
    binary = event(
        method="POST", headers=[("Content-Type", "image/png")], body=b"\x89PNG", route=None
    )
    text = event(method="POST", headers=[("Content-Type", "application/json")], body=b"{}")

    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x89PNG"
    assert binary["routeKey"] == "$default"
    assert text["isBase64Encoded"] is False
    assert text["body"] == "{}"


def test_unauthenticated_route_has_no_authorizer() -> None:
    built = event(target="/health", route=ROUTES[3], claims=None)

    assert "authorizer" not in built["requestContext"]
    assert "queryStringParameters" not in built
    assert "body" not in built


def test_bearer_token_claims_are_used_unverified() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "alice"}).encode()).decode()

    assert bearer_claims(f"Bearer h.{payload.rstrip('=')}.s") == {"sub": "alice"}
    assert bearer_claims("Bearer not-a-jwt") is None
    assert bearer_claims(None) is None


def test_function_answer_becomes_http() -> None:
    answer = http_answer(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain"},
            "multiValueHeaders": {"X-Many": ["1", "2"]},
            "cookies": ["a=1", "b=2"],
            "body": base64.b64encode(b"hi").decode(),
            "isBase64Encoded": True,
        }
    )
    bare = http_answer({"ok": True})

    assert answer.status == 201
    assert answer.body == b"hi"
    assert ("X-Many", "1") in answer.headers and ("X-Many", "2") in answer.headers
    assert [v for k, v in answer.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert (bare.status, json.loads(bare.body)) == (200, {"ok": True})


SOURCE = QueueSource(
    queue="TaskQueue",
    url="http://127.0.0.1:1/123456789012/local-TaskQueue",
    arn="arn:aws:sqs:us-east-1:123456789012:local-TaskQueue",
    region="us-east-1",
    batch_size=10,
    window_seconds=1,
    reports_batch_item_failures=True,
)


def test_sqs_message_becomes_a_lambda_record() -> None:
    record = sqs_record(
        {
            "MessageId": "m1",
            "ReceiptHandle": "r1",
            "Body": '{"task_id": "x"}',
            "MD5OfBody": "abc",
            "Attributes": {"ApproximateReceiveCount": "2"},
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "retry"}},
        },
        SOURCE,
    )

    assert record["messageId"] == "m1"
    assert record["receiptHandle"] == "r1"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["kind"]["stringValue"] == "retry"
    assert record["eventSourceARN"] == SOURCE.arn
    assert record["eventSource"] == "aws:sqs"
    assert record["md5OfBody"] == "abc"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"a", "b"}),
        (None, set()),
    ],
)
def test_only_reported_failures_stay_on_the_queue(response: Any, expected: set[str]) -> None:
    assert failed_message_ids(response, ["a", "b"], reports=True) == expected


def test_each_mapping_runs_up_to_its_own_maximum_concurrency(
    transformed_template: dict[str, Any],
) -> None:
    # Given the worker's mappings as the template scales them
    config = event_sources(transformed_template, "WorkerFunction")
    limits = {source.queue: source.maximum_concurrency for source in config.sqs}
    assert limits == {
        "HighPriorityIsolationQueue": 5,
        "HighPriorityQueue": 20,
        "PartsQueue": 200,
        "TaskIsolationQueue": 5,
        "TaskQueue": 50,
    }
    sources = [
        dataclasses.replace(SOURCE, queue=queue, maximum_concurrency=limit)
        for queue, limit in limits.items()
    ]
    # When a poller runs them with 8 workers
    poller = SqsPoller(None, sources, None, workers=8)  # type: ignore[arg-type]
    # Then each mapping runs 8 batches at once but the isolation queues 5: a limit is its own
    assert [poller.concurrency(source) for source in sources] == [5, 8, 8, 5, 8]
    assert poller.worker_count == 34


# ------------------------------------------------------------------------------- WebSocket


def test_the_websocket_api_comes_from_the_transformed_template(
    transformed_template: dict[str, Any],
) -> None:
    api = websocket_api(transformed_template)

    assert api == WebSocketApi(
        stage="live",
        routes={
            "$connect": "WebSocketFunction",
            "$disconnect": "WebSocketFunction",
            "$default": "WebSocketFunction",
        },
        authorized=frozenset({"$connect"}),
        answering=frozenset({"$default"}),
    )
    assert local_config(api) == (
        'window.TASKQUEUE_CONFIG = {"apiBaseUrl": "", "websocketUrl": "/live"};\n'
    )


def websocket_connection(authorizer: dict[str, Any]) -> LocalConnection:
    return LocalConnection(
        connection_id="Tl9h5cWioAMCI1g=",
        authorizer=authorizer,
        source_ip="127.0.0.1",
        user_agent="pytest",
        host="127.0.0.1:8000",
        protocol=ServerProtocol(),
        write=lambda data: None,
        connected_at=1795420800000,
    )


def test_websocket_events_are_shaped_per_event_type_with_the_authorizers_context() -> None:
    api = WebSocketApi("live", {"$connect": "F"}, frozenset({"$connect"}), frozenset())
    connection = websocket_connection(authorizer_context("x.eyJzdWIiOiJhbGljZSJ9.x", "dev-user"))

    connect = websocket_event(
        api, connection, "$connect", headers={"Host": "h"}, query={"token": "t"}
    )
    message = websocket_event(api, connection, "$default", body='{"action": "ping"}')
    gone = websocket_event(api, connection, "$disconnect", close_code=1001, close_reason="bye")

    assert connect["requestContext"]["eventType"] == "CONNECT"
    assert connect["queryStringParameters"] == {"token": "t"}
    assert connect["multiValueHeaders"] == {"Host": ["h"]}
    assert message["requestContext"]["eventType"] == "MESSAGE"
    assert message["body"] == '{"action": "ping"}' and "messageId" in message["requestContext"]
    assert gone["requestContext"]["eventType"] == "DISCONNECT"
    assert (
        gone["requestContext"]["disconnectStatusCode"],
        gone["requestContext"]["disconnectReason"],
    ) == (1001, "bye")
    for built in (connect, message, gone):
        context = built["requestContext"]
        assert context["connectionId"] == "Tl9h5cWioAMCI1g=" and context["stage"] == "live"
        assert context["connectedAt"] == 1795420800000
        assert context["authorizer"]["owner"] == "alice"  # the token's sub, not verified


def test_without_a_token_the_dev_user_connects_and_without_an_authorizer_no_one() -> None:
    api = WebSocketApi("live", {"$connect": "F"}, frozenset(), frozenset())

    assert authorizer_context(None, "dev-user")["owner"] == "dev-user"
    event = websocket_event(api, websocket_connection({}), "$connect")
    assert "authorizer" not in event["requestContext"]
