"""Lazily created, cached boto3 clients: nothing is created at import time."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10
)
_s3_addressing_style: str | None = None
_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()  # boto3's default session is not safe to share while creating


def configure(s3_addressing_style: str | None) -> None:
    """Set what the settings say about S3 addressing (`taskqueue.wiring` calls this); an S3
    client made under another style is made again at its next use."""
    global _s3_addressing_style
    with _lock:
        if s3_addressing_style != _s3_addressing_style:
            _s3_addressing_style = s3_addressing_style
            for key in [key for key in _clients if key[0] == "s3"]:
                del _clients[key]


def client(service: str, endpoint_url: str | None = None) -> Any:
    """The process's client of `service`, made at first use; `endpoint_url` for APIs reached
    at an address of their own (the API Gateway management API lives at the WebSocket API's
    own URL)."""
    key = (service, endpoint_url)
    made = _clients.get(key)
    if made is None:
        with _lock:
            made = _clients.get(key)
            if made is None:
                config = _CONFIG.merge(_s3_config()) if service == "s3" else _CONFIG
                made = boto3.client(service, config=config, endpoint_url=endpoint_url)  # type: ignore[call-overload]
                _clients[key] = made
    return made


def _s3_config() -> Config:
    """SigV4 presigning always; path-style addressing where the settings say so.

    botocore would presign with SigV2 in us-east-1, which newer regions reject and which does
    not sign the Content-Length. The local stack sets path style: bucket host names do not
    resolve on a laptop.
    """
    options: dict[str, Any] = {"signature_version": "s3v4"}
    if _s3_addressing_style:
        options["s3"] = {"addressing_style": _s3_addressing_style}
    return Config(**options)


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials)."""
    with _lock:
        _clients.clear()
