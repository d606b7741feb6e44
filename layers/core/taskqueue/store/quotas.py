"""Per-owner quota counters: QUOTA_SHARDS items per owner, each taken by one conditional write.

A take is one UpdateItem on one shard item (`QUOTA#<owner>#<s>`, sk `USED`): it ADDs the
submit's amounts if each stays within that shard's share of its limit, and removes the
attributes of earlier minutes and days on its way. No transaction and no read: the
operator's limit for the owner (`lim:<quota>`, on every shard item) is part of the condition,
as this environment last saw it; a refusal returns the item, which corrects it. A finished
task's slot comes back from the counters function (`taskqueue.counters`), once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from taskqueue.errors import QuotaExceeded
from taskqueue.quotas import (
    ACTIVE_ATTRIBUTE,
    LIMIT_PREFIX,
    QUOTA_ITEMS,
    QUOTA_SHARDS,
    RULES,
    Quota,
    counter_attribute,
    effective_limits,
    is_window_attribute,
    retry_after,
    shard_order,
    share,
    stale_attributes,
)
from taskqueue.store.items import deserialize, quota_key, shard_of
from taskqueue.store.table import Table, is_condition_failure

# Old window attributes a take's item may carry before one extra write clears them (each
# take removes the periods just before its own; longer gaps leave theirs behind).
MAX_STALE_ATTRIBUTES = 6
# Owners whose operator limits an environment remembers (then it starts over).
MAX_KNOWN_OWNERS = 10_000


# At most this many passes over an owner's shards in one take (see `take`).
LIMIT_PASSES = 3


@dataclass(frozen=True)
class Taken:
    shard: int  # the owner's shard the amounts were taken from
    amounts: dict[Quota, int]
    at: datetime  # by the store's clock: the windows they were counted in


class QuotaStore:
    def __init__(self, table: Table) -> None:
        self.table = table
        # owner -> the operator's limits as last seen on a shard item ({} when none)
        self.known: dict[str, dict[Quota, int | None]] = {}

    def take(
        self,
        owner: str,
        task_id: str,
        amounts: Mapping[Quota, int],
        defaults: Mapping[Quota, int],
    ) -> Taken:
        """Take `amounts` for task `task_id` from one of the owner's shards, the task's own
        first; raises QuotaExceeded when every shard's share refuses. A limit of 0 is none."""
        now = self.table.now()
        refused: dict[Quota, int] = {}
        # A pass that learns the operator's limits changed goes round again: the shards it
        # refused before it learned them were refused under the old limits (a raised limit
        # adds shares to shards that had none). Each further pass needs another change.
        for _ in range(LIMIT_PASSES):
            refused, learned = {}, False
            for shard in shard_order(shard_of(task_id, QUOTA_SHARDS), amounts):
                outcome = self._take_from(owner, shard, amounts, defaults, now)
                if isinstance(outcome, Taken):
                    return outcome
                quota, changed = outcome
                refused[quota] = refused.get(quota, 0) + 1
                learned = learned or changed
            if not learned:
                break
        quota = max(refused, key=lambda q: (refused[q], q == Quota.ACTIVE_TASKS))
        limit = effective_limits(defaults, self.known.get(owner, {}))[quota]
        raise QuotaExceeded(
            f"quota exceeded: at most {limit} {RULES[quota].counts}",
            quota=quota.value,
            limit=limit,
            retry_after=max(retry_after(q, now) for q in refused),
        )

    def give_back(self, owner: str, taken: Taken) -> None:
        """Return what a take took for a task that was not created after all (an idempotent
        repeat, a refusal of its other take, a failed write), to the windows it was counted
        in (a window already over takes it and is removed soon after)."""
        names, values, adds = {}, {}, []
        for i, (quota, amount) in enumerate(taken.amounts.items()):
            names[f"#u{i}"] = counter_attribute(quota, taken.at)
            values[f":u{i}"] = {"N": str(-amount)}
            adds.append(f"#u{i} :u{i}")
        self.table.client.update_item(
            TableName=self.table.name,
            Key=quota_key(owner, taken.shard),
            UpdateExpression="ADD " + ", ".join(adds),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def set_limits(self, owner: str, limits: Mapping[Quota, int | None]) -> None:
        """An operator's limits for one owner (None: back to the default), on every shard
        item of the owner; the next take anywhere sees them. No deploy."""
        names, values, sets, removes = {}, {}, [], []
        for i, (quota, limit) in enumerate(limits.items()):
            names[f"#l{i}"] = LIMIT_PREFIX + quota.value
            if limit is None:
                removes.append(f"#l{i}")
            else:
                values[f":l{i}"] = {"N": str(int(limit))}
                sets.append(f"#l{i} = :l{i}")
        expression = " ".join(
            part
            for part in (
                "SET " + ", ".join(sets) if sets else "",
                "REMOVE " + ", ".join(removes) if removes else "",
            )
            if part
        )
        for shard in range(QUOTA_ITEMS):
            request: dict[str, Any] = {
                "TableName": self.table.name,
                "Key": quota_key(owner, shard),
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
            }
            if values:
                request["ExpressionAttributeValues"] = values
            self.table.client.update_item(**request)

    def usage(self, owner: str) -> dict[Quota, int]:
        """What the owner uses of each quota now, summed over the owner's items (17 reads)."""
        now = self.table.now()
        used = dict.fromkeys(Quota, 0)
        for shard in range(QUOTA_ITEMS):
            item = deserialize(self.table.get_item(quota_key(owner, shard)) or {})
            for quota in Quota:
                used[quota] += int(item.get(counter_attribute(quota, now), 0))
        return used

    def limits(self, owner: str, defaults: Mapping[Quota, int]) -> dict[Quota, int]:
        """The owner's limits: the defaults, or the operator's where set (one read)."""
        item = deserialize(self.table.get_item(quota_key(owner, 0)) or {})
        return effective_limits(defaults, _overrides(item))

    # ------------------------------------------------------------------ internals

    def _take_from(
        self,
        owner: str,
        shard: int,
        amounts: Mapping[Quota, int],
        defaults: Mapping[Quota, int],
        now: datetime,
    ) -> Taken | tuple[Quota, bool]:
        """Take `amounts` from one shard: what was taken, or the quota that refused it and
        whether the operator's limits were found changed on the way (the shard is then tried
        again under the new ones)."""
        learned = False
        while True:
            overrides = self.known.get(owner, {})
            limits = effective_limits(defaults, overrides)
            over = [q for q, a in amounts.items() if limits[q] and a > share(limits[q], shard, q)]
            if over:
                return over[0], learned
            request = self._take_request(owner, shard, amounts, limits, overrides, now)
            try:
                response = self.table.client.update_item(**request)
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                old = deserialize(exc.response.get("Item") or {})  # type: ignore[arg-type]
                seen = _overrides(old)
                if seen != {q: overrides.get(q) for q in Quota}:
                    self._remember(owner, seen)
                    learned = True
                    continue  # the operator changed the limits: the same shard again
                return self._full_quota(old, amounts, limits, shard, now), learned
            counts = deserialize(response.get("Attributes") or {})
            self._clear_stale(owner, shard, counts, now)
            return Taken(shard=shard, amounts=dict(amounts), at=now)

    def _take_request(
        self,
        owner: str,
        shard: int,
        amounts: Mapping[Quota, int],
        limits: Mapping[Quota, int],
        overrides: Mapping[Quota, int | None],
        now: datetime,
    ) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds, removes, conditions = [], [], []
        for i, quota in enumerate(Quota):
            # The limits this environment believes in are part of the condition: a take
            # under limits the operator has changed since is refused, and corrected.
            names[f"#l{i}"] = LIMIT_PREFIX + quota.value
            override = overrides.get(quota)
            if override is None:
                conditions.append(f"attribute_not_exists(#l{i})")
            else:
                values[f":l{i}"] = {"N": str(override)}
                conditions.append(f"#l{i} = :l{i}")
            amount = amounts.get(quota, 0)
            if not amount:
                continue
            names[f"#u{i}"] = counter_attribute(quota, now)
            values[f":u{i}"] = {"N": str(amount)}
            adds.append(f"#u{i} :u{i}")
            if limits[quota]:
                values[f":r{i}"] = {"N": str(share(limits[quota], shard, quota) - amount)}
                conditions.append(f"(attribute_not_exists(#u{i}) OR #u{i} <= :r{i})")
            for n, stale in enumerate(stale_attributes(quota, now)):
                names[f"#s{i}_{n}"] = stale
                removes.append(f"#s{i}_{n}")
        expression = "ADD " + ", ".join(adds)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        return {
            "TableName": self.table.name,
            "Key": quota_key(owner, shard),
            "UpdateExpression": expression,
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _full_quota(
        self,
        item: Mapping[str, Any],
        amounts: Mapping[Quota, int],
        limits: Mapping[Quota, int],
        shard: int,
        now: datetime,
    ) -> Quota:
        """Which quota's share refused a take, from the item as the refusal found it."""
        for quota, amount in amounts.items():
            used = int(item.get(counter_attribute(quota, now), 0))
            if limits[quota] and used + amount > share(limits[quota], shard, quota):
                return quota
        return Quota.ACTIVE_TASKS  # the item moved on since: count it as full

    def _remember(self, owner: str, overrides: dict[Quota, int | None]) -> None:
        if len(self.known) >= MAX_KNOWN_OWNERS:
            self.known.clear()
        self.known[owner] = overrides

    def _clear_stale(
        self, owner: str, shard: int, counts: Mapping[str, Any], now: datetime
    ) -> None:
        """Remove window attributes of long-past periods, once they add up (a shard taken
        from only now and then keeps the period of each take: the next take removes only the
        periods just before its own)."""
        current = {counter_attribute(q, now) for q in Quota}
        stale = [k for k in counts if is_window_attribute(k) and k not in current]
        if len(stale) <= MAX_STALE_ATTRIBUTES:
            return
        names = {f"#s{i}": name for i, name in enumerate(stale)}
        self.table.client.update_item(
            TableName=self.table.name,
            Key=quota_key(owner, shard),
            UpdateExpression="REMOVE " + ", ".join(names),
            ExpressionAttributeNames=names,
        )


def _overrides(item: Mapping[str, Any]) -> dict[Quota, int | None]:
    return {
        quota: int(value) if (value := item.get(LIMIT_PREFIX + quota.value)) is not None else None
        for quota in Quota
    }


__all__ = ["ACTIVE_ATTRIBUTE", "QuotaStore", "Taken"]
