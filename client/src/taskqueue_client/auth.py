"""Signing in to Cognito from a terminal: authorization code with PKCE through a loopback
redirect, the flow RFC 8252 prescribes for native apps.

Cognito user pools offer the authorization code, implicit and client credentials grants, not
the device authorization grant, so the browser comes back to `http://localhost:8976/callback`,
a callback URL of the stack's app client (template.yaml). Tokens are kept per profile in
`tokens.json` beside the profile file, readable by the user only, and refreshed when they
expire.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import secrets
import time
import webbrowser
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from taskqueue_client.config import Profile, config_dir

LOGIN_PORT = 8976
CALLBACK_PATH = "/callback"
SCOPES = "openid email profile"
EXPIRY_MARGIN_SECONDS = 60
LOGIN_TIMEOUT_SECONDS = 300


class LoginError(RuntimeError):
    """The sign-in did not complete (denied, timed out, or the token endpoint refused)."""


@dataclass
class Tokens:
    id_token: str
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float = 0.0  # Unix time; 0: unknown (a token given outright)

    @property
    def bearer(self) -> str:
        # The API's JWT authorizer takes either; the ID token carries the user's e-mail too.
        return self.id_token or self.access_token or ""

    def expired(self, now: float) -> bool:
        return bool(self.expires_at) and now >= self.expires_at - EXPIRY_MARGIN_SECONDS


class TokenStore:
    """tokens.json: {profile: tokens}, mode 0600."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "tokens.json"

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, profile: str) -> Tokens | None:
        entry = self._read().get(profile)
        if not isinstance(entry, dict) or not entry.get("id_token"):
            return None
        return Tokens(**{k: v for k, v in entry.items() if k in Tokens.__dataclass_fields__})

    def save(self, profile: str, tokens: Tokens) -> None:
        data = self._read()
        data[profile] = asdict(tokens)
        self._write(data)

    def delete(self, profile: str) -> bool:
        data = self._read()
        if data.pop(profile, None) is None:
            return False
        self._write(data)
        return True

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: the tokens are never readable by others, even briefly.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636."""
    verifier = base64url(secrets.token_bytes(48))
    return verifier, base64url(hashlib.sha256(verifier.encode()).digest())


def domain_url(domain: str) -> str:
    """The hosted UI's base URL from `tasks-x.auth.eu-west-1.amazoncognito.com` or a URL."""
    domain = domain.strip().rstrip("/")
    return domain if domain.startswith(("https://", "http://")) else f"https://{domain}"


@dataclass
class Cognito:
    """The user pool's OAuth 2.0 endpoints for one app client (public: no secret)."""

    domain: str
    client_id: str
    http: httpx.Client | None = None

    @classmethod
    def of(cls, profile: Profile) -> Cognito | None:
        if profile.cognito_domain and profile.client_id:
            return cls(domain_url(profile.cognito_domain), profile.client_id)
        return None

    def authorize_url(self, redirect_uri: str, state: str, challenge: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": SCOPES,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{domain_url(self.domain)}/oauth2/authorize?{query}"

    def _token_request(self, form: dict[str, str], now: float) -> dict[str, Any]:
        http = self.http or httpx.Client(timeout=30)
        try:
            response = http.post(
                f"{domain_url(self.domain)}/oauth2/token",
                data={"client_id": self.client_id, **form},
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.HTTPError as exc:
            raise LoginError(f"token endpoint unreachable: {exc}") from exc
        finally:
            if self.http is None:
                http.close()
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code != 200 or not isinstance(data, dict):
            reason = data.get("error_description") or data.get("error") if data else None
            raise LoginError(f"token endpoint answered {response.status_code}: {reason}")
        data["expires_at"] = now + float(data.get("expires_in") or 3600)
        return data

    def exchange_code(self, code: str, verifier: str, redirect_uri: str, now: float) -> Tokens:
        data = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            now,
        )
        return Tokens(
            id_token=data.get("id_token") or "",
            access_token=data.get("access_token"),
            refresh_token=data.get("refresh_token"),
            expires_at=data["expires_at"],
        )

    def refresh(self, tokens: Tokens, now: float) -> Tokens:
        if not tokens.refresh_token:
            raise LoginError("the sign-in expired and cannot be refreshed: run `tq login`")
        data = self._token_request(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}, now
        )
        # Cognito sends no new refresh token on a refresh: keep the one we have.
        return Tokens(
            id_token=data.get("id_token") or tokens.id_token,
            access_token=data.get("access_token") or tokens.access_token,
            refresh_token=data.get("refresh_token") or tokens.refresh_token,
            expires_at=data["expires_at"],
        )


@dataclass
class _Callback:
    params: dict[str, str] | None = None


def _callback_server(port: int, outcome: _Callback) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            split = urlsplit(self.path)
            if split.path != CALLBACK_PATH:
                self.send_error(404)
                return
            outcome.params = {k: v[-1] for k, v in parse_qs(split.query).items()}
            failed = "error" in outcome.params
            text = (
                f"Sign-in failed: {html.escape(outcome.params['error'])}"
                if failed
                else "Signed in. You can close this tab and return to the terminal."
            )
            body = f"<!doctype html><title>tq</title><p>{text}</p>".encode()
            self.send_response(400 if failed else 200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the terminal shows the login's own lines."""

    # Loopback only: nothing outside this machine can deliver (or steal) the code.
    return HTTPServer(("127.0.0.1", port), Handler)


def login_with_browser(
    cognito: Cognito,
    *,
    port: int = LOGIN_PORT,
    open_browser: Callable[[str], Any] = webbrowser.open,
    say: Callable[[str], None] = print,
    timeout: float = LOGIN_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Tokens:
    """Open the hosted sign-in page; take the code the browser brings back to the loopback
    callback; exchange it (with the PKCE verifier) for tokens."""
    outcome = _Callback()
    try:
        server = _callback_server(port, outcome)
    except OSError as exc:
        raise LoginError(f"cannot listen on localhost:{port} for the sign-in: {exc}") from exc
    redirect_uri = f"http://localhost:{server.server_address[1]}{CALLBACK_PATH}"
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    url = cognito.authorize_url(redirect_uri, state, challenge)
    say(f"Opening the sign-in page; if no browser opens, visit:\n  {url}")
    open_browser(url)
    deadline = clock() + timeout
    try:
        while outcome.params is None:
            remaining = deadline - clock()
            if remaining <= 0:
                raise LoginError(f"no sign-in within {timeout:g} s")
            server.timeout = min(remaining, 1.0)
            server.handle_request()
    finally:
        server.server_close()
    params = outcome.params
    if "error" in params:
        reason = params.get("error_description") or params["error"]
        raise LoginError(f"sign-in refused: {reason}")
    if not secrets.compare_digest(params.get("state", ""), state):
        raise LoginError("the sign-in answer does not belong to this login (state differs)")
    if not params.get("code"):
        raise LoginError("the sign-in answer carries no code")
    return cognito.exchange_code(params["code"], verifier, redirect_uri, clock())


def token_source(
    profile: Profile,
    store: TokenStore | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> Callable[[], str | None]:
    """The bearer token for each request: the one given outright, else the signed-in one
    (refreshed, and saved, when it is about to expire), else none (a local stack)."""
    tokens_store = store or TokenStore()
    cognito = Cognito.of(profile)

    loaded: list[Tokens] = []  # read once; replaced when refreshed

    def current() -> str | None:
        if profile.token:
            return profile.token
        if not loaded:
            tokens = tokens_store.load(profile.name)
            if tokens is None:
                return None
            loaded.append(tokens)
        if loaded[0].expired(clock()) and cognito is not None:
            loaded[0] = cognito.refresh(loaded[0], clock())
            tokens_store.save(profile.name, loaded[0])
        return loaded[0].bearer

    return current
