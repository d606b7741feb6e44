"""DATA_PROCESSING's chunk work as it was before the columnar engine (commit 2a2c15d), kept
unchanged so that `python -m bench work` measures "today" beside the new code on the same
file, in the same run: line-aligned 1 MiB chunks, the csv module, Welford accumulators.

Its line-aligned cut splits quoted cells that hold line breaks (the reason for the new code);
for CPU per GB that changes nothing, and its figures are only timed, never trusted.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from taskqueue.task_types.column_stats import parse_number  # the same rule, unchanged

MAX_TRACKED_COLUMNS = 50


@dataclass(slots=True)
class Moments:
    """Count, sum, mean, M2, min and max of a stream of numbers (Welford's update)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def merge(self, other: Moments) -> Moments:
        """Both streams as one (Chan et al.'s pairwise formula), so chunks combine exactly."""
        if other.count == 0:
            return Moments(self.count, self.mean, self.m2, self.total, self.minimum, self.maximum)
        if self.count == 0:
            return Moments(
                other.count,
                other.mean,
                other.m2,
                other.total,
                other.minimum,
                other.maximum,
            )
        count = self.count + other.count
        delta = other.mean - self.mean
        return Moments(
            count=count,
            mean=self.mean + delta * other.count / count,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / count,
            total=self.total + other.total,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
        )

    @property
    def std_population(self) -> float | None:
        return math.sqrt(self.m2 / self.count) if self.count else None

    @property
    def std_sample(self) -> float | None:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None


@dataclass(slots=True)
class ColumnStats:
    """Everything kept about one column; stored as a flat list to keep the checkpoint small."""

    moments: Moments
    empty: int = 0
    invalid: int = 0

    def add_cell(self, cell: str) -> None:
        text = cell.strip()
        if not text:
            self.empty += 1
            return
        value = parse_number(text)
        if value is None:
            self.invalid += 1
        else:
            self.moments.add(value)

    def merge(self, other: ColumnStats) -> ColumnStats:
        return ColumnStats(
            self.moments.merge(other.moments),
            self.empty + other.empty,
            self.invalid + other.invalid,
        )

    def to_json(self) -> list[Any]:
        m = self.moments
        bounds = [m.minimum, m.maximum] if m.count else [None, None]
        return [m.count, m.mean, m.m2, m.total, *bounds, self.empty, self.invalid]

    @classmethod
    def from_json(cls, item: list[Any]) -> ColumnStats:
        count, mean, m2, total, minimum, maximum, empty, invalid = item
        moments = Moments(
            count,
            mean,
            m2,
            total,
            math.inf if minimum is None else minimum,
            -math.inf if maximum is None else maximum,
        )
        return cls(moments, empty, invalid)

    def report(self, name: str) -> dict[str, Any]:
        m = self.moments
        return {
            "name": name,
            "count": m.count,
            "sum": _finite(m.total) if m.count else None,
            "mean": _finite(m.mean) if m.count else None,
            "min": m.minimum if m.count else None,
            "max": m.maximum if m.count else None,
            "std_population": _finite(m.std_population),
            "std_sample": _finite(m.std_sample),
            "empty": self.empty,
            "invalid": self.invalid,
        }


def _finite(value: float | None) -> float | None:
    # Extreme inputs can overflow a sum or M2; JSON has no inf, so say "unknown" instead.
    return value if value is not None and math.isfinite(value) else None


def complete_lines_length(data: bytes, at_eof: bool) -> int:
    """How many leading bytes of data are whole lines: through the last newline.

    At the end of the object the rest is a final line without a newline, so all of it counts.
    A chunk that cuts after "\\n" never splits "\\r\\n" or a UTF-8 sequence.
    """
    if at_eof:
        return len(data)
    return data.rfind(b"\n") + 1


def parse_records(data: bytes, delimiter: str, first: bool) -> list[list[str]]:
    text = data.decode("utf-8", errors="replace")
    if first:
        text = text.removeprefix("\ufeff")
    # newline="" hands the csv module the line endings as they are, so "\r\n" parses right.
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise ValueError(f"not a readable CSV: {exc}") from exc


@dataclass(slots=True)
class ChunkTally:
    """The statistics of one chunk's rows, merged into the checkpoint afterwards."""

    columns: list[ColumnStats]
    rows: int = 0
    ragged_rows: int = 0


def tally_rows(records: list[list[str]], width: int) -> ChunkTally:
    """Counts and moments of records whose header has `width` fields."""
    tracked = min(width, MAX_TRACKED_COLUMNS)
    tally = ChunkTally([ColumnStats(Moments()) for _ in range(tracked)])
    for record in records:
        if not record:
            continue  # a blank line is no row
        tally.rows += 1
        if len(record) != width:
            tally.ragged_rows += 1
        for index, column in enumerate(tally.columns):
            column.add_cell(record[index] if index < len(record) else "")
    return tally


def run(data: bytes, chunk_bytes: int = 1024 * 1024, delimiter: str = ",") -> list[dict[str, Any]]:
    """The whole file in line-aligned chunks, as the old task ran it (without S3)."""
    start, width, stats = 0, 0, None
    size = len(data)
    while start < size:
        end = min(start + chunk_bytes, size)
        chunk = data[start:end]
        used = complete_lines_length(chunk, end >= size) or len(chunk)
        records = parse_records(chunk[:used], delimiter, first=start == 0)
        if start == 0:
            while records and not records[0]:
                records.pop(0)
            width = len(records.pop(0)) if records else 0
        tally = tally_rows(records, width)
        stats = (
            tally.columns
            if stats is None
            else [a.merge(b) for a, b in zip(stats, tally.columns, strict=True)]
        )
        start += used
    return [column.report(str(index)) for index, column in enumerate(stats or [])]
