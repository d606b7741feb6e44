"""The WebSocket API's routes: $connect records the page's connection under its owner,
$disconnect forgets it, $default answers a page's keep-alive ping.

The owner is what the $connect authorizer put into the connection's context (the token's
`sub`, the same identity the HTTP API uses); API Gateway passes it on to every route of the
connection. The page sends ``{"action": "ping"}`` every few minutes, because API Gateway
closes a connection that is idle for 10 minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskqueue.errors import TooManyConnections
from taskqueue.store.connections import ConnectionStore

MAX_MESSAGE_CHARS = 1024  # a ping is 18 characters; nothing longer is read


class WebSocketRequest(BaseModel):
    """The parts of an API Gateway WebSocket event the routes use."""

    model_config = ConfigDict(frozen=True)

    route_key: str = Field(min_length=1, max_length=128)
    connection_id: str = Field(min_length=1, max_length=128)
    owner: str | None = None
    body: str | None = None

    @classmethod
    def of(cls, event: dict[str, Any]) -> WebSocketRequest:
        context = event.get("requestContext") or {}
        authorizer = context.get("authorizer") or {}
        owner = authorizer.get("owner") if isinstance(authorizer, dict) else None
        body = event.get("body")
        return cls(
            route_key=context.get("routeKey", ""),
            connection_id=context.get("connectionId", ""),
            owner=owner if isinstance(owner, str) and owner else None,
            body=body if isinstance(body, str) else None,
        )


def answer(status: int, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """A route's integration response; the body of a $default answer reaches the page."""
    response: dict[str, Any] = {"statusCode": status}
    if payload is not None:
        response["body"] = json.dumps(payload, separators=(",", ":"))
    return response


def connect(request: WebSocketRequest, connections: ConnectionStore) -> dict[str, Any]:
    if request.owner is None:
        # Only a missing authorizer gets here (the template puts one on $connect).
        return answer(401, {"type": "error", "message": "no identity"})
    try:
        connections.add(request.owner, request.connection_id)
    except TooManyConnections as exc:
        return answer(429, {"type": "error", "message": exc.message})
    return answer(200)


def disconnect(request: WebSocketRequest, connections: ConnectionStore) -> dict[str, Any]:
    if request.owner is not None:
        connections.remove(request.owner, request.connection_id)
    return answer(200)


def message(request: WebSocketRequest, connections: ConnectionStore) -> dict[str, Any]:
    text = request.body or ""
    action = None
    if len(text) <= MAX_MESSAGE_CHARS:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        action = parsed.get("action") if isinstance(parsed, dict) else None
    if action == "ping":
        return answer(200, {"type": "pong"})
    return answer(400, {"type": "error", "message": 'the only message is {"action": "ping"}'})


Route = Callable[[WebSocketRequest, ConnectionStore], dict[str, Any]]
# Every route key of the template's WebSocket API, and what it does.
ROUTES: dict[str, Route] = {
    "$connect": connect,
    "$disconnect": disconnect,
    "$default": message,
}


def handle(event: dict[str, Any], connections: ConnectionStore) -> dict[str, Any]:
    """One WebSocket route event -> its integration response."""
    try:
        request = WebSocketRequest.of(event)
    except ValidationError:
        return answer(400, {"type": "error", "message": "not a WebSocket route event"})
    route = ROUTES.get(request.route_key)
    if route is None:
        return answer(404, {"type": "error", "message": f"no route {request.route_key}"})
    return route(request, connections)
