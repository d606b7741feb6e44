"""The quota rules as data: shares that add up to the limit, windows, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskqueue.quotas import (
    QUOTA_SHARDS,
    WHOLE_SHARD,
    Quota,
    counter_attribute,
    effective_limits,
    retry_after,
    shard_order,
    share,
    stale_attributes,
)

AT = datetime(2026, 11, 30, 23, 59, 45, 500000, tzinfo=UTC)


@pytest.mark.parametrize("limit", [0, 1, 5, 15, 16, 17, 600, 1000, 10_000_000])
def test_the_shares_of_a_limit_add_up_to_it(limit: int) -> None:
    shares = [share(limit, shard) for shard in range(QUOTA_SHARDS)]
    assert sum(shares) == limit
    assert max(shares) - min(shares) <= 1


def test_a_limit_of_one_lives_on_shard_zero_alone() -> None:
    assert [share(1, s) for s in range(QUOTA_SHARDS)] == [1] + [0] * (QUOTA_SHARDS - 1)


def test_a_take_tries_its_own_shard_then_every_other_once() -> None:
    order = shard_order(14)
    assert order[:3] == [14, 15, 0]
    assert sorted(order) == list(range(QUOTA_SHARDS))


@pytest.mark.parametrize(
    ("quota", "attribute", "stale", "wait"),
    [
        (Quota.ACTIVE_TASKS, "active", [], 5),
        (
            Quota.SUBMITS_PER_MINUTE,
            "m:2026-11-30T23:59",
            ["m:2026-11-30T23:58", "m:2026-11-30T23:57", "m:2026-11-30T23:56"],
            15,
        ),
    ],
)
def test_each_quota_counts_in_its_window(
    quota: Quota, attribute: str, stale: list[str], wait: int
) -> None:
    assert counter_attribute(quota, AT) == attribute
    assert stale_attributes(quota, AT) == stale
    assert retry_after(quota, AT) == wait


def test_the_operators_limit_replaces_the_default_for_that_quota_only() -> None:
    defaults = {Quota.ACTIVE_TASKS: 1000, Quota.SUBMITS_PER_MINUTE: 600}
    limits = effective_limits(defaults, {Quota.ACTIVE_TASKS: 5, Quota.SUBMITS_PER_MINUTE: None})
    assert limits == {Quota.ACTIVE_TASKS: 5, Quota.SUBMITS_PER_MINUTE: 600}


def test_a_quota_counted_in_amounts_has_its_whole_limit_on_one_item() -> None:
    # a 1,000-recipient EMAIL must fit a limit of 10,000 whatever the task's shard
    shares = [share(10_000, s, Quota.EMAIL_RECIPIENTS_PER_DAY) for s in range(QUOTA_SHARDS + 1)]
    assert shares == [0] * QUOTA_SHARDS + [10_000]
    assert shard_order(3, [Quota.UPLOAD_BYTES_PER_DAY]) == [WHOLE_SHARD]
    with pytest.raises(ValueError):
        shard_order(3, [Quota.ACTIVE_TASKS, Quota.EMAIL_RECIPIENTS_PER_DAY])
