"""Which candidates a chunk computes for each column, and when the file's answer is proven
without the ones it skipped.

Every cell of a column could be a number, a boolean, a date/time or text, and the type is
decided over the whole file, so in "full" mode a chunk tests every cell for every type. Once a
column's type is clear from the chunks before (`replan`), later chunks compute only what that
type reports ("number", "boolean", "time" or "text" mode): most of the work of a full chunk is
the tests a typed column does not need. The result stays exact, not merely likely:

- a typed mode keeps the count of cells that fit its type, so at the end `proven` knows
  whether the type still holds (a type fitting 90 % of the cells rules out the others);
- text mode keeps cheap upper bounds of the typed counts (`Bounds`), enough to prove that no
  typed candidate reaches 90 %;
- a column whose type is no longer proven goes back to full mode, and at the end the byte
  range it spent specialised is read again in full ("repair"), so every figure equals a full
  computation. `repaired` merges that read into the column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from taskqueue.task_types.column_stats import TYPE_FIT_SHARE, Bounds, Column, infer_type

FULL = "full"
NUMBER = "number"
BOOLEAN = "boolean"
TIME = "time"
TEXT = "text"
SKIP = "skip"  # a repair chunk's columns that are not being repaired
# A sample's cells counted for each typed candidate, and nothing more: what `sampled_modes`
# chooses a mode from.
SAMPLE = "sample"
# The modes of one typed candidate: a fast test per cell, Python's rules for those it refuses.
TYPED_MODES = (NUMBER, BOOLEAN, TIME)

# The mode a clear type specialises to, and the Column fields a mode computes exactly (every
# mode counts empty and non-empty cells). The rules as data, used by `repaired` and tests.
MODE_OF_TYPE = {
    "integer": NUMBER,
    "float": NUMBER,
    "boolean": BOOLEAN,
    "date": TIME,
    "datetime": TIME,
    "text": TEXT,
}
MODE_FIELDS = {
    NUMBER: ("numbers",),
    BOOLEAN: ("true", "false"),
    TIME: ("times",),
    TEXT: ("text",),
}
# A column specialises once it has this many non-empty cells and its type is clear: the fitting
# share at least SPECIALISE_SHARE, or, for text, every typed share at most TEXT_SHARE. The
# margins around the 90 % rule keep columns near it in full mode, where no repair can be due.
MIN_CELLS = 1000
SPECIALISE_SHARE = 0.95
TEXT_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Scan:
    """How a column is read: `mode` from byte `since` (a record start) on, until `until`
    where it went back to full mode (None: still specialised). No `since`: full throughout."""

    mode: str = FULL
    since: int | None = None
    until: int | None = None

    @property
    def current(self) -> str:
        """The mode of the next chunk."""
        return self.mode if self.since is not None and self.until is None else FULL

    def specialised(self, size: int) -> tuple[int, int] | None:
        """The byte range read in a specialised mode (None if there is none)."""
        if self.since is None:
            return None
        return self.since, size if self.until is None else self.until

    def to_json(self) -> list[Any]:
        return [self.mode, self.since, self.until]

    @classmethod
    def from_json(cls, item: list[Any]) -> Scan:
        return cls(*item)


def typed_counts(column: Column) -> tuple[int, int, int]:
    """Cells fitting each typed candidate, in the inference's order: boolean, number, time."""
    return (
        column.true + column.false,
        column.numbers.count,
        column.times.dates + column.times.datetimes,
    )


def proven(column: Column, mode: str) -> bool:
    """Whether the column's type follows from what `mode` computed, as if every candidate had
    been computed everywhere."""
    if mode == FULL or column.nonempty == 0:
        return True
    need = TYPE_FIT_SHARE * column.nonempty
    booleans, numbers, times = typed_counts(column)
    if mode == TEXT:
        bound = column.bounds
        return (
            booleans + bound.booleans < need
            and numbers + bound.numbers_times < need
            and times + bound.numbers_times < need
        )
    # The typed candidates hold disjoint sets of cells: one fitting 90 % leaves the others 10 %.
    fit = {NUMBER: numbers, BOOLEAN: booleans, TIME: times}[mode]
    return fit >= need


def clear_mode(column: Column) -> str | None:
    """The mode a fully computed column can specialise to, or None while its type is unclear."""
    if column.nonempty == 0:
        return None
    kind = infer_type(column)
    shares = [count / column.nonempty for count in typed_counts(column)]
    if kind == "text":
        return TEXT if max(shares) <= TEXT_SHARE else None
    mode = MODE_OF_TYPE[kind]
    return mode if shares[(BOOLEAN, NUMBER, TIME).index(mode)] >= SPECIALISE_SHARE else None


def sampled_modes(columns: Iterable[Column], min_cells: int = MIN_CELLS) -> list[str]:
    """How to read each column from the first record on, from a sample of the first records
    read in full: the mode its cells make clear (given at least `min_cells` of them), else
    full. Only a guess, never trusted: the chunks after it prove the mode's type as they go
    (`replan`, `proven`), and what was read in a mode that stops being proven is read again
    in full (a whole run's repair; `verify` for a task in parts)."""
    return [
        (clear_mode(column) if column.nonempty >= min_cells else None) or FULL for column in columns
    ]


def replan(column: Column, scan: Scan, offset: int, min_cells: int = MIN_CELLS) -> Scan:
    """The scan for the chunks after byte `offset`, given the column merged so far.

    A column specialises once (a column that went back to full stays full: its repair range
    is one range), and goes back to full as soon as its type is no longer proven."""
    if scan.since is None:
        if column.nonempty < min_cells:
            return scan
        mode = clear_mode(column)
        return Scan(mode, since=offset) if mode else scan
    if scan.until is None and not proven(column, scan.mode):
        return replace(scan, until=offset)
    return scan


def needs_repair(column: Column, scan: Scan) -> bool:
    return scan.since is not None and not proven(column, scan.mode)


def as_mode(column: Column, mode: str) -> Column:
    """What reading in typed `mode` computes, from `column` read in full: its cells, and the
    candidate of that mode's type (exact in both). Any other mode: `column` itself."""
    if mode not in TYPED_MODES:
        return column
    kept = {name: getattr(column, name) for name in MODE_FIELDS[mode]}
    return Column(empty=column.empty, nonempty=column.nonempty, **kept)


def repaired(column: Column, extra: Column, mode: str) -> Column:
    """`column` (specialised in `mode` over a range) with `extra` (that range read in full):
    the fields `mode` computed were complete already; the rest gains the range's share."""
    merged = column.merge(extra)
    kept = {name: getattr(column, name) for name in ("empty", "nonempty", *MODE_FIELDS[mode])}
    # Exact counts now stand where the text mode's bounds stood.
    return replace(merged, **kept, bounds=Bounds())
