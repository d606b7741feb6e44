"""Signing in (authorization code + PKCE through the loopback redirect) against a stand-in for
Cognito's hosted UI on this machine, refreshing, and where settings come from."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from taskqueue_client.auth import (
    CALLBACK_PATH,
    LOGIN_PORT,
    Cognito,
    LoginError,
    Tokens,
    TokenStore,
    login_with_browser,
    token_source,
)
from taskqueue_client.config import ConfigError, Profile, load_profile, save_profile

CLIENT_ID = "cli-client"


@dataclass
class FakeCognito:
    """`/oauth2/authorize` signs the user in at once and redirects with a code;
    `/oauth2/token` gives tokens for a code only with the verifier of its challenge, and
    refreshes. Records every request."""

    url: str = ""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    deny: bool = False
    expires_in: int = 3600

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256"
        assert query["scope"] == "openid email profile"
        params = {"state": query["state"]}
        if self.deny:
            params["error"] = "access_denied"
        else:
            code = secrets.token_hex(8)
            self.codes[code] = query
            params["code"] = code
        return 302, {"Location": f"{query['redirect_uri']}?{urlencode(params)}"}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        if form["grant_type"] == "refresh_token":
            if form["refresh_token"] != "refresh-1":
                return 400, {"error": "invalid_grant"}
            return 200, {"id_token": "id-2", "access_token": "access-2", "expires_in": 3600}
        asked = self.codes.pop(form["code"], None)
        digest = hashlib.sha256(form["code_verifier"].encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if (
            asked is None
            or asked["code_challenge"] != challenge
            or asked["redirect_uri"] != form["redirect_uri"]
        ):
            return 400, {"error": "invalid_grant"}
        return 200, {
            "id_token": "id-1",
            "access_token": "access-1",
            "refresh_token": "refresh-1",
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }


@pytest.fixture
def cognito() -> Iterator[FakeCognito]:
    fake = FakeCognito()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            assert split.path == "/oauth2/authorize"
            status, headers = fake.authorize({k: v[0] for k, v in parse_qs(split.query).items()})
            self._answer(status, headers)

        def do_POST(self) -> None:
            assert self.path == "/oauth2/token"
            assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
            length = int(self.headers["Content-Length"])
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, body = fake.token(form)
            self._answer(status, {"Content-Type": "application/json"}, json.dumps(body).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def browser(url: str) -> None:
    """A user who signs in: follows the hosted UI's redirect back to the loopback callback."""

    def visit() -> None:
        with httpx.Client(follow_redirects=True, timeout=10) as http:
            http.get(url)

    threading.Thread(target=visit, daemon=True).start()


def test_login_exchanges_the_code_with_the_pkce_verifier_for_tokens(cognito: FakeCognito) -> None:
    # When the user signs in through the browser
    tokens = login_with_browser(
        Cognito(cognito.url, CLIENT_ID),
        port=0,
        open_browser=browser,
        say=lambda text: None,
        clock=lambda: 1000.0,
    )
    # Then the code was exchanged (the stand-in checked verifier and redirect URI)
    assert tokens == Tokens("id-1", "access-1", "refresh-1", expires_at=4600.0)
    (exchange,) = cognito.token_requests
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["client_id"] == CLIENT_ID
    assert exchange["redirect_uri"].startswith("http://localhost:")
    assert exchange["redirect_uri"].endswith("/callback")


def test_a_refused_sign_in_raises_login_error(cognito: FakeCognito) -> None:
    cognito.deny = True
    with pytest.raises(LoginError, match="sign-in refused: access_denied"):
        login_with_browser(
            Cognito(cognito.url, CLIENT_ID), port=0, open_browser=browser, say=lambda text: None
        )
    assert cognito.token_requests == []


def test_an_answer_for_another_login_is_refused(cognito: FakeCognito) -> None:
    # A callback whose state is not this login's (a forged or stale redirect) gets no tokens.
    def forged(url: str) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        callback = f"{query['redirect_uri']}?code=stolen&state=other"
        threading.Thread(target=lambda: httpx.get(callback, timeout=10), daemon=True).start()

    with pytest.raises(LoginError, match="state differs"):
        login_with_browser(
            Cognito(cognito.url, CLIENT_ID), port=0, open_browser=forged, say=lambda text: None
        )
    assert cognito.token_requests == []


def test_no_sign_in_within_the_timeout_raises(cognito: FakeCognito) -> None:
    with pytest.raises(LoginError, match=r"no sign-in within 0\.3 s"):
        login_with_browser(
            Cognito(cognito.url, CLIENT_ID),
            port=0,
            open_browser=lambda url: None,
            say=lambda text: None,
            timeout=0.3,
        )


def test_an_expired_sign_in_is_refreshed_and_saved(cognito: FakeCognito, tmp_path: Path) -> None:
    # Given tokens that expired a minute ago
    store = TokenStore(tmp_path / "tokens.json")
    store.save("default", Tokens("id-1", "access-1", "refresh-1", expires_at=940.0))
    profile = Profile(cognito_domain=cognito.url, client_id=CLIENT_ID)
    token = token_source(profile, store, clock=lambda: 1000.0)
    # When a request asks for the token
    bearer = token()
    # Then it is the refreshed ID token, saved with the old refresh token kept
    assert bearer == "id-2"
    assert store.load("default") == Tokens("id-2", "access-2", "refresh-1", expires_at=4600.0)
    assert token() == "id-2" and len(cognito.token_requests) == 1


def test_a_token_given_outright_wins_over_the_signed_in_one(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.save("default", Tokens("id-1"))
    assert token_source(Profile(token="given"), store)() == "given"
    assert token_source(Profile(), store)() == "id-1"
    assert token_source(Profile(name="other"), store)() is None


def test_settings_come_from_flags_then_environment_then_the_profile(tmp_path: Path) -> None:
    save_profile(Profile(name="prod", url="https://file", client_id="from-file"), tmp_path)
    environ = {"TQ_PROFILE": "prod", "TQ_URL": "https://env"}
    profile = load_profile(directory=tmp_path, environ=environ)
    assert (profile.name, profile.url, profile.client_id) == ("prod", "https://env", "from-file")
    flagged = load_profile(directory=tmp_path, environ=environ, overrides={"url": "https://flag"})
    assert flagged.url == "https://flag"


def test_an_unknown_profile_or_setting_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no profile 'staging'"):
        load_profile("staging", directory=tmp_path, environ={})
    (tmp_path / "config.toml").write_text('[default]\nurl = "x"\npasword = "oops"\n')
    with pytest.raises(ConfigError, match="unknown settings \\['pasword'\\]"):
        load_profile(directory=tmp_path, environ={})


def test_the_stacks_app_client_accepts_the_clis_loopback_callback(
    sam_template: dict[str, Any],
) -> None:
    # Cognito compares redirect URIs exactly: the template and the CLI must name the same one.
    app_client = sam_template["Resources"]["UserPoolClient"]["Properties"]
    assert f"http://localhost:{LOGIN_PORT}{CALLBACK_PATH}" in app_client["CallbackURLs"]
    assert "code" in app_client["AllowedOAuthFlows"]
    assert app_client["GenerateSecret"] is False  # a public client: PKCE, no secret
