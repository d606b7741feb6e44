"""Mergeable per-column accumulators of DATA_PROCESSING, and the typed report made from them.

Every cell of a column feeds one candidate accumulator per type (number, boolean, date/time,
text); the column's type is picked only at the end, over the whole file, so chunks (and, later,
parallel parts) can be merged in any grouping and give the same answer. `merge` is a pure
function: it never changes its arguments.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

# A type is inferred when at least this share of a column's non-empty cells fit it; the
# cells that do not fit are the column's "invalid" ones.
TYPE_FIT_SHARE = 0.9
# Exact distinct values and their counts are kept while a column has at most this many
# distinct values (and their text stays small); past it, distinct is a HyperLogLog estimate.
EXACT_DISTINCT_LIMIT = 1000
EXACT_VALUES_CHARS = 100_000
TOP_VALUES = 10
# HyperLogLog with 2**12 registers: relative standard error 1.04 / sqrt(4096) = 1.6 %.
HLL_BITS = 12
HLL_REGISTERS = 1 << HLL_BITS
HLL_STANDARD_ERROR = round(1.04 / math.sqrt(HLL_REGISTERS), 4)
BOOLEAN_TRUE = ("true", "yes")
BOOLEAN_FALSE = ("false", "no")
# Dates and date-times: the same patterns serve DuckDB's regexp_full_match and Python's re.
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
DATE_PATTERN = _YEAR + "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_HOUR_MINUTE = "([01][0-9]|2[0-3]):[0-5][0-9]"
DATETIME_PATTERN = (
    DATE_PATTERN
    + "[T ]"
    + _HOUR_MINUTE
    + "(:[0-5][0-9](\\.[0-9]{1,6})?)?(Z|[+-]"
    + _HOUR_MINUTE
    + ")?"
)
_DATE = re.compile(DATE_PATTERN)
_DATETIME = re.compile(DATETIME_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_number(cell: str) -> float | None:
    """The finite number a stripped, non-empty cell holds, or None if it is not one.

    float() also reads "nan", "inf" and "1_000"; none of those is a data value here.
    """
    try:
        value = float(cell)
    except ValueError:
        return None
    if not math.isfinite(value) or "_" in cell:
        return None
    return value


def parse_boolean(cell: str) -> bool | None:
    """True or False for a stripped cell that is a boolean (any case), else None."""
    folded = cell.lower()
    if folded in BOOLEAN_TRUE:
        return True
    if folded in BOOLEAN_FALSE:
        return False
    return None


def parse_instant(cell: str) -> tuple[bool, int] | None:
    """(is a date-time, UTC microseconds since the epoch) of a stripped cell that is a real
    calendar date (YYYY-MM-DD) or date-time (DATETIME_PATTERN; no offset: UTC), else None."""
    try:
        if _DATE.fullmatch(cell):
            day = date.fromisoformat(cell)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return False, (moment - _EPOCH) // _MICROSECOND
        if _DATETIME.fullmatch(cell):
            moment = datetime.fromisoformat(cell.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return True, (moment - _EPOCH) // _MICROSECOND
    except ValueError:  # a day the calendar does not have
        return None
    return None


def is_integer_literal(number: str) -> bool:
    """Of a cell that is a number: whether it is written as an integer (no ".", "e", "E")."""
    return not any(mark in number for mark in ".eE")


def two_sum(a: float, b: float) -> tuple[float, float]:
    """a + b as the rounded sum and its exact rounding error (Knuth), for compensated merges."""
    total = a + b
    virtual = total - a
    return total, (a - (total - virtual)) + (b - virtual)


@dataclass(frozen=True, slots=True)
class Numbers:
    """Count, compensated sum, M2 (sum of squared deviations), min and max of the numbers."""

    count: int = 0
    integers: int = 0
    total: float = 0.0
    total_error: float = 0.0
    m2: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    @property
    def mean(self) -> float:
        return (self.total + self.total_error) / self.count if self.count else 0.0

    def merge(self, other: Numbers) -> Numbers:
        """Both streams as one: Chan et al.'s pairwise update for M2, sums kept compensated."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        total, error = two_sum(self.total, other.total)
        return Numbers(
            count=count,
            integers=self.integers + other.integers,
            total=total,
            total_error=self.total_error + other.total_error + error,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / count,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
        )

    @classmethod
    def of(cls, values: list[float], integers: int = 0) -> Numbers:
        """The accumulator of a small list of values (the cells the engine hands back)."""
        return cls.of_counts([(value, 1) for value in values], integers)

    @classmethod
    def of_counts(cls, counted: list[tuple[float, int]], integers: int = 0) -> Numbers:
        """The accumulator of values each seen `count` times (a column's few distinct ones).
        A product value x count is one rounding, far below the 1e-12 the sums keep."""
        counted = [(value, count) for value, count in counted if count]
        if not counted:
            return cls()
        count = sum(n for _, n in counted)
        total = _fsum([value * n for value, n in counted])
        mean = total / count
        return cls(
            count=count,
            integers=integers,
            total=total,
            m2=_fsum([n * (value - mean) ** 2 for value, n in counted]),
            minimum=min(value for value, _ in counted),
            maximum=max(value for value, _ in counted),
        )


def _fsum(values: list[float]) -> float:
    # math.fsum refuses to overflow; the engine's sums overflow to inf, as the report expects.
    try:
        return math.fsum(values)
    except OverflowError:
        return sum(values)


@dataclass(frozen=True, slots=True)
class Text:
    """Lengths, a HyperLogLog sketch, and exact value counts while they stay small."""

    count: int = 0
    length_min: int = 0
    length_max: int = 0
    length_total: int = 0
    registers: bytes = bytes(HLL_REGISTERS)
    # None once the column has too many distinct values to count them exactly.
    values: dict[str, int] | None = field(default_factory=dict)

    def merge(self, other: Text) -> Text:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        return Text(
            count=self.count + other.count,
            length_min=min(self.length_min, other.length_min),
            length_max=max(self.length_max, other.length_max),
            length_total=self.length_total + other.length_total,
            registers=bytes(map(max, self.registers, other.registers)),
            values=merge_values(self.values, other.values),
        )

    def distinct(self) -> tuple[int, bool]:
        """(distinct values, exact?): the exact count while kept, else the sketch's estimate."""
        if self.values is not None:
            return len(self.values), True
        return hll_estimate(self.registers), False


def merge_values(a: dict[str, int] | None, b: dict[str, int] | None) -> dict[str, int] | None:
    if a is None or b is None:
        return None
    merged = dict(a)
    for value, count in b.items():
        merged[value] = merged.get(value, 0) + count
    return merged if values_fit(merged) else None


def values_fit(values: dict[str, int]) -> bool:
    return len(values) <= EXACT_DISTINCT_LIMIT and sum(map(len, values)) <= EXACT_VALUES_CHARS


def hll_estimate(registers: bytes) -> int:
    """HyperLogLog's estimate (Flajolet et al.), with linear counting for small cardinalities;
    a 64-bit hash needs no large-range correction."""
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / math.fsum(2.0**-r for r in registers)
    zeros = registers.count(0)
    if raw <= 2.5 * m and zeros:
        return round(m * math.log(m / zeros))
    return round(raw)


@dataclass(frozen=True, slots=True)
class Times:
    """Date/time cells: how many were dates, how many date-times, and the extremes (UTC us)."""

    dates: int = 0
    datetimes: int = 0
    minimum: int | None = None
    maximum: int | None = None

    def merge(self, other: Times) -> Times:
        return Times(
            self.dates + other.dates,
            self.datetimes + other.datetimes,
            _pick(min, self.minimum, other.minimum),
            _pick(max, self.maximum, other.maximum),
        )


def _pick(choose: Any, a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return int(choose(a, b))


@dataclass(frozen=True, slots=True)
class Bounds:
    """Upper bounds of the typed candidates' counts where only the text candidate was
    computed (column_plan's text mode): cells that could be numbers or date/times (by their
    first character), and cells that could be booleans."""

    numbers_times: int = 0
    booleans: int = 0

    def merge(self, other: Bounds) -> Bounds:
        return Bounds(self.numbers_times + other.numbers_times, self.booleans + other.booleans)


@dataclass(frozen=True, slots=True)
class Column:
    """Everything kept about one column: empty cells and one candidate per type."""

    empty: int = 0
    nonempty: int = 0
    numbers: Numbers = Numbers()
    true: int = 0
    false: int = 0
    times: Times = Times()
    text: Text = Text()
    bounds: Bounds = Bounds()

    def merge(self, other: Column) -> Column:
        return Column(
            empty=self.empty + other.empty,
            nonempty=self.nonempty + other.nonempty,
            numbers=self.numbers.merge(other.numbers),
            true=self.true + other.true,
            false=self.false + other.false,
            times=self.times.merge(other.times),
            text=self.text.merge(other.text),
            bounds=self.bounds.merge(other.bounds),
        )

    def with_numbers(self, extra: Numbers) -> Column:
        return replace(self, numbers=self.numbers.merge(extra))


@dataclass(frozen=True, slots=True)
class Tally:
    """A stretch of rows (a chunk, a part, a whole file) and its columns' accumulators."""

    rows: int = 0
    ragged_rows: int = 0
    columns: tuple[Column, ...] = ()

    def merge(self, other: Tally) -> Tally:
        if not other.columns:
            columns = self.columns
        elif not self.columns:
            columns = other.columns
        else:
            columns = tuple(a.merge(b) for a, b in zip(self.columns, other.columns, strict=True))
        return Tally(self.rows + other.rows, self.ragged_rows + other.ragged_rows, columns)


# ---------------------------------------------------------------- stored form (JSON)


def tally_to_json(tally: Tally) -> dict[str, Any]:
    return {
        "rows": tally.rows,
        "ragged_rows": tally.ragged_rows,
        "columns": [_column_to_json(column) for column in tally.columns],
    }


def tally_from_json(document: dict[str, Any]) -> Tally:
    return Tally(
        rows=document["rows"],
        ragged_rows=document["ragged_rows"],
        columns=tuple(_column_from_json(item) for item in document["columns"]),
    )


def _column_to_json(column: Column) -> dict[str, Any]:
    n, t, x = column.numbers, column.times, column.text
    return {
        "empty": column.empty,
        "nonempty": column.nonempty,
        # JSON has no infinity: the extremes of no numbers are stored as null.
        "numbers": [n.count, n.integers, _stored(n.total), _stored(n.total_error), _stored(n.m2)]
        + ([n.minimum, n.maximum] if n.count else [None, None]),
        "boolean": [column.true, column.false],
        "times": [t.dates, t.datetimes, t.minimum, t.maximum],
        "text": [x.count, x.length_min, x.length_max, x.length_total],
        "registers": base64.b64encode(x.registers).decode(),
        "values": x.values,
        "bounds": [column.bounds.numbers_times, column.bounds.booleans],
    }


def _stored(value: float) -> float | str:
    # A sum can overflow to inf (and inf - inf is nan); JSON has neither, float() reads both.
    return value if math.isfinite(value) else str(value)


def _column_from_json(item: dict[str, Any]) -> Column:
    count, integers, total, total_error, m2, minimum, maximum = item["numbers"]
    numbers = Numbers(
        count,
        integers,
        float(total),
        float(total_error),
        float(m2),
        math.inf if minimum is None else minimum,
        -math.inf if maximum is None else maximum,
    )
    text_count, length_min, length_max, length_total = item["text"]
    return Column(
        empty=item["empty"],
        nonempty=item["nonempty"],
        numbers=numbers,
        true=item["boolean"][0],
        false=item["boolean"][1],
        times=Times(*item["times"]),
        text=Text(
            text_count,
            length_min,
            length_max,
            length_total,
            base64.b64decode(item["registers"]),
            item["values"],
        ),
        bounds=Bounds(*item.get("bounds", ())),
    )


# ---------------------------------------------------------------- the typed report


def infer_type(column: Column) -> str:
    """The column's type over the whole file: the first of boolean, number, date/time whose
    cells are at least TYPE_FIT_SHARE of the non-empty ones; else text ("empty" if none)."""
    if column.nonempty == 0:
        return "empty"
    need = TYPE_FIT_SHARE * column.nonempty
    numbers = column.numbers
    if column.true + column.false >= need:
        return "boolean"
    if numbers.count >= need:
        return "integer" if numbers.integers == numbers.count else "float"
    times = column.times
    if times.dates + times.datetimes >= need:
        return "date" if times.datetimes == 0 else "datetime"
    return "text"


def report(name: str, column: Column) -> dict[str, Any]:
    """One column of the result document: the statistics that fit its inferred type."""
    kind = infer_type(column)
    body: dict[str, Any] = {"name": name, "type": kind, "empty": column.empty}
    if kind in ("integer", "float"):
        n = column.numbers
        body.update(
            count=n.count,
            invalid=column.nonempty - n.count,
            min=_number(n.minimum, kind),
            max=_number(n.maximum, kind),
            sum=_finite(n.total + n.total_error),
            mean=_finite(n.mean),
            std_population=_finite(math.sqrt(n.m2 / n.count)),
            std_sample=_finite(math.sqrt(n.m2 / (n.count - 1))) if n.count > 1 else None,
        )
    elif kind == "boolean":
        fit = column.true + column.false
        body.update(count=fit, invalid=column.nonempty - fit, true=column.true, false=column.false)
    elif kind in ("date", "datetime"):
        t = column.times
        fit = t.dates + t.datetimes
        body.update(
            count=fit,
            invalid=column.nonempty - fit,
            min=format_instant(t.minimum, date_only=kind == "date"),
            max=format_instant(t.maximum, date_only=kind == "date"),
        )
    else:
        x = column.text
        distinct, exact = x.distinct()
        top = None
        if x.values is not None:
            ranked = sorted(x.values.items(), key=lambda item: (-item[1], item[0]))
            top = [{"value": value, "count": count} for value, count in ranked[:TOP_VALUES]]
        body.update(
            count=column.nonempty,
            invalid=0,
            distinct=distinct,
            distinct_exact=exact,
            distinct_error=0.0 if exact else HLL_STANDARD_ERROR,
            top_values=top,
            length_min=x.length_min if x.count else None,
            length_max=x.length_max if x.count else None,
            length_mean=x.length_total / x.count if x.count else None,
        )
    return body


def format_instant(micros: int | None, date_only: bool) -> str | None:
    """UTC microseconds since the epoch as ISO 8601 (a date alone for date columns)."""
    if micros is None:
        return None
    moment = _EPOCH + timedelta(microseconds=micros)
    if date_only:
        return moment.date().isoformat()
    return moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")[:-6] + (
        "Z"
    )


def _number(value: float, kind: str) -> float | int:
    # Integer columns show integers; beyond 2**53 a float is the honest form.
    if kind == "integer" and abs(value) < 2**53:
        return int(value)
    return value


def _finite(value: float) -> float | None:
    # Extreme inputs can overflow a sum or M2; JSON has no inf, so say "unknown" instead.
    return value if math.isfinite(value) else None
