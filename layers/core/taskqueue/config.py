"""Settings read once from the environment (names set in template.yaml).

This is the only module of the package that reads environment variables: everything else
receives plain values from a `Settings`, built by `taskqueue.wiring`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, Field

from taskqueue.quotas import Quota

# A dotted module path, as `import` takes it.
ModuleName = Annotated[
    str, Field(max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
]


def comma_list(value: Any) -> Any:
    """``"a.b, c"`` -> ``("a.b", "c")``: how a list travels in one environment variable."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class EnvironmentModel(BaseModel):
    """A model whose fields are read from the variables of the same name, upper-cased."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {
            name: env[name.upper()]
            for name in cls.model_fields
            if env.get(name.upper()) not in (None, "")
        }
        return cls.model_validate(values)


class Telemetry(EnvironmentModel):
    """What the logger and metrics need when they are created, at import: no required
    field, so that a script or a test importing the package needs no environment."""

    powertools_service_name: str = "taskqueue"
    powertools_metrics_namespace: str = "ServerlessTasks"


class Settings(Telemetry):
    table_name: str
    queue_url: str
    high_priority_queue_url: str = ""
    # The parts of parallel tasks (one message per invocation); the normal queue when unset.
    parts_queue_url: str = ""
    dlq_url: str = ""
    high_priority_dlq_url: str = ""
    data_bucket: str = ""
    shard_count: Annotated[int, Field(ge=1, le=256)] = 32
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    default_max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    # The sweeper sends a task's message when its submit or retry wrote it this long ago and
    # never marked it sent: longer than an API call lives.
    sweep_grace_seconds: Annotated[int, Field(ge=30, le=3600)] = 60
    email_sender: str = "noreply@example.com"
    email_rate_per_second: Annotated[float, Field(gt=0, le=1000)] = 10.0
    # The worker's maximum concurrency over its queues (template.yaml: 50 + 20 + 200 + 5 + 5,
    # the parts' queue, where EMAIL's parallel parts send, and the isolation queues
    # included): each worker process sends at most its 1/N share of the account's SES rate.
    email_max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 280
    # Set by Lambda itself: per-item limits (image pixels) are derived from it.
    aws_lambda_function_memory_size: Annotated[int, Field(ge=128, le=10_240)] = 1024
    max_body_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    cors_allow_origin: str = "*"
    # Who EMAIL may send to besides the simulator and the sender's own verified address:
    # domains ("example.org") and addresses ("ops@example.org"), comma-separated.
    email_allowed_recipients: Annotated[
        tuple[Annotated[str, Field(min_length=3, max_length=254)], ...],
        BeforeValidator(comma_list),
        Field(max_length=200),
    ] = ()
    # Per-owner quotas: each owner's limits (0: no limit) unless the operator set the
    # owner's own (on the owner's quota items in the table, no deploy).
    # On by default; off, a submit takes nothing (and costs no write).
    quotas_enabled: bool = True
    quota_active_tasks: Annotated[int, Field(ge=0, le=10_000_000)] = 1_000
    quota_submits_per_minute: Annotated[int, Field(ge=0, le=10_000_000)] = 600
    # Listed EMAIL recipients a day, and bytes of uploads a day (as declared: the presigned
    # PUT is signed for exactly that length).
    quota_email_recipients_per_day: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000
    quota_upload_bytes_per_day: Annotated[int, Field(ge=0, le=10**15)] = 10 * 1024**3
    # How long one record of a worker batch may run while others of the batch wait.
    worker_quantum_seconds: Annotated[float, Field(ge=1, le=900)] = 10.0
    # Local stack only: requests without JWT claims act as this user.
    dev_auth_user: str | None = None
    # Push over WebSocket: the API's management endpoint (https://<api>.execute-api.../<stage>),
    # and the Cognito issuer and app client whose tokens open a connection.
    websocket_management_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    # Task types from outside the core layer: modules each exporting TASK_TYPES (see
    # taskqueue.task_types.registry), imported the first time a type not built in is needed.
    task_type_modules: Annotated[
        tuple[ModuleName, ...], BeforeValidator(comma_list), Field(max_length=20)
    ] = ()
    # The most parts of one parallel task that run at once, whatever its max_parallel asks.
    max_parallel_parts: Annotated[int, Field(ge=1, le=1000)] = 64
    # Local stack only: "path", because bucket host names do not resolve on a laptop.
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = None

    @property
    def quota_defaults(self) -> dict[Quota, int]:
        return {quota: int(getattr(self, f"quota_{quota.value}")) for quota in Quota}

    @property
    def task_queues(self) -> dict[str, str]:
        """The task queue of each priority, and the parts' (each falls back to normal)."""
        return {
            "normal": self.queue_url,
            "high": self.high_priority_queue_url,
            "parts": self.parts_queue_url,
        }

    @property
    def dead_letter_queues(self) -> dict[str, str]:
        queues = {"normal": self.dlq_url, "high": self.high_priority_dlq_url}
        return {name: url for name, url in queues.items() if url}


@cache
def get_settings() -> Settings:
    """The settings of this process, read at first use (cold start)."""
    return Settings.from_env()
