"""Status counters: a stream batch's sums added once (a marker per batch), and the stats read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from taskqueue.store.items import (
    ACTIVE_BUCKET,
    DAY,
    MINUTE,
    counted_key,
    counter_partitions,
    day_bucket,
    deserialize,
    minute_bucket,
)
from taskqueue.store.table import Table

if TYPE_CHECKING:
    from taskqueue.counters import CounterBatch

PARALLEL_READS = 8  # concurrent Queries of one stats read
# Lambda keeps retrying a batch for as long as the stream keeps it (24 h): markers outlive it.
MARKER_SECONDS = 2 * 86400
MINUTE_SECONDS = 2 * 3600  # finishes per minute are shown for the last hour


@dataclass
class OwnerStats:
    counts: dict[str, dict[str, int]]  # status -> type -> count
    minutes: dict[str, dict[str, int]]  # "YYYY-MM-DDTHH:MM" -> status -> finished


class CounterStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def add_counts(self, batch: CounterBatch) -> int | None:
        """A batch's ADDs and its marker, in one transaction: None, or (nothing written) the
        last sequence number an earlier delivery already counted under this marker."""
        epoch = int(self.table.now().timestamp())
        marker = counted_key(batch.marker)
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": {
                        **marker,
                        "last_sequence": {"S": str(batch.last_sequence)},
                        "records": {"N": str(batch.records)},
                        "expires_at": {"N": str(epoch + MARKER_SECONDS)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        ]
        for (pk, sk), counters in sorted(batch.items.items()):
            names = {f"#c{i}": name for i, name in enumerate(counters)}
            values: dict[str, Any] = {
                f":c{i}": {"N": str(v)} for i, v in enumerate(counters.values())
            }
            expression = "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counters)))
            if sk.startswith((DAY, MINUTE)):  # ACTIVE and the quota shards are for good
                days = (self.table.retention_days + 2) * 86400
                lifetime = MINUTE_SECONDS if sk.startswith(MINUTE) else days
                names["#ttl"] = "expires_at"
                values[":ttl"] = {"N": str(epoch + lifetime)}
                expression += " SET #ttl = :ttl"
            writes.append(
                {
                    "Update": {
                        "TableName": self.table.name,
                        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                        "UpdateExpression": expression,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        old = self.table.transact_new(writes, marker)
        return None if old is None else int(old["last_sequence"]["S"])

    def stats(self, owner: str) -> OwnerStats:
        """Counts by status and type, and finishes per minute over the last hour.

        Reads the owner's counter partitions (one Query each, in parallel).
        """
        now = self.table.now()
        day_cutoff = day_bucket((now - timedelta(days=self.table.retention_days)).date())
        minute_cutoff = minute_bucket(now - timedelta(minutes=60))
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:
            shards = list(pool.map(self.table.query_all, counter_partitions(owner)))
        counts: dict[str, dict[str, int]] = {}
        minutes: dict[str, dict[str, int]] = {}
        for item in (deserialize(item) for shard in shards for item in shard):
            sk = item["sk"]
            counters = {k: v for k, v in item.items() if k not in ("pk", "sk", "expires_at")}
            if sk == ACTIVE_BUCKET or (sk.startswith(DAY) and sk >= day_cutoff):
                for name, value in counters.items():
                    status, task_type = name.split("#", 1)
                    by_type = counts.setdefault(status, {})
                    by_type[task_type] = by_type.get(task_type, 0) + int(value)
            elif sk.startswith(MINUTE) and sk > minute_cutoff:
                bucket = minutes.setdefault(sk.removeprefix(MINUTE), {})
                for name, value in counters.items():
                    bucket[name] = bucket.get(name, 0) + int(value)
        return OwnerStats(counts=counts, minutes=minutes)
