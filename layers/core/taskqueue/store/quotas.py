"""Per-owner quota counters and the operator's per-owner limits, in the owner's own partition.

Every counter is one item (`QUOTA#<owner>`, a bucket per window) and every take is an ADD under
the condition that the total stays within the limit, so concurrent requests can never admit
more than the limit between them. Each owner has a partition of their own: no hot key shared
by all owners, no Scan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from taskqueue.errors import QuotaExceeded
from taskqueue.quotas import RULES, Quota, bucket, effective_limits, retry_after, window_end
from taskqueue.store.items import QUOTA_LIMITS, QUOTA_USED, deserialize, quota_pk
from taskqueue.store.table import Table, is_condition_failure

# A windowed counter outlives its window by a day (read by /stats), then TTL removes it.
KEPT_AFTER_WINDOW = timedelta(days=1)


class QuotaStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def limits(self, owner: str, defaults: Mapping[Quota, int]) -> dict[Quota, int]:
        """The owner's limits: the defaults, unless the operator's LIMITS item says otherwise.

        An eventually consistent read (half the cost): a raised limit applies within a second.
        """
        response = self.table.client.get_item(
            TableName=self.table.name,
            Key={"pk": {"S": quota_pk(owner)}, "sk": {"S": QUOTA_LIMITS}},
        )
        return effective_limits(defaults, deserialize(response.get("Item") or {}))

    def set_limits(self, owner: str, limits: Mapping[Quota, int]) -> None:
        """An operator's override of some of one owner's limits (the others keep the default)."""
        names = {f"#q{i}": quota.value for i, quota in enumerate(limits)}
        values = {f":q{i}": {"N": str(int(limit))} for i, limit in enumerate(limits.values())}
        self.table.client.update_item(
            TableName=self.table.name,
            Key={"pk": {"S": quota_pk(owner)}, "sk": {"S": QUOTA_LIMITS}},
            UpdateExpression="SET "
            + ", ".join(f"{n} = {v}" for n, v in zip(names, values, strict=True)),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def usage(self, owner: str, now: datetime) -> dict[Quota, int]:
        """What each quota has used now (its current window), in one Query per quota bucket."""
        used: dict[Quota, int] = {}
        for quota in Quota:
            item = self.table.get_item(self._key(owner, quota, now))
            used[quota] = int(deserialize(item or {}).get(QUOTA_USED, 0))
        return used

    def take_writes(
        self,
        owner: str,
        amounts: Mapping[Quota, int],
        limits: Mapping[Quota, int],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """The transaction actions that take `amounts`, each refused if it would pass its
        limit. Raises QuotaExceeded at once for an amount larger than the whole limit."""
        writes: list[dict[str, Any]] = []
        for quota, amount in amounts.items():
            if amount <= 0:
                continue
            limit = limits[quota]
            if amount > limit:
                raise self.exceeded(quota, limit, now)
            values: dict[str, Any] = {
                ":amount": {"N": str(amount)},
                ":room": {"N": str(limit - amount)},
            }
            expression = "ADD #used :amount"
            end = window_end(quota, now)
            if end is not None:
                expires = int((end + KEPT_AFTER_WINDOW).timestamp())
                values[":ttl"] = {"N": str(expires)}
                expression += " SET expires_at = :ttl"
            writes.append(
                {
                    "Update": {
                        "TableName": self.table.name,
                        "Key": self._key(owner, quota, now),
                        "UpdateExpression": expression,
                        "ConditionExpression": "attribute_not_exists(#used) OR #used <= :room",
                        "ExpressionAttributeNames": {"#used": QUOTA_USED},
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        return writes

    def take(
        self,
        owner: str,
        amounts: Mapping[Quota, int],
        limits: Mapping[Quota, int],
        now: datetime,
    ) -> None:
        """Take `amounts` on their own (not with a task's write): all or none of them."""
        writes = self.take_writes(owner, amounts, limits, now)
        if not writes:
            return
        try:
            if len(writes) == 1:
                self.table.client.update_item(**writes[0]["Update"])
            else:
                self.table.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
        except ClientError as exc:
            refused = self.refused(exc, writes, 0)
            if refused is None:
                raise
            raise self.exceeded(refused, limits[refused], now) from exc

    def refused(
        self, exc: ClientError, writes: Sequence[dict[str, Any]], offset: int
    ) -> Quota | None:
        """The quota whose condition refused a write of `writes` (found at `offset` in the
        request that failed), or None when the failure was something else."""
        if is_condition_failure(exc) and len(writes) == 1 and offset == 0:
            return self._quota_of(writes[0])
        reasons = exc.response.get("CancellationReasons", [])
        for index, write in enumerate(writes):
            position = offset + index
            if (
                position < len(reasons)
                and reasons[position].get("Code") == "ConditionalCheckFailed"
            ):
                return self._quota_of(write)
        return None

    def exceeded(self, quota: Quota, limit: int, now: datetime) -> QuotaExceeded:
        return QuotaExceeded(
            f"quota exceeded: at most {limit} {RULES[quota].counts}",
            quota=quota.value,
            limit=limit,
            retry_after=retry_after(quota, now),
        )

    @staticmethod
    def _quota_of(write: Mapping[str, Any]) -> Quota:
        sk = write["Update"]["Key"]["sk"]["S"]
        return next(rule.quota for rule in RULES.values() if sk.startswith(rule.bucket))

    def _key(self, owner: str, quota: Quota, now: datetime) -> dict[str, Any]:
        return {"pk": {"S": quota_pk(owner)}, "sk": {"S": bucket(quota, now)}}
