"""The WebSocket API, locally: the gateway's port accepts WebSocket upgrades at
``/<stage>``, runs the template's routes with API Gateway's WebSocket events, and answers the
management API (``POST|GET|DELETE /<stage>/@connections/<id>``) that the push function calls.

On AWS the management endpoint is the WebSocket API's own host and stage
(``https://<api>.execute-api.<region>.amazonaws.com/<stage>``); locally it is the gateway's
(``http://127.0.0.1:<port>/<stage>``), so PostToConnection from the real boto3 client really
reaches the page's socket, and a post to a connection that is gone gets API Gateway's 410
``GoneException``. (moto's own management API records posts in memory and has no socket to
deliver to, nor a gone connection: it serves the in-process tests instead.)

The $connect authorizer is stood in for as the HTTP side's JWT authorizer is: a ``token``
query parameter is decoded *without verification* (so a local page or test can act as
another user), else the dev user connects. The protocol itself is the ``websockets``
library's Sans-I/O layer, driven from the gateway's request thread.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from devstack.gateway import HttpAnswer, api_error, bearer_claims, dev_claims
from devstack.resources import Template
from devstack.runtime import say

API_ID = "devstack-ws"
MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's limit on a WebSocket message
READ_BYTES = 64 * 1024
_TARGET = re.compile(r"integrations/\$\{([A-Za-z0-9]+)\}")
_FUNCTION_ARN = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")

Invoke = Callable[[str, dict[str, Any]], Any]


# ------------------------------------------------------------------------------- template


@dataclass(frozen=True)
class WebSocketApi:
    """The template's WebSocket API: its stage and which function serves each route key."""

    stage: str
    routes: dict[str, str]  # route key -> function logical id
    authorized: frozenset[str]  # route keys with an authorizer ($connect)
    answering: frozenset[str]  # route keys whose function's answer goes back to the page

    @property
    def path(self) -> str:
        return f"/{self.stage}"


def _properties(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def _refers_to(value: Any, logical_id: str) -> bool:
    return value == {"Ref": logical_id}


def websocket_api(transformed: Template) -> WebSocketApi | None:
    """The first WEBSOCKET API of the transformed template, or None if it has none."""
    apis = [
        logical_id
        for logical_id, props in _properties(transformed, "AWS::ApiGatewayV2::Api").items()
        if props.get("ProtocolType") == "WEBSOCKET"
    ]
    if not apis:
        return None
    api = apis[0]
    integrations = _properties(transformed, "AWS::ApiGatewayV2::Integration")
    route_ids: dict[str, str] = {}
    routes: dict[str, str] = {}
    authorized: set[str] = set()
    for logical_id, props in _properties(transformed, "AWS::ApiGatewayV2::Route").items():
        if not _refers_to(props.get("ApiId"), api):
            continue
        target = _TARGET.search(json.dumps(props.get("Target")))
        integration = integrations.get(target.group(1)) if target else None
        function = _FUNCTION_ARN.search(json.dumps((integration or {}).get("IntegrationUri")))
        if not function:
            continue
        key = str(props["RouteKey"])
        routes[key] = function.group(1)
        route_ids[logical_id] = key
        if props.get("AuthorizationType") not in (None, "NONE"):
            authorized.add(key)
    answering = {
        route_ids[props["RouteId"]["Ref"]]
        for props in _properties(transformed, "AWS::ApiGatewayV2::RouteResponse").values()
        if isinstance(props.get("RouteId"), dict) and props["RouteId"].get("Ref") in route_ids
    }
    stages = [
        str(props["StageName"])
        for props in _properties(transformed, "AWS::ApiGatewayV2::Stage").values()
        if _refers_to(props.get("ApiId"), api)
    ]
    return WebSocketApi(
        stage=stages[0] if stages else "live",
        routes=routes,
        authorized=frozenset(authorized),
        answering=frozenset(answering),
    )


# ------------------------------------------------------------------------------- events


def new_connection_id() -> str:
    """An id shaped like API Gateway's (12 random bytes, base64: may hold '+', '/' and '=')."""
    return base64.b64encode(os.urandom(11)).decode()


def _now() -> tuple[str, int]:
    now = datetime.now(UTC)
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000"), int(now.timestamp() * 1000)


@dataclass
class LocalConnection:
    """One open WebSocket: its identity, and the protocol state shared by the reading thread
    and the threads that post to it (guarded by `lock`)."""

    connection_id: str
    authorizer: dict[str, Any]
    source_ip: str
    user_agent: str
    host: str
    protocol: ServerProtocol
    write: Callable[[bytes], None]
    connected_at: int = field(default_factory=lambda: int(time.time() * 1000))
    last_active_at: int = field(default_factory=lambda: int(time.time() * 1000))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def flush(self) -> None:
        """Send what the protocol has queued (call with `lock` held)."""
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.write(chunk)

    def send(self, data: bytes) -> bool:
        """A message to the page; False when the connection is closing or closed."""
        with self.lock:
            if self.protocol.state is not State.OPEN:
                return False
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                self.protocol.send_binary(data)
            else:
                self.protocol.send_text(data)
            self.flush()
            self.last_active_at = int(time.time() * 1000)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        with self.lock:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(code, reason)
                self.flush()


def websocket_event(
    api: WebSocketApi,
    connection: LocalConnection,
    route_key: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: str | None = None,
    close_code: int | None = None,
    close_reason: str = "",
) -> dict[str, Any]:
    """An API Gateway WebSocket (Lambda proxy) event, as API Gateway builds it per event type."""
    request_time, epoch = _now()
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
        "requestTime": request_time,
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": connection.connected_at,
        "requestTimeEpoch": epoch,
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        "requestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
        "domainName": connection.host,
        "connectionId": connection.connection_id,
        "apiId": API_ID,
    }
    if connection.authorizer:
        # What the $connect authorizer returned, on every route of the connection.
        context["authorizer"] = connection.authorizer
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if event_type == "CONNECT":
        merged = headers or {}
        event["headers"] = merged
        event["multiValueHeaders"] = {name: [value] for name, value in merged.items()}
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    elif event_type == "DISCONNECT":
        merged = {"Host": connection.host, "X-Forwarded-For": connection.source_ip}
        event["headers"] = merged
        event["multiValueHeaders"] = {name: [value] for name, value in merged.items()}
        context["disconnectStatusCode"] = close_code if close_code is not None else 1006
        context["disconnectReason"] = close_reason
    else:
        context["messageId"] = base64.b64encode(uuid.uuid4().bytes[:10]).decode()
        event["body"] = body or ""
    return event


def authorizer_context(token: str | None, dev_user: str) -> dict[str, Any]:
    """What the template's authorizer answers for a valid token, locally: the token's `sub`
    (decoded, not verified) or the dev user."""
    claims = bearer_claims(f"Bearer {token}") if token else None
    owner = (claims or dev_claims(dev_user))["sub"]
    return {"principalId": owner, "owner": owner, "token_use": "id", "integrationLatency": 0}


def _status_of(answer: Any) -> int:
    if isinstance(answer, dict) and "statusCode" in answer:
        return int(answer["statusCode"])
    return 200


# ------------------------------------------------------------------------------- endpoint


class LocalWebSocketApi:
    """Connections on the gateway's port, the routes' functions, the management API."""

    def __init__(self, api: WebSocketApi, invoke: Invoke, dev_user: str) -> None:
        self.api = api
        self.invoke = invoke
        self.dev_user = dev_user
        self.connections: dict[str, LocalConnection] = {}
        self._lock = threading.Lock()
        self._stopping = False

    # --------------------------------------------------------------------- requests

    def is_upgrade(self, path: str, headers: Any) -> bool:
        return path == self.api.path and "websocket" in str(headers.get("Upgrade", "")).lower()

    def is_management(self, path: str) -> bool:
        return path.startswith(f"{self.api.path}/@connections/")

    def _run(self, route_key: str, event: dict[str, Any]) -> Any:
        function = self.api.routes.get(route_key) or self.api.routes.get("$default")
        if function is None:
            return None
        try:
            return self.invoke(function, event)
        except Exception:
            say(f"{function} raised on {route_key}:\n{traceback.format_exc().rstrip()}", sys.stderr)
            return {"statusCode": 500}

    # --------------------------------------------------------------------- a session

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Handshake, $connect, messages until either side closes, $disconnect."""
        handler.close_connection = True
        # The request was parsed by http.server already: one protocol object answers the
        # handshake, and a second one, started OPEN (no extension negotiated), the frames.
        handshake = ServerProtocol(max_size=MAX_MESSAGE_BYTES)
        request = Request(handler.path, Headers(list(handler.headers.items())))
        response = handshake.accept(request)

        def write(data: bytes) -> None:
            handler.wfile.write(data)
            handler.wfile.flush()

        query = dict(parse_qsl(urlsplit(handler.path).query, keep_blank_values=True))
        connection = LocalConnection(
            connection_id=new_connection_id(),
            # As on AWS, only an authorizer on $connect gives the connection an identity.
            authorizer=(
                authorizer_context(query.get("token"), self.dev_user)
                if "$connect" in self.api.authorized
                else {}
            ),
            source_ip=handler.client_address[0],
            user_agent=handler.headers.get("User-Agent", ""),
            host=handler.headers.get("Host", "localhost"),
            protocol=ServerProtocol(state=State.OPEN, max_size=MAX_MESSAGE_BYTES),
            write=write,
        )
        if response.status_code == 101:
            event = websocket_event(
                self.api, connection, "$connect", headers=dict(handler.headers.items()), query=query
            )
            status = _status_of(self._run("$connect", event))
            if not 200 <= status < 300 or self._stopping:
                # API Gateway answers the upgrade with the $connect route's status.
                response = handshake.reject(status if status >= 400 else 403, "Forbidden\n")
        handshake.send_response(response)
        for chunk in handshake.data_to_send():
            write(chunk)
        if response.status_code != 101:
            say(f"WS      {self.api.path} refused ({response.status_code})")
            return
        with self._lock:
            self.connections[connection.connection_id] = connection
        owner = connection.authorizer.get("owner")
        say(f"WS      {self.api.path} connected {connection.connection_id} ({owner})")
        try:
            self._read(handler, connection)
        finally:
            with self._lock:
                self.connections.pop(connection.connection_id, None)
            protocol = connection.protocol
            # The page's close frame, if it sent one; 1006 (abnormal) when the socket dropped.
            received = protocol.close_rcvd
            code = received.code if received is not None else 1006
            event = websocket_event(
                self.api,
                connection,
                "$disconnect",
                close_code=code,
                close_reason=received.reason if received is not None else "",
            )
            self._run("$disconnect", event)
            say(f"WS      {self.api.path} disconnected {connection.connection_id} ({code})")

    def _read(self, handler: BaseHTTPRequestHandler, connection: LocalConnection) -> None:
        protocol = connection.protocol
        message: list[bytes] = []
        while True:
            try:
                data = handler.rfile.read1(READ_BYTES)
            except OSError:
                data = b""
            with connection.lock:
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                frames = protocol.events_received()
                connection.flush()
                done = protocol.close_expected() or protocol.state is State.CLOSED or not data
            for frame in frames:
                if isinstance(frame, Frame) and frame.opcode in (
                    Opcode.TEXT,
                    Opcode.BINARY,
                    Opcode.CONT,
                ):
                    message.append(bytes(frame.data))
                    if frame.fin:
                        self._message(connection, b"".join(message))
                        message = []
            if done:
                return

    def _message(self, connection: LocalConnection, data: bytes) -> None:
        connection.last_active_at = int(time.time() * 1000)
        body = data.decode("utf-8", errors="replace")
        route_key = self._route_key(body)
        event = websocket_event(self.api, connection, route_key, body=body)
        answer = self._run(route_key, event)
        answered_route = route_key if route_key in self.api.routes else "$default"
        if answered_route in self.api.answering and isinstance(answer, dict) and answer.get("body"):
            connection.send(str(answer["body"]).encode())

    def _route_key(self, body: str) -> str:
        """The template's route selection (``$request.body.action``): a route of that name,
        else $default."""
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError):
            action = None
        if isinstance(action, str) and action in self.api.routes and not action.startswith("$"):
            return action
        return "$default"

    # --------------------------------------------------------------------- management API

    def manage(self, method: str, path: str, body: bytes) -> HttpAnswer:
        """PostToConnection, GetConnection, DeleteConnection, as API Gateway answers them."""
        connection_id = unquote(path.removeprefix(f"{self.api.path}/@connections/"))
        with self._lock:
            connection = self.connections.get(connection_id)
        if connection is None:
            return _management_error(410, "GoneException", f"connection {connection_id} is gone")
        if method == "POST":
            if len(body) > MAX_MESSAGE_BYTES:
                return _management_error(413, "PayloadTooLargeException", "message too large")
            if not connection.send(body):
                return _management_error(410, "GoneException", "the connection is closing")
            return HttpAnswer(200, [("Content-Type", "application/json")], b"")
        if method == "GET":
            info = {
                "connectedAt": _iso(connection.connected_at),
                "lastActiveAt": _iso(connection.last_active_at),
                "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            }
            return HttpAnswer(
                200, [("Content-Type", "application/json")], json.dumps(info).encode()
            )
        if method == "DELETE":
            connection.close(1000, "")
            return HttpAnswer(204, [], b"")
        return api_error(405, "Method Not Allowed")

    def close_all(self, timeout: float = 3.0) -> None:
        """At shutdown: a going-away close to every page, then a short wait for their
        $disconnect to run (while the table is still there)."""
        self._stopping = True
        with self._lock:
            connections = list(self.connections.values())
        for connection in connections:
            connection.close(1001, "server stopping")
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            time.sleep(0.05)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _management_error(status: int, code: str, message: str) -> HttpAnswer:
    return HttpAnswer(
        status,
        [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)],
        json.dumps({"message": message}).encode(),
    )


def local_config(api: WebSocketApi | None) -> str:
    """The local page's config.js: the API on the same origin, and the WebSocket path there."""
    config: dict[str, str] = {"apiBaseUrl": ""}
    if api is not None:
        config["websocketUrl"] = api.path
    return f"window.TASKQUEUE_CONFIG = {json.dumps(config)};\n"
