"""Per-owner quotas as data: what each one counts, over which window, and its default limit.

The store takes a submit's amounts from exact per-owner counters in the same transaction as
the task's write (`taskqueue.store.quotas`); an operator's override for one owner is an item
of the table (`QUOTA#<owner>`, `LIMITS`), read with each check, so raising a limit needs no
deploy. Tasks not yet finished are released from the stream, once per finish
(`taskqueue.counters`). See docs/operations.md, "Quotas".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

Window = Literal["none", "minute", "day"]
# A full quota of tasks not yet finished frees up as tasks finish: a hint, not a promise.
ACTIVE_RETRY_SECONDS = 30


class Quota(StrEnum):
    ACTIVE_TASKS = "active_tasks"
    SUBMITS_PER_MINUTE = "submits_per_minute"
    EMAIL_RECIPIENTS_PER_DAY = "email_recipients_per_day"
    UPLOAD_BYTES_PER_DAY = "upload_bytes_per_day"


@dataclass(frozen=True)
class QuotaRule:
    quota: Quota
    window: Window
    bucket: str  # the counter item's sort key, before its window ("MIN#2026-11-30T17:13")
    counts: str  # what the limit counts, as the 429's message says it


RULES: dict[Quota, QuotaRule] = {
    rule.quota: rule
    for rule in (
        QuotaRule(Quota.ACTIVE_TASKS, "none", "ACTIVE", "tasks not yet finished"),
        QuotaRule(Quota.SUBMITS_PER_MINUTE, "minute", "MIN#", "task submits per minute"),
        QuotaRule(Quota.EMAIL_RECIPIENTS_PER_DAY, "day", "EMAIL#", "EMAIL recipients per day"),
        QuotaRule(Quota.UPLOAD_BYTES_PER_DAY, "day", "UPLOAD#", "bytes uploaded per day"),
    )
}


def bucket(quota: Quota, now: datetime) -> str:
    """The sort key of the counter item that `quota` counts in at `now` (UTC)."""
    rule = RULES[quota]
    match rule.window:
        case "minute":
            return f"{rule.bucket}{now.isoformat()[:16]}"
        case "day":
            return f"{rule.bucket}{now.date().isoformat()}"
        case "none":
            return rule.bucket


def window_end(quota: Quota, now: datetime) -> datetime | None:
    """When the window of `quota` that holds `now` ends (None: it has no window)."""
    match RULES[quota].window:
        case "minute":
            return now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        case "day":
            return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        case "none":
            return None


def retry_after(quota: Quota, now: datetime) -> int:
    """Seconds until the quota may admit again: its window's end, or a hint for active tasks."""
    end = window_end(quota, now)
    if end is None:
        return ACTIVE_RETRY_SECONDS
    return max(1, int((end - now).total_seconds() + 0.999))


def effective_limits(
    defaults: Mapping[Quota, int], overrides: Mapping[str, object]
) -> dict[Quota, int]:
    """The defaults, with an operator's whole-number overrides for this owner (others ignored)."""
    limits = dict(defaults)
    for quota in Quota:
        value = overrides.get(quota.value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limits[quota] = value
    return limits
