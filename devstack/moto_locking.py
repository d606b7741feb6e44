"""One lock around each moto DynamoDB request: DynamoDB applies every request atomically,
moto's in-memory tables are not thread-safe (concurrent transactions fail with "dictionary
changed size during iteration"), and the local stack serves many threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_LOCK = threading.RLock()


def serialize_dynamodb_requests(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Wrap moto's DynamoDB request handler; `patch` is setattr or a test's monkeypatch."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    if getattr(original, "serialized", False):
        return

    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    call_action.serialized = True  # type: ignore[attr-defined]
    patch(DynamoHandler, "call_action", call_action)
