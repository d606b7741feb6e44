"""The HTTP API, locally: requests become API Gateway HTTP API (payload 2.0) events.

Routes come from the transformed template's ``AWS::ApiGatewayV2::Api`` (the paths SAM
generates from the functions' ``HttpApi`` events); a request under one of their first path
segments goes to the function, anything else is a file of ``static_site/`` (plus a
generated ``/config.js``). The JWT authorizer is stood in for by the dev user's claims.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from devstack.resources import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, REPO_ROOT, Template
from devstack.runtime import say

if TYPE_CHECKING:
    from devstack.websocket import LocalWebSocketApi

STATIC_ROOT = REPO_ROOT / "static_site"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own limit on a request body
API_ID = "devstack"
INTEGRATION_FUNCTION = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")
TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|[\w.+-]+\+json|xml|[\w.+-]+\+xml|javascript|"
    r"x-www-form-urlencoded|graphql|yaml|x-yaml))(;.*)?$",
    re.IGNORECASE,
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
}

Invoke = Callable[[str, dict[str, Any]], Any]


# ------------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ... or ANY
    path: str  # "/tasks/{id}"
    function: str  # logical id
    authorized: bool  # False for Authorizer: NONE

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def first_segment(self) -> str:
        return self.path.strip("/").split("/", 1)[0]

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if the path fits the route's template, else None."""
        pattern = ""
        names: list[str] = []
        for piece in re.split(r"(\{[^}]+\})", self.path):
            if piece.startswith("{") and piece.endswith("}"):
                name = piece[1:-1]
                greedy = name.endswith("+")
                names.append(name.rstrip("+"))
                pattern += "(.+)" if greedy else "([^/]+)"
            else:
                pattern += re.escape(piece)
        found = re.fullmatch(pattern, path)
        return dict(zip(names, found.groups(), strict=True)) if found else None


def http_routes(transformed: Template) -> list[Route]:
    """Every HTTP API route of the template and the function it invokes."""
    routes: list[Route] = []
    for resource in transformed.get("Resources", {}).values():
        if resource.get("Type") != "AWS::ApiGatewayV2::Api":
            continue
        paths = ((resource.get("Properties") or {}).get("Body") or {}).get("paths") or {}
        for path, operations in paths.items():
            for method, operation in operations.items():
                integration = operation.get("x-amazon-apigateway-integration") or {}
                found = INTEGRATION_FUNCTION.search(json.dumps(integration.get("uri")))
                if not found:
                    continue
                security = operation.get("security") or []
                authorized = not any("NONE" in requirement for requirement in security)
                verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                routes.append(Route(verb, path, found.group(1), authorized))
    # Literal paths before templated ones, as API Gateway prefers the most specific route.
    return sorted(routes, key=lambda route: (route.path.count("{"), route.path, route.method))


def find_route(
    routes: Iterable[Route], method: str, path: str
) -> tuple[Route | None, dict[str, str]]:
    """The route for the request, or a route of the same path (for OPTIONS and 405s)."""
    same_path: tuple[Route | None, dict[str, str]] = (None, {})
    for route in routes:
        params = route.match(path)
        if params is None:
            continue
        if route.method in (method, "ANY"):
            return route, params
        if same_path[0] is None:
            same_path = (route, params)
    return same_path


# ------------------------------------------------------------------------------- events


def dev_claims(user: str, admin: bool = False) -> dict[str, str]:
    """Claims of an ID token for the local user (Cognito's names; `admin`: in the operators'
    group, written as HTTP API hands a list claim over)."""
    now = int(time.time())
    groups = {"cognito:groups": "[admin]"} if admin else {}
    return {
        **groups,
        "sub": user,
        "email": f"{user}@example.com",
        "email_verified": "true",
        "cognito:username": user,
        "token_use": "id",
        "iss": f"https://cognito-idp.{DEFAULT_REGION}.amazonaws.com/{DEFAULT_REGION}_devstack",
        "aud": "devstack",
        "auth_time": str(now),
        "iat": str(now),
        "exp": str(now + 3600),
    }


def bearer_claims(authorization: str | None) -> dict[str, str] | None:
    """The payload of a bearer JWT, unverified: lets a local request act as another user."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    parts = authorization.split()[-1].split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict) or not payload.get("sub"):
        return None
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in payload.items()
    }


def is_text(content_type: str | None) -> bool:
    return content_type is None or bool(TEXT_TYPES.match(content_type.strip()))


def http_api_event(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    protocol: str,
    route: Route | None,
    path_parameters: dict[str, str],
    claims: dict[str, str] | None,
) -> dict[str, Any]:
    """An HTTP API payload 2.0 event, built the way API Gateway builds it."""
    split = urlsplit(target)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[lower] = f"{merged[lower]},{value}" if lower in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    route_key = route.key if route is not None and route.method == method else "$default"
    context: dict[str, Any] = {
        "accountId": DEFAULT_ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": merged.get("host", "localhost"),
        "domainPrefix": merged.get("host", "localhost").split(".", 1)[0],
        "http": {
            "method": method,
            "path": split.path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
        "routeKey": route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": split.path,
        "rawQueryString": split.query,
        "headers": merged,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        if is_text(merged.get("content-type")):
            event["body"] = body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_answer(result: Any) -> HttpAnswer:
    """A function's answer as API Gateway turns it into HTTP (payload 2.0 rules)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # A bare value: API Gateway assumes 200 and JSON.
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpAnswer(200, [("Content-Type", "application/json")], text.encode())
    body_value = result.get("body") or ""
    body = (
        base64.b64decode(body_value)
        if result.get("isBase64Encoded")
        else (body_value if isinstance(body_value, str) else json.dumps(body_value)).encode()
    )
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((name, str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    if not any(name.lower() == "content-type" for name, _ in headers) and body:
        headers.append(("Content-Type", "application/json"))
    return HttpAnswer(int(result["statusCode"]), headers, body)


def api_error(status: int, message: str) -> HttpAnswer:
    """API Gateway's own error answers ({"message": ...})."""
    return HttpAnswer(
        status,
        [("Content-Type", "application/json")],
        json.dumps({"message": message}).encode(),
    )


def call_api(
    routes: Iterable[Route],
    invoke: Invoke,
    dev_user: str | None,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
    *,
    dev_admin: bool = False,
) -> HttpAnswer:
    """One API request through its function, as API Gateway would route and answer it (the
    gateway's port and the in-process harness both come here). Without ``dev_user`` an
    authorized route needs a bearer token, as the HTTP API's JWT authorizer does;
    ``dev_admin``: the local user is an operator."""
    path = urlsplit(target).path
    route, params = find_route(routes, method, path)
    if route is None:
        return api_error(404, "Not Found")
    claims = None
    if route.authorized and method != "OPTIONS":
        authorization = next((v for k, v in headers if k.lower() == "authorization"), None)
        claims = bearer_claims(authorization) or (
            dev_claims(dev_user, dev_admin) if dev_user else None
        )
        if claims is None:
            return api_error(401, "Unauthorized")
    event = http_api_event(
        method=method,
        target=target,
        headers=headers,
        body=body,
        source_ip=source_ip,
        protocol=protocol,
        route=route,
        path_parameters=params,
        claims=claims,
    )
    try:
        return http_answer(invoke(route.function, event))
    except Exception:
        say(f"{route.function} raised:\n{traceback.format_exc().rstrip()}", sys.stderr)
        return api_error(500, "Internal Server Error")


# ------------------------------------------------------------------------------- server


class Gateway:
    """The local HTTP port: API routes to the functions, the rest to static_site/."""

    def __init__(
        self,
        routes: list[Route],
        invoke: Invoke,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        dev_user: str = "dev-user",
        dev_admin: bool = False,
        static_root: Path = STATIC_ROOT,
        config_js: str = 'window.TASKQUEUE_CONFIG = {"apiBaseUrl": ""};\n',
        websocket: LocalWebSocketApi | None = None,
    ) -> None:
        self.routes = routes
        self.websocket = websocket
        self.invoke = invoke
        self.dev_user = dev_user
        self.dev_admin = dev_admin
        self.static_root = static_root.resolve()
        self.config_js = config_js
        self.api_segments = {route.first_segment for route in routes}
        gateway = self

        class Handler(_RequestHandler):
            owner = gateway

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        return f"http://{shown}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway"
        )
        self._thread.start()

    def stop(self) -> None:
        if self.websocket is not None:
            self.websocket.close_all()
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()

    def is_api(self, path: str) -> bool:
        return path.strip("/").split("/", 1)[0] in self.api_segments

    # --------------------------------------------------------------------- answers

    def call_api(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        protocol: str,
    ) -> HttpAnswer:
        return call_api(
            self.routes,
            self.invoke,
            self.dev_user,
            method,
            target,
            headers,
            body,
            source_ip,
            protocol,
            dev_admin=self.dev_admin,
        )

    def static_file(self, method: str, path: str) -> HttpAnswer:
        if method not in ("GET", "HEAD"):
            return HttpAnswer(405, [("Allow", "GET, HEAD")], b"")
        if path == "/config.js":
            return HttpAnswer(
                200,
                [
                    ("Content-Type", CONTENT_TYPES[".js"]),
                    ("Cache-Control", "no-store"),
                ],
                self.config_js.encode(),
            )
        relative = path.lstrip("/") or "index.html"
        file = (self.static_root / relative).resolve()
        if file.is_dir():
            file = file / "index.html"
        if not file.is_relative_to(self.static_root) or not file.is_file():
            return HttpAnswer(404, [("Content-Type", "text/plain")], b"not found\n")
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        return HttpAnswer(
            200,
            [("Content-Type", content_type), ("Cache-Control", "no-cache")],
            file.read_bytes(),
        )


class _RequestHandler(BaseHTTPRequestHandler):
    owner: Gateway

    def version_string(self) -> str:
        return "devstack"

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: one line per request is printed by _handle instead."""

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if sum(map(len, chunks)) > MAX_PAYLOAD_BYTES:
                    return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.monotonic()
        method = self.command
        path = urlsplit(self.path).path
        gateway = self.owner
        websocket = gateway.websocket
        if websocket is not None and websocket.is_upgrade(path, self.headers):
            websocket.serve(self)
            return
        body = self._read_body()
        if body is None:
            answer = api_error(413, "Request Entity Too Large")
        elif websocket is not None and websocket.is_management(path):
            answer = websocket.manage(method, path, body)
        elif gateway.is_api(path):
            answer = gateway.call_api(
                method,
                self.path,
                list(self.headers.items()),
                body,
                self.client_address[0],
                self.request_version,
            )
        else:
            answer = gateway.static_file(method, path)
        self._send(answer, head=method == "HEAD")
        millis = (time.monotonic() - started) * 1000
        # A push to a page is one request per connection and change: only failures are shown.
        pushed = websocket is not None and websocket.is_management(path) and answer.status < 300
        if not pushed:
            say(f"{method:<7} {self.path} {answer.status} {millis:.0f} ms")

    def _send(self, answer: HttpAnswer, head: bool) -> None:
        try:
            reason = HTTPStatus(answer.status).phrase
        except ValueError:
            reason = ""
        self.send_response(answer.status, reason)
        for name, value in answer.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if not head:
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle
