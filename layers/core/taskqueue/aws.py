"""Lazily created, cached boto3 clients: nothing is created at import time."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10
)


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    """A client of `service`; `endpoint_url` for APIs reached at an address of their own
    (the API Gateway management API lives at the WebSocket API's own URL)."""
    config = _CONFIG.merge(_s3_config()) if service == "s3" else _CONFIG
    return boto3.client(service, config=config, endpoint_url=endpoint_url)  # type: ignore[call-overload]


def _s3_config() -> Config:
    """SigV4 presigning always; path-style addressing where S3_ADDRESSING_STYLE says so.

    botocore would presign with SigV2 in us-east-1, which newer regions reject and which does
    not sign the Content-Length. The local stack sets path style: bucket host names do not
    resolve on a laptop.
    """
    options: dict[str, Any] = {"signature_version": "s3v4"}
    if os.environ.get("S3_ADDRESSING_STYLE"):
        options["s3"] = {"addressing_style": os.environ["S3_ADDRESSING_STYLE"]}
    return Config(**options)


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials)."""
    client.cache_clear()
