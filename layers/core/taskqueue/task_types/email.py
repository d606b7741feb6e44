"""EMAIL: templated emails to many recipients through SES v2, in paced batches."""

from __future__ import annotations

import string
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from taskqueue.form_hints import ADVANCED, Source, error_at, sources
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types import _s3
from taskqueue.task_types.base import TaskContext

BUILTIN_FIELDS = ("name", "email", "index")
# The checkpoint keeps the first failures only; their total and codes are always counted.
MAX_FAILURES_KEPT = 20
MAX_REASON_CHARS = 160
# A chunk sends no more than this many seconds' worth of emails at the chosen rate.
MAX_CHUNK_SECONDS = 2.0

FieldName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
FieldValue = Annotated[str, Field(max_length=500)]


class EmailParams(BaseModel):
    """Recipients (a list, or a generated count) and the subject and body templates."""

    model_config = ConfigDict(
        extra="forbid",
        title="EMAIL parameters",
        json_schema_extra=sources(
            Source("list", "List recipients", ("recipients",)),
            Source("generate", "Generate test recipients", ("recipient_count",)),
        ),
    )

    recipients: Annotated[list[EmailStr], Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="Email addresses to send to (at most 1000). Give this or recipient_count.",
        examples=[["ada@example.com", "grace@example.com"]],
    )
    recipient_count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="Send to generated addresses user1@example.com .. userN@example.com "
        "(1 to 10000). Give this or recipients.",
        examples=[25],
    )
    subject: str = Field(
        min_length=1,
        max_length=200,
        description="Subject template. Fields: {name}, {email}, {index} and the keys of fields.",
        examples=["Hello {name}"],
    )
    body: str = Field(
        min_length=1,
        max_length=10_000,
        description="Plain-text body template, with the same fields as subject. "
        "Write {{ and }} for literal braces.",
        examples=["Dear {name},\n\nyou are recipient number {index}."],
    )
    fields: Annotated[dict[EmailStr, dict[FieldName, FieldValue]], Field(max_length=1000)] = Field(
        default_factory=dict,
        description="Extra template fields per recipient address, e.g. "
        '{"ada@example.com": {"name": "Ada", "plan": "pro"}}. A field missing for a '
        "recipient renders as an empty string; name defaults to the address's local part.",
        json_schema_extra=ADVANCED,
    )
    batch_size: int = Field(
        default=10,
        ge=1,
        le=50,
        description="Emails sent per chunk (between checkpoints).",
        json_schema_extra=ADVANCED,
    )
    rate_per_second: float = Field(
        default=10.0,
        ge=0.1,
        le=50.0,
        description="Maximum emails per second; the service's own ceiling applies if lower.",
        json_schema_extra=ADVANCED,
    )

    @model_validator(mode="after")
    def _one_audience(self) -> EmailParams:
        if (self.recipients is None) == (self.recipient_count is None):
            raise ValueError("give exactly one of recipients or recipient_count")
        allowed = set(BUILTIN_FIELDS).union(*(extra.keys() for extra in self.fields.values()))
        for name in ("subject", "body"):
            try:
                check_template(name, getattr(self, name), allowed)
            except ValueError as exc:
                # At the field, not the model: the API's error `loc` then names it.
                raise error_at("EmailParams", name, str(exc), getattr(self, name)) from None
        return self

    @property
    def total(self) -> int:
        return len(self.recipients) if self.recipients is not None else self.recipient_count or 0

    def recipient(self, index: int) -> str:
        """The address of recipient `index` (0-based)."""
        if self.recipients is not None:
            return self.recipients[index]
        return f"user{index + 1}@example.com"

    def values(self, index: int) -> dict[str, Any]:
        """Template fields of recipient `index`: built-ins, overridden by its own fields."""
        address = self.recipient(index)
        return {
            "name": address.split("@", 1)[0],
            "email": address,
            "index": index + 1,
            **self.fields.get(address, {}),
        }


# ---------------------------------------------------------------- templates


class _TemplateFormatter(string.Formatter):
    """Fills plain named fields only; a field a recipient lacks renders as ""."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), "")


_FORMATTER = _TemplateFormatter()


def check_template(what: str, template: str, allowed: set[str]) -> None:
    """Reject at submit time what would fail, or leak, at send time.

    Only plain names are allowed: "{name.__class__}" or "{email[0]}" would reach into objects.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, field, spec, _ in parts:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"{what}: field {{{field}}} is not a plain name such as {{name}}")
        if field not in allowed:
            known = ", ".join("{" + name + "}" for name in sorted(allowed))
            raise ValueError(f"{what}: unknown field {{{field}}}; use one of {known}")
        if spec and "{" in spec:
            raise ValueError(f"{what}: nested fields in a format spec are not allowed")
    # A trial run with values of the real types catches specs such as "{name:d}".
    sample = {name: "" for name in allowed} | {"name": "x", "email": "x@example.com", "index": 1}
    try:
        render(template, sample)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {exc}") from None


def render(template: str, values: Mapping[str, Any]) -> str:
    return _FORMATTER.vformat(template, (), values)


# ---------------------------------------------------------------- the task type


class Email:
    name = "EMAIL"
    description = "Send a templated plain-text email to each recipient through Amazon SES."
    progress_unit = "recipients"
    params_model: type[BaseModel] = EmailParams

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sleep = sleep
        self.clock = clock

    def start(self, params: EmailParams, ctx: TaskContext) -> ChunkState:
        params = EmailParams.model_validate(params)
        return ChunkState(
            units_total=params.total,
            cursor=0,
            data={"sent": 0, "failed": 0, "failures": [], "failure_codes": {}},
        )

    def run_chunk(self, params: EmailParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        """Send the next batch, one message per recipient, no faster than the rate.

        A failed send is recorded and the batch goes on: one bad address never stops the rest.
        """
        params = EmailParams.model_validate(params)
        rate = min(params.rate_per_second, ctx.email_rate_per_second)
        interval = 1.0 / rate
        batch = max(1, min(params.batch_size, int(rate * MAX_CHUNK_SECONDS)))
        first: int = state.cursor
        indexes = range(first, min(first + batch, params.total))
        sent, failed = state.data["sent"], state.data["failed"]
        failures = list(state.data["failures"])
        codes = dict(state.data["failure_codes"])
        began = self.clock()
        for slot, index in enumerate(indexes):
            self._wait_until(began + slot * interval)
            error = self._send(params, index, ctx)
            if error is None:
                sent += 1
                continue
            failed += 1
            codes[error[0]] = codes.get(error[0], 0) + 1
            if len(failures) < MAX_FAILURES_KEPT:
                failures.append(
                    {
                        "index": index + 1,
                        "email": params.recipient(index),
                        "code": error[0],
                        "message": error[1][:MAX_REASON_CHARS],
                    }
                )
        # Hold the last send's slot too, or the next chunk would start with a burst.
        self._wait_until(began + len(indexes) * interval)
        cursor = indexes.stop
        return ChunkState(
            units_total=params.total,
            units_done=cursor,
            cursor=cursor,
            data={"sent": sent, "failed": failed, "failures": failures, "failure_codes": codes},
            done=cursor >= params.total,
        )

    def finish(self, params: EmailParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        params = EmailParams.model_validate(params)
        summary = {
            "recipients": params.total,
            "sent": state.data["sent"],
            "failed": state.data["failed"],
            "failure_codes": state.data["failure_codes"],
            "failures": state.data["failures"],
            "failures_truncated": state.data["failed"] > len(state.data["failures"]),
        }
        key = ctx.results_prefix + "result.json"
        _s3.put_json(ctx.s3, ctx.bucket, key, summary)
        return TaskResult(summary=summary, location=_s3.s3_uri(ctx.bucket, key))

    def _wait_until(self, moment: float) -> None:
        delay = moment - self.clock()
        if delay > 0:
            self.sleep(delay)

    def _send(self, params: EmailParams, index: int, ctx: TaskContext) -> tuple[str, str] | None:
        """None when SES accepted the message, else (error code, message)."""
        values = params.values(index)
        # A field value must not be able to add header lines through the subject.
        subject = " ".join(render(params.subject, values).splitlines())
        try:
            ctx.sesv2.send_email(
                FromEmailAddress=ctx.email_sender,
                Destination={"ToAddresses": [params.recipient(index)]},
                Content={
                    "Simple": {
                        "Subject": {"Data": subject, "Charset": "UTF-8"},
                        "Body": {"Text": {"Data": render(params.body, values), "Charset": "UTF-8"}},
                    }
                },
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return error.get("Code", "ClientError"), error.get("Message", str(exc))
        except BotoCoreError as exc:
            return type(exc).__name__, str(exc)
        return None


EMAIL = Email()
