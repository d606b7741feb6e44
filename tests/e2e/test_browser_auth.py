"""Sign-in in a real browser against Cognito's documented answers: the page configured for a
user pool (config.js), the hosted UI's authorize and token endpoints answered by a route in
the browser with the shapes Cognito documents (authorization code grant: id, access and refresh
tokens; refresh token grant: no new refresh token; errors as {"error": ...} with 400).

What the page does with them is oauth4webapi's (vendored): PKCE S256, state, nonce, the ID
token's issuer, audience and times checked, the refresh grant. The API behind is the local
stack, which takes the ID token's `sub` as the caller.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from tests.e2e.browser_support import WatchedPage, expect
from tests.e2e.devstack_process import Stack

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = pytest.mark.e2e

REGION = "eu-west-1"
POOL = "eu-west-1_Example1"
CLIENT_ID = "4example0client0id000000"
DOMAIN = "tasks-test.auth.eu-west-1.amazoncognito.com"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(claims: dict[str, Any]) -> str:
    """A token shaped as Cognito's (RS256 header); its signature is not checked by the page
    (tokens come straight from the token endpoint over TLS) nor by the local stack."""
    header = b64url(json.dumps({"kid": "test", "alg": "RS256"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(b'signature')}"


@dataclass
class FakeCognito:
    """The hosted UI's endpoints as routes of the page; records what the page sent them."""

    stack: Stack
    user: str
    expires_in: int = 3600
    refresh_answer: tuple[int, dict[str, Any]] | None = None
    wrong_nonce: bool = False
    authorize: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    api_tokens: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "sub": self.user,
            "email": f"{self.user}@example.com",
            "aud": CLIENT_ID,
            "iss": ISSUER,
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + 3600,
            "cognito:username": self.user,
        }
        if nonce is not None:
            claims["nonce"] = "not-the-nonce" if self.wrong_nonce else nonce
        token = jwt(claims)
        self.issued.append(token)
        return token

    def install(self, page: Page) -> None:
        page.route(f"{self.stack.url}/config.js", self.config)
        page.route(f"https://{DOMAIN}/oauth2/authorize*", self.on_authorize)
        page.route(f"https://{DOMAIN}/oauth2/token", self.on_token)
        page.route(f"{self.stack.url}/tasks*", self.on_api)
        page.route(f"{self.stack.url}/stats", self.on_api)

    def config(self, route: Route) -> None:
        cognito = {"region": REGION, "userPoolId": POOL, "clientId": CLIENT_ID, "domain": DOMAIN}
        body = f"window.TASKQUEUE_CONFIG = {json.dumps({'apiBaseUrl': '', 'cognito': cognito})};"
        route.fulfill(status=200, content_type="text/javascript", body=body)

    def on_authorize(self, route: Route) -> None:
        query = {k: v[0] for k, v in parse_qs(urlparse(route.request.url).query).items()}
        self.authorize.append(query)
        back = f"{query['redirect_uri']}?{urlencode({'code': 'the-code', 'state': query['state']})}"
        route.fulfill(status=302, headers={"location": back})

    def on_token(self, route: Route) -> None:
        cors = {"access-control-allow-origin": self.stack.url, "content-type": "application/json"}
        if route.request.method == "OPTIONS":
            route.fulfill(status=204, headers={**cors, "access-control-allow-headers": "*"})
            return
        form = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        self.token_requests.append(form)
        if form["grant_type"] == "refresh_token":
            status, answer = self.refresh_answer or (
                200,
                {
                    "id_token": self.id_token(None),
                    "access_token": jwt({"sub": self.user, "token_use": "access"}),
                    "expires_in": 3600,
                    "token_type": "Bearer",
                },
            )
        else:
            status, answer = (
                200,
                {
                    "id_token": self.id_token(self.authorize[-1].get("nonce")),
                    "access_token": jwt({"sub": self.user, "token_use": "access"}),
                    "refresh_token": "the-refresh-token",
                    "expires_in": self.expires_in,
                    "token_type": "Bearer",
                },
            )
        route.fulfill(status=status, headers=cors, body=json.dumps(answer))

    def on_api(self, route: Route) -> None:
        self.api_tokens.append(route.request.headers.get("authorization", ""))
        route.continue_()


@pytest.fixture
def cognito(page: Page, stack: Stack) -> FakeCognito:
    fake = FakeCognito(stack, f"e2e-auth-{uuid.uuid4().hex[:8]}")
    fake.install(page)
    return fake


def sign_in(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_test_id("signin-view")).to_be_visible()
    page.get_by_test_id("signin-button").click()


def test_sign_in_uses_pkce_state_and_nonce_and_sends_the_id_token(
    page: Page, cognito: FakeCognito, stack: Stack
) -> None:
    sign_in(page)

    expect(page.get_by_test_id("user-name")).to_have_text(f"{cognito.user}@example.com")
    expect(page.get_by_test_id("type-select")).to_be_enabled()
    (asked,) = cognito.authorize
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["redirect_uri"] == f"{stack.url}/"
    assert asked["scope"] == "openid email profile"
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["state"]) >= 22 and len(asked["nonce"]) >= 22
    (exchange,) = cognito.token_requests
    assert exchange["grant_type"] == "authorization_code" and exchange["code"] == "the-code"
    assert exchange["client_id"] == CLIENT_ID and exchange["redirect_uri"] == f"{stack.url}/"
    challenge = b64url(hashlib.sha256(exchange["code_verifier"].encode()).digest())
    assert asked["code_challenge"] == challenge
    assert "code=" not in page.url and "state=" not in page.url
    expect(page.get_by_test_id("task-list")).to_be_attached()
    assert cognito.api_tokens and set(cognito.api_tokens) == {f"Bearer {cognito.issued[0]}"}


def test_a_token_near_its_expiry_is_refreshed_with_the_refresh_token(
    page: Page, cognito: FakeCognito
) -> None:
    cognito.expires_in = 30  # inside the page's one-minute margin: refreshed at once

    sign_in(page)

    expect(page.get_by_test_id("user-name")).to_have_text(f"{cognito.user}@example.com")
    expect(page.get_by_test_id("type-select")).to_be_enabled()
    grants = [r["grant_type"] for r in cognito.token_requests]
    assert grants == ["authorization_code", "refresh_token"]
    refresh = cognito.token_requests[1]
    assert refresh["refresh_token"] == "the-refresh-token" and refresh["client_id"] == CLIENT_ID
    # The API hears the refreshed ID token; Cognito sent no new refresh token: the old one stays.
    assert cognito.api_tokens and set(cognito.api_tokens) == {f"Bearer {cognito.issued[1]}"}
    kept = json.loads(page.evaluate("sessionStorage.getItem('taskqueue.tokens')"))
    assert kept["refresh_token"] == "the-refresh-token" and kept["id_token"] == cognito.issued[1]


def test_a_refused_refresh_ends_the_session(
    page: Page, cognito: FakeCognito, watched: WatchedPage
) -> None:
    watched.allow("status of 400")
    cognito.expires_in = 30
    cognito.refresh_answer = (400, {"error": "invalid_grant"})

    sign_in(page)

    expect(page.get_by_test_id("signin-view")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('taskqueue.tokens')") is None
    assert cognito.api_tokens == []


def test_an_id_token_with_another_nonce_is_refused(page: Page, cognito: FakeCognito) -> None:
    cognito.wrong_nonce = True

    sign_in(page)

    error = page.get_by_test_id("signin-view").locator("#signin-error")
    expect(error).to_contain_text("Sign-in failed")
    assert page.evaluate("sessionStorage.getItem('taskqueue.tokens')") is None
    assert cognito.api_tokens == []


def test_a_code_this_tab_did_not_ask_for_is_refused(page: Page, cognito: FakeCognito) -> None:
    page.goto("/?code=stolen&state=whatever")

    error = page.get_by_test_id("signin-view").locator("#signin-error")
    expect(error).to_have_text("Sign-in failed: this browser tab did not start it. Try again.")
    assert cognito.token_requests == []
    assert "code=" not in page.url
