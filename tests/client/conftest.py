"""Fixtures of the client's in-process tests: the API handler and the worker against moto,
and clients that reach them through `LambdaTransport`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.gateway import Route, http_routes
from taskqueue_client import Client, RetryPolicy
from tests.client.support import API_URL, LambdaTransport, jwt_for
from tests.helpers import reset_function_caches
from tests.pipeline_world import OWNER, World, make_world


@pytest.fixture
def world(aws: Any, function_env: Callable[[str], dict[str, str]]) -> Iterator[World]:
    """API and worker environments, and the pipeline that drains the task queues."""
    function_env("ApiFunction")
    reset_function_caches()
    yield from make_world(aws, function_env)


@pytest.fixture(scope="session")
def api_routes(transformed_template: dict[str, Any]) -> list[Route]:
    return http_routes(transformed_template)


@pytest.fixture
def transport(world: World, api_routes: list[Route]) -> LambdaTransport:
    return LambdaTransport(api_routes)


@pytest.fixture
def make_client(transport: LambdaTransport) -> Callable[..., Client]:
    """`make_client(user=..., sleep=...)`: a client of `user` (the owner by default)."""

    def make(user: str | None = OWNER, **options: Any) -> Client:
        options.setdefault("retry", RetryPolicy(base_delay=0))
        options.setdefault("sleep", lambda seconds: None)
        return Client(API_URL, jwt_for(user) if user else None, transport=transport, **options)

    return make


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()
