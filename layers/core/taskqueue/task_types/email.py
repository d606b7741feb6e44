"""EMAIL: templated plain-text emails to many recipients through SES v2 SendBulkEmail.

Each chunk renders its recipients' subjects and bodies here (Python format templates, bounded
in size) and sends them in one SendBulkEmail call of up to 50 destinations with an inline SES
template whose only fields are the whole subject and body. SES substitutes template data
verbatim (it escapes nothing, and the text part is all we send), so what arrives is byte for
byte what we rendered, with no template resource to create, name or clean up after a crash.

Each recipient's outcome is written to S3 per chunk (idempotent: a repeated chunk resends only
recipients without a recorded outcome) and joined into a CSV at the end. Pacing is scheduled,
never slept: a chunk sets `resume_at` and the engine hands the task back to the queue.

With `max_parallel`, the recipients are split into contiguous groups of whole batches sent as
parallel parts. Each part records its outcomes where the whole run would (its parent's
prefix, one object per batch), so the merged CSV is the whole run's; the task's rate is
shared out by a timetable: batch m of the part in lane k of L is due at t0 + (m * L + k)
batch intervals, and each part also keeps to 1/L of the rate after its own sends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from taskqueue.errors import InvalidRequest, TransientError, aws_error_code
from taskqueue.form_hints import ADVANCED, Source, error_at, sources
from taskqueue.models import ChunkState, TaskResult, utcnow
from taskqueue.quotas import Quota
from taskqueue.task_types import _s3
from taskqueue.task_types.base import Plan, Submitter, TaskContext
from taskqueue.task_types.email_template import check_template, render
from taskqueue.task_types.groups import group_of, merged_figures, plan_groups

BUILTIN_FIELDS = ("name", "email", "index")
# Built-ins a recipient's own fields may not replace: they identify the message.
RESERVED_FIELDS = frozenset({"email", "index"})
NUMERIC_FIELDS = frozenset({"index"})
# The checkpoint keeps the first failures only; their total and codes are always counted.
MAX_FAILURES_KEPT = 20
MAX_REASON_CHARS = 160
# SES takes at most 50 destinations in one SendBulkEmail call.
MAX_BULK_DESTINATIONS = 50
# Rendered sizes, checked before rendering; 50 bodies at the cap still fit one SES request.
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 100_000
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254
# Retries inside a chunk, for throttling and 5xx: short, so billed idle stays under 1 s.
IN_CHUNK_RETRY_DELAYS = (0.1, 0.3)
INLINE_TEMPLATE = {"Subject": "{{subject}}", "Text": "{{body}}"}
MAX_PARALLEL = 20
# The tallies a part keeps and the merge adds up.
COUNTS = ("sent", "failed")
# SES's mailbox simulator: accepted and counted like real mail, delivered to nobody, and never
# a bounce against the sender's reputation. Generated recipients and anyone may use it.
SIMULATOR_DOMAIN = "simulator.amazonses.com"

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
        description="Email addresses to send to (at most 1000): your own verified address, "
        "the operator's allowed domains and addresses, or the SES mailbox simulator. "
        "Give this or recipient_count.",
        examples=[["ada@example.com", "grace@example.com"]],
    )
    recipient_count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="Send to generated addresses of the SES mailbox simulator, "
        f"success+1@{SIMULATOR_DOMAIN} .. success+N@{SIMULATOR_DOMAIN} (1 to 10000), "
        "which deliver to nobody. Give this or recipients.",
        examples=[25],
    )
    subject: str = Field(
        min_length=1,
        max_length=200,
        description="Subject template. Fields: {name}, {email}, {index} and the keys of fields. "
        f"Rendered, at most {MAX_SUBJECT_CHARS} characters.",
        examples=["Hello {name}"],
    )
    body: str = Field(
        min_length=1,
        max_length=10_000,
        description="Plain-text body template, with the same fields as subject. "
        "Write {{ and }} for literal braces. Format specs such as {index:03d} work; widths "
        f"and precisions up to 1000. Rendered, at most {MAX_BODY_CHARS} characters.",
        examples=["Dear {name},\n\nyou are recipient number {index}."],
    )
    fields: Annotated[
        dict[EmailStr, Annotated[dict[FieldName, FieldValue], Field(max_length=20)]],
        Field(max_length=1000),
    ] = Field(
        default_factory=dict,
        description="Extra template fields per recipient address (at most 20 each), e.g. "
        '{"ada@example.com": {"name": "Ada", "plan": "pro"}}. A field missing for a '
        "recipient renders as an empty string; name defaults to the address's local part; "
        "email and index cannot be replaced.",
        json_schema_extra=ADVANCED,
    )
    batch_size: int = Field(
        default=MAX_BULK_DESTINATIONS,
        ge=1,
        le=MAX_BULK_DESTINATIONS,
        description="Emails per chunk, sent in one SES call (at most 50).",
        json_schema_extra=ADVANCED,
    )
    rate_per_second: float = Field(
        default=10.0,
        ge=0.1,
        le=50.0,
        description="Maximum emails per second; the service's own ceiling applies if lower.",
        json_schema_extra=ADVANCED,
    )
    max_parallel: int = Field(
        default=1,
        ge=1,
        le=MAX_PARALLEL,
        description="Groups of recipients sent at once (1: all in one run). Above 1, the "
        "recipients are split into that many contiguous groups of whole batches, sent in "
        "parallel; together they keep to rate_per_second. The service may allow fewer at once.",
        json_schema_extra=ADVANCED,
    )

    @model_validator(mode="after")
    def _one_audience(self) -> EmailParams:
        if (self.recipients is None) == (self.recipient_count is None):
            raise ValueError("give exactly one of recipients or recipient_count")
        for address, extra in self.fields.items():
            reserved = sorted(RESERVED_FIELDS.intersection(extra))
            if reserved:
                raise ValueError(f"fields of {address}: {', '.join(reserved)} cannot be replaced")
        allowed = set(BUILTIN_FIELDS).union(*(extra.keys() for extra in self.fields.values()))
        lengths = self._longest_values(allowed)
        limits = {"subject": MAX_SUBJECT_CHARS, "body": MAX_BODY_CHARS}
        for name, limit in limits.items():
            try:
                check_template(name, getattr(self, name), allowed, lengths, NUMERIC_FIELDS, limit)
            except ValueError as exc:
                # At the field, not the model: the API's error `loc` then names it.
                raise error_at("EmailParams", name, str(exc), getattr(self, name)) from None
        return self

    def _longest_values(self, allowed: set[str]) -> dict[str, int]:
        """Each field's longest value over all recipients (digits, for index): with these,
        a template's size bound holds for every recipient."""
        if self.recipients is not None:
            address = max(len(a) for a in self.recipients)
            local = max(len(a.split("@", 1)[0]) for a in self.recipients)
        else:
            address, local = min(MAX_ADDRESS, len(self.recipient(self.total - 1))), MAX_LOCAL_PART
        lengths = dict.fromkeys(allowed, 0) | {
            "name": local,
            "email": address,
            "index": len(str(self.total)),
        }
        for extra in self.fields.values():
            for name, value in extra.items():
                lengths[name] = max(lengths[name], len(value))
        return lengths

    @property
    def total(self) -> int:
        return len(self.recipients) if self.recipients is not None else self.recipient_count or 0

    def recipient(self, index: int) -> str:
        """The address of recipient `index` (0-based)."""
        if self.recipients is not None:
            return self.recipients[index]
        return f"success+{index + 1}@{SIMULATOR_DOMAIN}"

    def values(self, index: int) -> dict[str, Any]:
        """Template fields of recipient `index`: built-ins, overridden by its own fields."""
        address = self.recipient(index)
        return {
            "name": address.split("@", 1)[0],
            "email": address,
            "index": index + 1,
            **self.fields.get(address, {}),
        }

    def message(self, index: int) -> tuple[str, str]:
        """Subject and body of recipient `index`, rendered within the checked bounds."""
        values = self.values(index)
        # A field value must not be able to add header lines through the subject.
        subject = " ".join(render(self.subject, values).splitlines())
        return subject, render(self.body, values)


# ---------------------------------------------------------------- outcomes as data


# How SES's per-destination statuses and whole-call error codes are treated: SENT; FAILED
# (final for that recipient, the task goes on); WAIT (throttled: the chunk is rescheduled,
# costing no attempt); RETRY (a server error: the engine retries the chunk with backoff).
# WAIT and RETRY are never recorded: those recipients are sent again later. Anything not
# listed is retried, the safe side: a retry costs time, a wrong FAILED loses mail.
SENT, FAILED, WAIT, RETRY = "sent", "failed", "wait", "retry"
ENTRY_STATUSES = {
    "SUCCESS": SENT,
    "MESSAGE_REJECTED": FAILED,
    "INVALID_PARAMETER": FAILED,
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": FAILED,
    "ACCOUNT_SUSPENDED": FAILED,
    "ACCOUNT_SENDING_PAUSED": FAILED,
    "CONFIGURATION_SET_SENDING_PAUSED": FAILED,
    "CONFIGURATION_SET_NOT_FOUND": FAILED,
    "TEMPLATE_NOT_FOUND": FAILED,
    "INVALID_SENDING_POOL_NAME": FAILED,
    "ACCOUNT_THROTTLED": WAIT,
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": WAIT,
    "TRANSIENT_FAILURE": RETRY,
    "FAILED": RETRY,
}
CALL_ERRORS = {
    # The whole call refused for a reason every destination in it shares.
    "MessageRejected": FAILED,
    "BadRequestException": FAILED,
    "MailFromDomainNotVerifiedException": FAILED,
    "AccountSuspendedException": FAILED,
    "SendingPausedException": FAILED,
    "NotFoundException": FAILED,
    "AccessDeniedException": FAILED,
    "TooManyRequestsException": WAIT,
    "Throttling": WAIT,
    "ThrottlingException": WAIT,
    "LimitExceededException": WAIT,
}
# A wait longer than the account's time for the batch: the day's quota refills slowly.
LONG_WAITS = {"ACCOUNT_DAILY_QUOTA_EXCEEDED": 900.0}


def call_error_class(exc: Exception) -> str:
    """FAILED, WAIT or RETRY for an exception of a whole SendBulkEmail call."""
    code = aws_error_code(exc) or ""
    if code in CALL_ERRORS:
        return CALL_ERRORS[code]
    return RETRY


@dataclass
class Outcome:
    """One recipient's final outcome, as its row in the downloadable CSV."""

    index: int  # 1-based, as {index} in the templates
    email: str
    status: str
    message_id: str = ""
    code: str = ""
    reason: str = ""


CSV_COLUMNS = ("index", "email", "status", "message_id", "code", "reason")


@dataclass
class Attempt:
    """What one chunk's sends came to: outcomes to record, and recipients to send again
    (by index, with SES's status or error code) after a wait or through a retry."""

    settled: list[Outcome] = field(default_factory=list)
    wait: dict[int, str] = field(default_factory=dict)
    retry: dict[int, str] = field(default_factory=dict)


# ---------------------------------------------------------------- pacing


@dataclass
class SesPacer:
    """Paces this process's SES sends to its share of the account's rate.

    The account's MaxSendRate (GetAccount, read once per process) is divided by the most
    processes that may send at once (the worker's maximum concurrency): each process keeps
    to its share, so all of them together keep to the account's rate (plus at most one
    batch per process at its start), however many EMAIL tasks take turns in them. A task
    that finds its process's share spent goes back to the queue (`reserve` says for how
    long); nothing sleeps.
    """

    clock: Callable[[], float] = time.monotonic
    account_rate: float | None = None
    _next_free: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read_quota(self, ses: Any) -> float:
        """The account's send rate, asked of SES the first time only."""
        if self.account_rate is None:
            self.account_rate = float(ses.get_account()["SendQuota"]["MaxSendRate"])
        return self.account_rate

    def reserve(self, count: int, processes: int) -> float:
        """Take `count` sends from this process's share: 0 when granted, else the seconds
        after which to try again (a generic cell rate algorithm: one number, no bucket).

        The retry is due when this process has budget again, or sooner: when the whole
        account could have sent the batch, since another process will likely be free. Never
        sooner than 1 s, unless this process is free by then: a shorter wait is slept in
        the invocation (the engine's rule) and would only find this same process again.
        """
        assert self.account_rate is not None, "read_quota first"
        with self._lock:
            now = self.clock()
            if self._next_free > now:
                own = self._next_free - now
                return own if own <= 1.0 else max(1.0, min(own, count / self.account_rate))
            self._next_free = now + count * max(1, processes) / self.account_rate
            return 0.0


# ---------------------------------------------------------------- the task type


class Email:
    name = "EMAIL"
    description = (
        "Send a templated plain-text email to each recipient through Amazon SES, 50 per call; "
        "each recipient's outcome is kept in a downloadable CSV."
    )
    progress_unit = "recipients"
    params_model: type[BaseModel] = EmailParams

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utcnow,
        pacer: SesPacer | None = None,
    ) -> None:
        self.sleep = sleep
        self.clock = clock
        self.pacer = pacer or SesPacer()

    def admit(self, params: EmailParams, submitter: Submitter) -> None:
        """Refuse a recipient the submitter may not mail (an open relay gets SES accounts
        paused)."""
        for index, address in enumerate(params.recipients or ()):
            if not may_email(address, submitter):
                raise InvalidRequest(
                    f"recipient {address} is not allowed",
                    [
                        {
                            "loc": ["body", "params", "recipients", index],
                            "msg": f"{address} is neither your own verified address nor on "
                            "the operator's allow-list",
                            "type": "recipient_not_allowed",
                        }
                    ],
                )

    def quota_usage(self, params: EmailParams) -> dict[Quota, int]:
        """Listed recipients count against the owner's EMAIL recipients a day; generated
        ones are the SES mailbox simulator's, which reach nobody."""
        return {Quota.EMAIL_RECIPIENTS_PER_DAY: len(params.recipients or ())}

    def start(self, params: EmailParams, ctx: TaskContext) -> ChunkState:
        params = EmailParams.model_validate(params)
        return ChunkState(
            units_total=params.total,
            cursor=0,
            data={"sent": 0, "failed": 0, "failures": [], "failure_codes": {}},
        )

    def run_chunk(self, params: EmailParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        """Send the next batch in one SendBulkEmail call, unless its outcomes are recorded.

        A rejected recipient is recorded and the task goes on. A throttled or failed send is
        retried here briefly, then (never recorded as failed) the chunk is rescheduled when
        throttled, or raises TransientError for the engine's retry on a server error.
        """
        params = EmailParams.model_validate(params)
        begin, end, prefix = group_of(state, params.total, ctx)
        first: int = state.cursor
        indexes = range(first, min(first + params.batch_size, end))
        key = self._outcomes_key(prefix, first)
        recorded = {row.index - 1: row for row in self._read_outcomes(ctx, key)}
        pending = [index for index in indexes if index not in recorded]
        resume_at = None
        if pending:
            rate = _rate(params, ctx)
            lane = Lane.of(state.data)
            batch = (first - begin) // params.batch_size
            due = lane.due(batch, params.batch_size / rate)
            if due is not None and due > self.clock():
                # Another lane's turn: this batch's place in the task's timetable is later.
                return state.model_copy(update={"resume_at": due})
            self.pacer.read_quota(ctx.sesv2)
            wait = self.pacer.reserve(len(pending), ctx.email_max_concurrency)
            if wait > 0:
                # This process's share is spent: back to the queue, without sending.
                return state.model_copy(update={"resume_at": self.clock() + _seconds(wait)})
            attempt = self._send(params, pending, ctx)
            recorded.update({row.index - 1: row for row in attempt.settled})
            _s3.put_json(ctx.s3, ctx.bucket, key, [vars(row) for row in recorded.values()])
            if attempt.retry:
                raise TransientError(
                    f"SES failed {len(attempt.retry)} of {len(pending)} sends "
                    f"({', '.join(sorted(set(attempt.retry.values())))}); the chunk is "
                    "retried and sends only those"
                )
            if attempt.wait:
                # Throttled: try again when the account could have sent these, without
                # spending one of the task's attempts.
                later = max(
                    LONG_WAITS.get(code, len(attempt.wait) / (self.pacer.account_rate or 1.0))
                    for code in attempt.wait.values()
                )
                return state.model_copy(
                    update={"resume_at": self.clock() + _seconds(max(1.0, later))}
                )
            # This part's share of the rate, and no sooner than its next place in the timetable.
            resume_at = self.clock() + _seconds(len(pending) * lane.lanes / rate)
            following = lane.due(batch + 1, params.batch_size / rate)
            if following is not None:
                resume_at = max(resume_at, following)
        data = {**state.data, **_tally(state.data, (recorded[index] for index in indexes))}
        cursor = indexes.stop
        return ChunkState(
            units_total=state.units_total,
            units_done=cursor - begin,
            cursor=cursor,
            data=data,
            done=cursor >= end,
            resume_at=None if cursor >= end else resume_at,
        )

    def finish(self, params: EmailParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return self._report(params, ctx, state.data)

    # ------------------------------------------------------------ in parallel groups

    def plan(self, params: EmailParams, state: ChunkState, ctx: TaskContext) -> Plan | None:
        """Contiguous groups of whole batches, before any is sent, each with its lane in the
        task's timetable (from now) and held back until its first slot (its first invocation
        then sends, rather than handing over to wait for it); None to send them all in one
        run."""
        params = EmailParams.model_validate(params)
        now = self.clock()
        interval = params.batch_size / _rate(params, ctx)

        def lane(index: int, lanes: int) -> dict[str, Any]:
            return {"lane": {"start": now.isoformat(), "lanes": lanes, "lane": index}}

        def first_slot(index: int, lanes: int) -> float:
            due = Lane(start=now, lanes=lanes, lane=index).due(0, interval)
            return 0.0 if due is None else (due - now).total_seconds()

        return plan_groups(
            state,
            ctx,
            params.total,
            params.max_parallel,
            params.batch_size,
            extra=lane,
            start_after=first_slot,
        )

    def finish_part(self, params: EmailParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        """The group's range and tallies (no verdict of its own: a group whose every
        recipient failed fails the task only if every other group's did)."""
        data = state.data
        names = ("begin", "end", *COUNTS, "failures", "failure_codes")
        return TaskResult(summary={name: data[name] for name in names})

    def verify(
        self, params: EmailParams, results: list[dict[str, Any]], ctx: TaskContext
    ) -> dict[int, ChunkState]:
        return {}  # groups begin on batches of a known list: no guess to check

    def merge(
        self,
        params: EmailParams,
        state: ChunkState,
        results: list[dict[str, Any]],
        ctx: TaskContext,
    ) -> TaskResult:
        """The groups' tallies added up, their failures joined in recipient order (the first
        MAX_FAILURES_KEPT of all, as one run keeps them), the CSV of every recipient."""
        params = EmailParams.model_validate(params)
        data = merged_figures(results, COUNTS, MAX_FAILURES_KEPT)
        if data["items"] != params.total:
            raise RuntimeError(f"recipient groups cover {data['items']} of {params.total}")
        codes: dict[str, int] = {}
        for result in results:
            for code, count in result["failure_codes"].items():
                codes[code] = codes.get(code, 0) + count
        data["failure_codes"] = codes
        return self._report(params, ctx, data)

    def _report(self, params: EmailParams, ctx: TaskContext, data: Mapping[str, Any]) -> TaskResult:
        """The task's result from its tallies; the CSV of every recipient and result.json
        written."""
        params = EmailParams.model_validate(params)
        csv_key = ctx.results_prefix + "recipients.csv"
        _s3.put_csv(ctx.s3, ctx.bucket, csv_key, CSV_COLUMNS, self._all_rows(ctx))
        summary = {
            "recipients": params.total,
            "sent": data["sent"],
            "failed": data["failed"],
            "failure_codes": data["failure_codes"],
            "failures": data["failures"],
            "failures_truncated": data["failed"] > len(data["failures"]),
            "recipients_csv": csv_key,
        }
        key = ctx.results_prefix + "result.json"
        _s3.put_json(ctx.s3, ctx.bucket, key, summary)
        return TaskResult(
            summary=summary,
            location=_s3.s3_uri(ctx.bucket, key),
            outputs=[csv_key],
            total_items=params.total,
            failed_items=data["failed"],
        )

    # ------------------------------------------------------------ sending

    def _send(self, params: EmailParams, pending: list[int], ctx: TaskContext) -> Attempt:
        """Send to `pending`, retrying throttled and failed destinations briefly here."""
        attempt = Attempt()
        for delay in (*IN_CHUNK_RETRY_DELAYS, None):
            attempt.wait, attempt.retry = {}, {}
            try:
                response = ctx.sesv2.send_bulk_email(**self._request(params, pending, ctx))
            except (ClientError, BotoCoreError) as exc:
                code = aws_error_code(exc) or type(exc).__name__
                kind = call_error_class(exc)
                if kind == FAILED:
                    reason = _reason(exc)
                    attempt.settled += [
                        Outcome(i + 1, params.recipient(i), FAILED, code=code, reason=reason)
                        for i in pending
                    ]
                    return attempt
                unsettled = attempt.wait if kind == WAIT else attempt.retry
                unsettled.update(dict.fromkeys(pending, code))
            else:
                results = response["BulkEmailEntryResults"]
                for index, result in zip(pending, results, strict=True):
                    status = result.get("Status", "FAILED")
                    kind = ENTRY_STATUSES.get(status, RETRY)
                    if kind in (WAIT, RETRY):
                        (attempt.wait if kind == WAIT else attempt.retry)[index] = status
                        continue
                    outcome = Outcome(index + 1, params.recipient(index), kind)
                    if kind == SENT:
                        outcome.message_id = result.get("MessageId", "")
                    else:
                        outcome.code = status
                        outcome.reason = result.get("Error", "")[:MAX_REASON_CHARS]
                    attempt.settled.append(outcome)
            pending = [*attempt.wait, *attempt.retry]
            if not pending or delay is None:
                return attempt
            self.sleep(delay)
        return attempt

    def _request(self, params: EmailParams, indexes: list[int], ctx: TaskContext) -> dict[str, Any]:
        entries = []
        for index in indexes:
            subject, body = params.message(index)
            data = json.dumps({"subject": subject, "body": body}, ensure_ascii=False)
            entries.append(
                {
                    "Destination": {"ToAddresses": [params.recipient(index)]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {"ReplacementTemplateData": data}
                    },
                }
            )
        return {
            "FromEmailAddress": ctx.email_sender,
            "DefaultContent": {
                "Template": {
                    "TemplateContent": INLINE_TEMPLATE,
                    "TemplateData": json.dumps({"subject": "", "body": ""}),
                }
            },
            "BulkEmailEntries": entries,
        }

    # ------------------------------------------------------------ outcomes in S3

    def _outcomes_key(self, prefix: str, first: int) -> str:
        return prefix + f"recipients/{first:06d}.json"

    def _read_outcomes(self, ctx: TaskContext, key: str) -> list[Outcome]:
        rows = _s3.get_json_or_none(ctx.s3, ctx.bucket, key) or []
        return [Outcome(**row) for row in rows]

    def _all_rows(self, ctx: TaskContext) -> Iterable[Mapping[str, Any]]:
        """Every recipient's row, in order, from the chunks' outcome objects (named by their
        first recipient, zero-padded: listed in recipient order, whichever part wrote them)."""
        prefix = ctx.results_prefix + "recipients/"
        for key, _ in _s3.iter_keys(ctx.s3, ctx.bucket, prefix):
            rows = sorted(self._read_outcomes(ctx, key), key=lambda row: row.index)
            yield from (vars(row) for row in rows)


@dataclass(frozen=True)
class Lane:
    """A part's place in its task's timetable: batch m of the part in lane k of L may go no
    sooner than start + (m * L + k) batch intervals. Every batch has a slot of its own, so
    the parts together send at most one batch per interval on average, and (each part also
    keeping to 1/L of the rate after its own sends) at most L batches early in any window.
    A whole run has no timetable: one lane, due at once."""

    start: datetime | None = None
    lanes: int = 1
    lane: int = 0

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Lane:
        planned = data.get("lane")
        if planned is None:
            return cls()
        start = datetime.fromisoformat(planned["start"])
        return cls(start=start, lanes=planned["lanes"], lane=planned["lane"])

    def due(self, batch: int, interval: float) -> datetime | None:
        """When the part's batch number `batch` may go (None: whenever)."""
        if self.start is None:
            return None
        return self.start + _seconds((batch * self.lanes + self.lane) * interval)


def may_email(address: str, submitter: Submitter) -> bool:
    """The simulator, the submitter's own verified address, or the operator's allow-list
    (a whole address, or its domain exactly; case does not matter in either)."""
    address = address.lower()
    domain = address.rsplit("@", 1)[-1]
    if domain == SIMULATOR_DOMAIN:
        return True
    if submitter.verified_email and address == submitter.verified_email.lower():
        return True
    allowed = {entry.lower() for entry in submitter.allowed_recipients}
    return address in allowed or domain in allowed


def _tally(before: Mapping[str, Any], rows: Iterable[Outcome]) -> dict[str, Any]:
    sent, failed = before["sent"], before["failed"]
    failures = list(before["failures"])
    codes = dict(before["failure_codes"])
    for row in rows:
        if row.status == SENT:
            sent += 1
            continue
        failed += 1
        codes[row.code] = codes.get(row.code, 0) + 1
        if len(failures) < MAX_FAILURES_KEPT:
            failures.append(
                {"index": row.index, "email": row.email, "code": row.code, "message": row.reason}
            )
    return {"sent": sent, "failed": failed, "failures": failures, "failure_codes": codes}


def _rate(params: EmailParams, ctx: TaskContext) -> float:
    """The task's emails a second: its own, unless the service's ceiling is lower."""
    return min(params.rate_per_second, ctx.email_rate_per_second)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", str(exc)))[:MAX_REASON_CHARS]
    return str(exc)[:MAX_REASON_CHARS]


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


EMAIL = Email()
