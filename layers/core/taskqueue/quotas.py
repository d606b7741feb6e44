"""Per-owner quotas as data: what each one counts, its window, and how a limit is shared.

An owner's counters live in QUOTA_SHARDS items (`QUOTA#<owner>#<s>`), so no key is hot at
10,000 submits a second. Each quota's limit is split into per-shard shares that add up to
it; a submit takes from one shard with one conditional write, trying the next shard when
that one is full, so the owner is refused only when every share is used: exact, with no
transaction. The store applies these rules (`taskqueue.store.quotas`); the counters function
gives a finished task's slot back (`taskqueue.counters`). See docs/operations.md, "Quotas".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

QUOTA_SHARDS = 16
# The owner's item of the quotas taken in amounts (recipients, bytes): one item, not shares,
# so that a 1,000-recipient EMAIL fits; the submits a minute bound how often it is written.
WHOLE_SHARD = QUOTA_SHARDS
QUOTA_ITEMS = QUOTA_SHARDS + 1
Window = Literal["none", "minute", "day"]
# A full quota of tasks not yet finished frees up as tasks finish: a hint, not a promise.
ACTIVE_RETRY_SECONDS = 5
# Window attributes of earlier periods a take removes on its way (they count nothing more).
STALE_PERIODS = 3


class Quota(StrEnum):
    ACTIVE_TASKS = "active_tasks"
    SUBMITS_PER_MINUTE = "submits_per_minute"
    EMAIL_RECIPIENTS_PER_DAY = "email_recipients_per_day"
    UPLOAD_BYTES_PER_DAY = "upload_bytes_per_day"


@dataclass(frozen=True)
class QuotaRule:
    quota: Quota
    window: Window
    attribute: str  # the counter's attribute on a shard item, before its window's name
    counts: str  # what the limit counts, as the 429's message says it
    sharded: bool = True  # False: the whole limit on the owner's WHOLE_SHARD item


RULES: dict[Quota, QuotaRule] = {
    rule.quota: rule
    for rule in (
        QuotaRule(Quota.ACTIVE_TASKS, "none", "active", "tasks not yet finished"),
        QuotaRule(Quota.SUBMITS_PER_MINUTE, "minute", "m:", "task submits a minute"),
        QuotaRule(
            Quota.EMAIL_RECIPIENTS_PER_DAY, "day", "e:", "EMAIL recipients a day", sharded=False
        ),
        QuotaRule(Quota.UPLOAD_BYTES_PER_DAY, "day", "b:", "bytes uploaded a day", sharded=False),
    )
}
ACTIVE_ATTRIBUTE = RULES[Quota.ACTIVE_TASKS].attribute
# The operator's limit for one owner, written on every shard item of the owner.
LIMIT_PREFIX = "lim:"


def period(window: Window, now: datetime) -> datetime:
    """The start of the window period holding `now`."""
    match window:
        case "minute":
            return now.replace(second=0, microsecond=0)
        case "day":
            return now.replace(hour=0, minute=0, second=0, microsecond=0)
        case "none":
            return now


def _step(window: Window) -> timedelta:
    return timedelta(minutes=1) if window == "minute" else timedelta(days=1)


def _name(window: Window, start: datetime) -> str:
    return start.isoformat()[:16] if window == "minute" else start.date().isoformat()


def counter_attribute(quota: Quota, now: datetime) -> str:
    """The attribute counting `quota` at `now`: `active`, or named after its period."""
    rule = RULES[quota]
    if rule.window == "none":
        return rule.attribute
    return rule.attribute + _name(rule.window, period(rule.window, now))


def stale_attributes(quota: Quota, now: datetime) -> list[str]:
    """The attributes of the periods just before the current one (none for `active`)."""
    rule = RULES[quota]
    if rule.window == "none":
        return []
    start, step = period(rule.window, now), _step(rule.window)
    return [
        rule.attribute + _name(rule.window, start - step * n) for n in range(1, 1 + STALE_PERIODS)
    ]


def is_window_attribute(name: str) -> bool:
    return any(r.window != "none" and name.startswith(r.attribute) for r in RULES.values())


def retry_after(quota: Quota, now: datetime) -> int:
    """Seconds until `quota` may admit again: its period's end, or a hint for active tasks."""
    rule = RULES[quota]
    if rule.window == "none":
        return ACTIVE_RETRY_SECONDS
    end = period(rule.window, now) + _step(rule.window)
    return max(1, int((end - now).total_seconds() + 0.999))


def share(limit: int, shard: int, quota: Quota = Quota.ACTIVE_TASKS) -> int:
    """Shard `shard`'s part of `quota`'s `limit`: the shares of all shards add up to the
    limit, so a limit below QUOTA_SHARDS leaves some shards none (a limit of 1 lives on shard
    0 alone). An unsharded quota's whole limit is on WHOLE_SHARD."""
    if not RULES[quota].sharded:
        return limit if shard == WHOLE_SHARD else 0
    if shard >= QUOTA_SHARDS:
        return 0
    return limit // QUOTA_SHARDS + (1 if shard < limit % QUOTA_SHARDS else 0)


def shard_order(first: int, quotas: Iterable[Quota] = (Quota.ACTIVE_TASKS,)) -> list[int]:
    """The shards a take of `quotas` tries: the task's own, then the others in turn; the
    owner's WHOLE_SHARD item for the unsharded quotas (a take is of one kind or the other)."""
    kinds = {RULES[quota].sharded for quota in quotas}
    if len(kinds) != 1:
        raise ValueError("a take is of sharded quotas or of unsharded ones, not both")
    if kinds == {False}:
        return [WHOLE_SHARD]
    return [(first + n) % QUOTA_SHARDS for n in range(QUOTA_SHARDS)]


def effective_limits(
    defaults: Mapping[Quota, int], overrides: Mapping[Quota, int | None]
) -> dict[Quota, int]:
    """The defaults, with the operator's limits for one owner where set."""
    return {
        quota: limit if (limit := overrides.get(quota)) is not None else default
        for quota, default in defaults.items()
    }
