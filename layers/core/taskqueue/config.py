"""Settings read once from the environment (names set in template.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated

from pydantic import BaseModel, Field


class Settings(BaseModel):
    table_name: str
    queue_url: str
    high_priority_queue_url: str = ""
    dlq_url: str = ""
    high_priority_dlq_url: str = ""
    data_bucket: str = ""
    shard_count: Annotated[int, Field(ge=1, le=256)] = 32
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    default_max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    email_sender: str = "noreply@example.com"
    email_rate_per_second: Annotated[float, Field(gt=0, le=1000)] = 10.0
    # The worker's maximum concurrency over both queues (template.yaml: 50 + 20): each worker
    # process sends at most its 1/N share of the account's SES rate.
    email_max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 70
    # Set by Lambda itself: per-item limits (image pixels) are derived from it.
    aws_lambda_function_memory_size: Annotated[int, Field(ge=128, le=10_240)] = 1024
    max_body_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    cors_allow_origin: str = "*"
    dev_auth_user: str | None = None
    # Push over WebSocket: the API's management endpoint (https://<api>.execute-api.../<stage>),
    # and the Cognito issuer and app client whose tokens open a connection.
    websocket_management_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()]
            for name in cls.model_fields
            if env.get(name.upper()) not in (None, "")
        }
        return cls.model_validate(values)

    def queue_for(self, priority: str) -> str:
        if priority == "high" and self.high_priority_queue_url:
            return self.high_priority_queue_url
        return self.queue_url

    @property
    def dead_letter_queues(self) -> dict[str, str]:
        queues = {"normal": self.dlq_url, "high": self.high_priority_dlq_url}
        return {name: url for name, url in queues.items() if url}


@cache
def get_settings() -> Settings:
    """The settings of this process, read at first use (cold start)."""
    return Settings.from_env()
