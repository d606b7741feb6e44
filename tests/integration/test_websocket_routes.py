"""The WebSocket routes against moto: $connect keeps the connection under its owner with the
table's TTL, $disconnect forgets it, $default answers pings; the owner's partition holds
only the owner's connections, and each owner's open pages are bounded."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from devstack.resources import REPO_ROOT
from taskqueue import wiring
from taskqueue.store.connections import (
    CONNECTION_LIFETIME,
    MAX_CONNECTIONS_PER_OWNER,
)
from tests.helpers import FakeLambdaContext, load_function, reset_function_caches

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def ws_event(
    route_key: str, connection_id: str, owner: str | None, body: str | None = None
) -> dict[str, Any]:
    """A WebSocket route event as API Gateway sends it (the parts the function reads)."""
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "connectionId": connection_id,
        "connectedAt": 1795507200000,
        "stage": "live",
        "apiId": "abcdef123",
        "requestId": "req",
    }
    if owner is not None:
        context["authorizer"] = {"principalId": owner, "owner": owner, "integrationLatency": 12}
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if body is not None:
        event["body"] = body
    return event


@pytest.fixture
def route(function_env: Callable[[str], dict[str, str]]) -> Iterator[Callable[..., dict[str, Any]]]:
    function_env("WebSocketFunction")
    app = load_function("websocket")
    reset_function_caches()

    def call(
        route_key: str, connection_id: str, owner: str | None = "alice", body: str | None = None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = app.lambda_handler(
            ws_event(route_key, connection_id, owner, body), FakeLambdaContext("websocket")
        )
        return answer

    yield call
    reset_function_caches()


@pytest.fixture
def table(function_env: Callable[[str], dict[str, str]]) -> str:
    return function_env("WebSocketFunction")["TABLE_NAME"]


def items(table: str, owner: str) -> list[dict[str, Any]]:
    answer = boto3.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"CONN#{owner}"}},
    )
    return list(answer["Items"])


def test_connect_keeps_the_connection_under_its_owner_until_the_two_hour_limit(
    route: Any, table: str, transformed_template: dict[str, Any]
) -> None:
    answer = route("$connect", "Tl9h5cWioAMCI1g=", "alice")

    assert answer == {"statusCode": 200}
    (item,) = items(table, "alice")
    assert item["sk"] == {"S": "Tl9h5cWioAMCI1g="}
    connected = datetime.strptime(item["connected_at"]["S"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=UTC
    )
    assert abs((connected - datetime.now(UTC)).total_seconds()) < 60
    assert int(item["expires_at"]["N"]) == int((connected + timedelta(hours=2)).timestamp())
    # The expiry is the attribute the table's TTL deletes by.
    ttl = transformed_template["Resources"]["TasksTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}


def test_disconnect_forgets_the_connection_and_only_that_one(route: Any, table: str) -> None:
    route("$connect", "first", "alice")
    route("$connect", "second", "alice")

    answer = route("$disconnect", "first", "alice")

    assert answer == {"statusCode": 200}
    assert [item["sk"]["S"] for item in items(table, "alice")] == ["second"]
    # A $disconnect of a connection already gone is no error.
    assert route("$disconnect", "first", "alice") == {"statusCode": 200}


def test_a_ping_is_answered_with_a_pong(route: Any) -> None:
    answer = route("$default", "c1", "alice", body=json.dumps({"action": "ping"}))

    assert answer == {"statusCode": 200, "body": '{"type":"pong"}'}


@pytest.mark.parametrize(
    "body",
    [
        '{"action": "subscribe"}',
        "not json",
        "[1, 2]",
        "",
        json.dumps({"action": "ping", "x": "y" * 2000}),
    ],
)
def test_any_other_message_gets_a_json_error_and_changes_nothing(
    route: Any, table: str, body: str
) -> None:
    route("$connect", "c1", "alice")

    answer = route("$default", "c1", "alice", body=body)

    assert answer["statusCode"] == 400
    assert json.loads(answer["body"]) == {
        "type": "error",
        "message": 'the only message is {"action": "ping"}',
    }
    assert len(items(table, "alice")) == 1


def test_a_connect_without_an_identity_is_refused(route: Any, table: str) -> None:
    answer = route("$connect", "c1", owner=None)

    assert answer["statusCode"] == 401
    assert items(table, "alice") == []


def test_an_event_that_is_not_a_websocket_route_gets_a_json_error(route: Any) -> None:
    app = load_function("websocket")

    answer = app.lambda_handler({"requestContext": {}}, FakeLambdaContext("websocket"))

    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["type"] == "error"
    assert route("$unknown", "c1")["statusCode"] == 404


def test_an_owner_may_have_a_bounded_number_of_open_pages(route: Any, table: str) -> None:
    for number in range(MAX_CONNECTIONS_PER_OWNER):
        assert route("$connect", f"page-{number}", "alice") == {"statusCode": 200}

    refused = route("$connect", "one-too-many", "alice")
    other_owner = route("$connect", "bob-1", "bob")

    assert refused["statusCode"] == 429
    assert json.loads(refused["body"])["type"] == "error"
    assert len(items(table, "alice")) == MAX_CONNECTIONS_PER_OWNER
    assert other_owner == {"statusCode": 200}
    # A page closed: another may open.
    route("$disconnect", "page-0", "alice")
    assert route("$connect", "one-more", "alice") == {"statusCode": 200}


# ------------------------------------------------------------------------------- the store


def test_an_owners_connections_are_its_own_and_only_the_live_ones(table: str) -> None:
    clock = {"now": NOW}
    store = wiring.new_store(wiring.settings(), clock=lambda: clock["now"]).connections
    store.add("alice", "a1")
    store.add("bob", "b1")
    clock["now"] = NOW + timedelta(minutes=90)
    store.add("alice", "a2")

    assert [c.connection_id for c in store.of_owner("alice")] == ["a1", "a2"]
    assert [c.connection_id for c in store.of_owner("bob")] == ["b1"]
    assert store.of_owner("carol") == []

    # Past the first connection's two hours: TTL may not have deleted it yet, reads skip it.
    clock["now"] = NOW + CONNECTION_LIFETIME + timedelta(seconds=1)
    assert [c.connection_id for c in store.of_owner("alice")] == ["a2"]
    assert store.of_owner("bob") == []
    assert len(items(table, "alice")) == 2


def test_expired_connections_do_not_count_against_the_bound(table: str) -> None:
    clock = {"now": NOW}
    store = wiring.new_store(wiring.settings(), clock=lambda: clock["now"]).connections
    store.max_per_owner = 2
    store.add("alice", "old-1")
    store.add("alice", "old-2")
    clock["now"] = NOW + CONNECTION_LIFETIME + timedelta(minutes=1)

    connection = store.add("alice", "new")

    assert connection.expires_at == int((clock["now"] + CONNECTION_LIFETIME).timestamp())
    assert [c.connection_id for c in store.of_owner("alice")] == ["new"]


def test_the_sample_events_connect_ping_and_disconnect(route: Any, table: str) -> None:
    app = load_function("websocket")
    answers = {
        name: app.lambda_handler(
            json.loads((REPO_ROOT / "events" / f"ws_{name}.json").read_text(encoding="utf-8")),
            FakeLambdaContext("websocket"),
        )
        for name in ("connect", "ping")
    }
    connected = [item["sk"]["S"] for item in items(table, "user-123")]
    disconnect = json.loads(
        (REPO_ROOT / "events" / "ws_disconnect.json").read_text(encoding="utf-8")
    )
    app.lambda_handler(disconnect, FakeLambdaContext("websocket"))

    assert answers == {
        "connect": {"statusCode": 200},
        "ping": {"statusCode": 200, "body": '{"type":"pong"}'},
    }
    assert connected == ["Tl9h5cWioAMCI1g="]
    assert items(table, "user-123") == []
