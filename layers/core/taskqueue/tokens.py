"""Cognito JWT verification for the WebSocket API's authorizer (the HTTP API has API Gateway's
own JWT authorizer; a WebSocket's $connect needs a Lambda one to accept the same tokens).

A token is accepted when its RS256 signature verifies with a key of the user pool's JWKS,
and its issuer, audience (``aud`` of an ID token, ``client_id`` of an access token), expiry
and ``token_use`` are the pool's: the checks API Gateway's JWT authorizer makes. The JWKS is
fetched once per cold start; a token signed with a key it does not hold (Cognito rotated its
keys) fetches it again, at most once per REFRESH_SECONDS, so forged key ids cannot turn the
authorizer into a stream of requests to Cognito.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from taskqueue.errors import Unauthorized

ALGORITHMS = ["RS256"]  # Cognito signs with RS256 only; anything else is refused
MAX_TOKEN_CHARS = 8192
MAX_JWKS_BYTES = 64 * 1024
JWKS_TIMEOUT_SECONDS = 3
REFRESH_SECONDS = 300
TOKEN_USES = frozenset({"id", "access"})
# Seconds of clock difference tolerated on exp/iat (none: Cognito and Lambda keep NTP time).
LEEWAY_SECONDS = 0

FetchJwks = Callable[[str], dict[str, Any]]


def fetch_jwks(url: str) -> dict[str, Any]:
    """The pool's JSON Web Key Set, read over HTTPS with a short timeout and a size bound."""
    if not url.startswith("https://"):
        raise Unauthorized(f"refusing to fetch keys from {url}: not HTTPS")
    with urllib.request.urlopen(url, timeout=JWKS_TIMEOUT_SECONDS) as answer:
        document = json.loads(answer.read(MAX_JWKS_BYTES + 1)[:MAX_JWKS_BYTES])
    if not isinstance(document, dict):
        raise Unauthorized("the key set is not a JSON object")
    return document


@dataclass(frozen=True)
class Identity:
    owner: str  # the token's `sub`, as the HTTP API's JWT authorizer passes it on
    token_use: str


class KeySet:
    """The pool's signing keys by key id, fetched lazily and cached for the process."""

    def __init__(
        self,
        url: str,
        fetch: FetchJwks = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.url = url
        self.fetch = fetch
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            if kid not in self._keys and self._may_fetch():
                self._load()
            found = self._keys.get(kid)
        if found is None:
            raise Unauthorized("the token is signed with an unknown key")
        return found

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.refresh_seconds

    def _load(self) -> None:
        self._fetched_at = self.clock()
        self.fetches += 1
        document = self.fetch(self.url)
        try:
            keys = jwt.PyJWKSet.from_dict(document).keys
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the key set cannot be read: {exc}") from exc
        self._keys = {str(key.key_id): key for key in keys if key.key_id}


class TokenVerifier:
    """Verifies a Cognito user pool token for one app client; `verify` answers its owner."""

    def __init__(self, issuer: str, audience: str, keys: KeySet | None = None) -> None:
        if not issuer or not audience:
            raise ValueError("a token verifier needs the pool's issuer and the app client id")
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.keys = keys or KeySet(f"{self.issuer}/.well-known/jwks.json")

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise Unauthorized("no token")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token names no key")
        key = self.keys.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                # An access token carries the client in `client_id`, not in `aud`: checked below.
                options={
                    "require": ["exp", "iat", "iss", "sub", "token_use"],
                    "verify_aud": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        token_use = claims.get("token_use")
        if token_use not in TOKEN_USES:
            raise Unauthorized(f"token_use {token_use!r} is not an ID or access token")
        client = claims.get("aud") if token_use == "id" else claims.get("client_id")
        if client != self.audience:
            raise Unauthorized("the token was issued to another app client")
        owner = claims.get("sub")
        if not isinstance(owner, str) or not owner:
            raise Unauthorized("the token names no subject")
        return Identity(owner=owner, token_use=str(token_use))


def policy(principal: str, resource: str, allow: bool, context: dict[str, str]) -> dict[str, Any]:
    """A Lambda authorizer's answer: Allow or Deny of exactly the route asked about."""
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allow else "Deny",
                    "Resource": resource,
                }
            ],
        },
    }
    if context:
        answer["context"] = context
    return answer


def authorize(event: dict[str, Any], verifier: TokenVerifier) -> tuple[dict[str, Any], str]:
    """A REQUEST authorizer event of $connect -> (the policy answer, why it was refused or "").

    The token travels as the query parameter ``token`` (a browser cannot set headers on a
    WebSocket). Allowed: the owner goes into the context, which API Gateway passes on to
    every route of the connection as ``requestContext.authorizer.owner``.
    """
    resource = str(event.get("methodArn") or "")
    query = event.get("queryStringParameters") or {}
    token = query.get("token") if isinstance(query, dict) else None
    try:
        identity = verifier.verify(token if isinstance(token, str) else None)
    except Unauthorized as refused:
        return policy("anonymous", resource, allow=False, context={}), refused.message
    context = {"owner": identity.owner, "token_use": identity.token_use}
    return policy(identity.owner, resource, allow=True, context=context), ""
