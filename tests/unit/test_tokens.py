"""The WebSocket authorizer's token checks, with a test user pool: an RSA key of our own
published as the pool's JWKS, and tokens shaped like Cognito's ID and access tokens."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from taskqueue import wiring
from taskqueue.errors import Unauthorized
from taskqueue.tokens import KeySet, TokenVerifier, authorize
from tests.helpers import FakeLambdaContext, load_function

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool"
CLIENT = "testclient123"
KID = "test-key-1"
METHOD_ARN = "arn:aws:execute-api:eu-west-1:123456789012:abcdef123/live/$connect"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_of(key: rsa.RSAPrivateKey, kid: str = KID) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "alg": "RS256", "use": "sig"}]}


class Pool:
    """The pool's JWKS endpoint: counts fetches; its keys can be rotated."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.urls: list[str] = []

    def __call__(self, url: str) -> dict[str, Any]:
        self.urls.append(url)
        return self.document


@pytest.fixture
def pool(private_key: rsa.RSAPrivateKey) -> Pool:
    return Pool(jwks_of(private_key))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(pool: Pool, clock: Clock) -> TokenVerifier:
    keys = KeySet(f"{ISSUER}/.well-known/jwks.json", fetch=pool, clock=clock)
    return TokenVerifier(ISSUER, CLIENT, keys)


def token(
    key: rsa.RSAPrivateKey,
    *,
    kid: str = KID,
    token_use: str = "id",
    expires_in: int = 3600,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "user-alice",
        "iss": ISSUER,
        "token_use": token_use,
        "iat": now - 10,
        "auth_time": now - 10,
        "exp": now + expires_in,
    }
    if token_use == "id":
        payload["aud"] = CLIENT
        payload["email"] = "alice@example.com"
    else:
        payload["client_id"] = CLIENT
        payload["scope"] = "openid email"
    payload.update(claims)
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def refused(verify: Callable[[], Any]) -> str:
    with pytest.raises(Unauthorized) as caught:
        verify()
    return caught.value.message


# ------------------------------------------------------------------------------- accepted


def test_a_valid_id_token_names_its_owner(verifier: TokenVerifier, private_key: Any) -> None:
    identity = verifier.verify(token(private_key))

    assert identity.owner == "user-alice"
    assert identity.token_use == "id"


def test_a_valid_access_token_names_its_owner_by_its_client_id(
    verifier: TokenVerifier, private_key: Any
) -> None:
    identity = verifier.verify(token(private_key, token_use="access"))

    assert (identity.owner, identity.token_use) == ("user-alice", "access")


def test_the_key_set_is_fetched_once_for_many_tokens(
    verifier: TokenVerifier, private_key: Any, pool: Pool
) -> None:
    for _ in range(5):
        verifier.verify(token(private_key))

    assert pool.urls == [f"{ISSUER}/.well-known/jwks.json"]


# ------------------------------------------------------------------------------- refused


def test_an_expired_token_is_refused(verifier: TokenVerifier, private_key: Any) -> None:
    reason = refused(lambda: verifier.verify(token(private_key, expires_in=-1)))

    assert "expired" in reason


def test_a_token_for_another_app_client_is_refused(
    verifier: TokenVerifier, private_key: Any
) -> None:
    id_token = token(private_key, aud="someone-else")
    access_token = token(private_key, token_use="access", client_id="someone-else")

    assert "another app client" in refused(lambda: verifier.verify(id_token))
    assert "another app client" in refused(lambda: verifier.verify(access_token))


def test_a_token_of_another_issuer_is_refused(verifier: TokenVerifier, private_key: Any) -> None:
    other = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_OtherPool"

    reason = refused(lambda: verifier.verify(token(private_key, iss=other)))

    assert "issuer" in reason.lower()


def test_a_token_that_is_neither_an_id_nor_an_access_token_is_refused(
    verifier: TokenVerifier, private_key: Any
) -> None:
    assert "token_use" in refused(lambda: verifier.verify(token(private_key, token_use="refresh")))
    assert "token_use" in refused(lambda: verifier.verify(token(private_key, drop=("token_use",))))


def test_a_token_signed_by_another_key_is_refused(verifier: TokenVerifier, other_key: Any) -> None:
    # Same key id as the pool's, but not its key: the signature does not verify.
    reason = refused(lambda: verifier.verify(token(other_key)))

    assert "signature" in reason.lower()


def test_a_tampered_payload_is_refused(verifier: TokenVerifier, private_key: Any) -> None:
    header, payload, signature = token(private_key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "user-mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    reason = refused(lambda: verifier.verify(f"{header}.{forged}.{signature}"))

    assert "signature" in reason.lower()


def test_unsigned_and_symmetric_tokens_are_refused(
    verifier: TokenVerifier, private_key: Any
) -> None:
    claims = jwt.decode(token(private_key), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": KID})
    # The classic confusion: an HMAC "signed" with the public key's text.
    public_pem = jwks_of(private_key)["keys"][0]["n"].encode()
    symmetric = jwt.encode(claims, public_pem, algorithm="HS256", headers={"kid": KID})

    assert "algorithm" in refused(lambda: verifier.verify(unsigned))
    assert "algorithm" in refused(lambda: verifier.verify(symmetric))


def test_missing_malformed_and_oversized_tokens_are_refused_without_fetching_keys(
    verifier: TokenVerifier, pool: Pool
) -> None:
    assert refused(lambda: verifier.verify(None)) == "no token"
    assert refused(lambda: verifier.verify("")) == "no token"
    assert "malformed" in refused(lambda: verifier.verify("not-a-jwt"))
    assert "too long" in refused(lambda: verifier.verify("a" * 9000))
    assert pool.urls == []


def test_a_token_without_a_subject_is_refused(verifier: TokenVerifier, private_key: Any) -> None:
    reason = refused(lambda: verifier.verify(token(private_key, drop=("sub",))))

    assert "sub" in reason


def test_unknown_key_ids_fetch_the_key_set_again_at_most_once_per_interval(
    verifier: TokenVerifier, private_key: Any, pool: Pool, clock: Clock
) -> None:
    verifier.verify(token(private_key))
    for kid in ("forged-1", "forged-2", "forged-3"):
        assert "unknown key" in refused(
            lambda kid=kid: verifier.verify(token(private_key, kid=kid))
        )
    assert len(pool.urls) == 1  # within the interval, no refetch for unknown key ids

    # Cognito rotated its keys; once the interval passed, the new key is fetched.
    pool.document = jwks_of(private_key, kid="rotated")
    clock.now += 301
    identity = verifier.verify(token(private_key, kid="rotated"))

    assert identity.owner == "user-alice"
    assert len(pool.urls) == 2


# ------------------------------------------------------------------------------- the answer


def test_an_allowed_connect_gets_an_allow_of_exactly_its_route_with_the_owner(
    verifier: TokenVerifier, private_key: Any
) -> None:
    event = {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "queryStringParameters": {"token": token(private_key)},
    }

    answer, reason = authorize(event, verifier)

    assert reason == ""
    assert answer == {
        "principalId": "user-alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": METHOD_ARN}
            ],
        },
        "context": {"owner": "user-alice", "token_use": "id"},
    }


def test_a_refused_connect_gets_a_deny_without_context(
    verifier: TokenVerifier, private_key: Any
) -> None:
    event = {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "queryStringParameters": {"token": token(private_key, expires_in=-5)},
    }

    answer, reason = authorize(event, verifier)

    assert "expired" in reason
    assert answer["principalId"] == "anonymous"
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert answer["policyDocument"]["Statement"][0]["Resource"] == METHOD_ARN
    assert "context" not in answer


def test_the_handler_answers_with_the_policy(
    verifier: TokenVerifier, private_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_function("ws_authorizer")
    monkeypatch.setattr(wiring, "token_verifier", lambda: verifier)
    good = {"methodArn": METHOD_ARN, "queryStringParameters": {"token": token(private_key)}}
    bad = {"methodArn": METHOD_ARN, "queryStringParameters": {"token": "x.y.z"}}

    allowed = app.lambda_handler(good, FakeLambdaContext("ws-authorizer"))
    denied = app.lambda_handler(bad, FakeLambdaContext("ws-authorizer"))

    assert allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert allowed["context"]["owner"] == "user-alice"
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def test_a_verifier_needs_the_pool_and_the_client() -> None:
    with pytest.raises(ValueError):
        TokenVerifier("", CLIENT)
    with pytest.raises(ValueError):
        TokenVerifier(ISSUER, "")
