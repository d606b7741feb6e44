"""When a column's chunks may compute only its type's figures, and when the file's answer is
proven without the ones they skipped (column_plan)."""

from __future__ import annotations

from taskqueue.task_types.column_plan import (
    BOOLEAN,
    FULL,
    NUMBER,
    TEXT,
    Scan,
    clear_mode,
    needs_repair,
    proven,
    repaired,
    replan,
)
from taskqueue.task_types.column_stats import Bounds, Column, Numbers, Text, Times


def numbers(count: int, nonempty: int) -> Column:
    return Column(nonempty=nonempty, numbers=Numbers(count=count, integers=count))


def text(nonempty: int, bounds: Bounds | None = None) -> Column:
    return Column(nonempty=nonempty, text=Text(count=nonempty), bounds=bounds or Bounds())


# ---------------------------------------------------------------- specialising


def test_a_column_specialises_only_when_its_type_is_clear_by_a_margin() -> None:
    assert clear_mode(numbers(960, 1000)) == NUMBER
    # 92 % numbers: an integer column, but too near the 90 % rule to stop testing the others
    assert clear_mode(numbers(920, 1000)) is None
    assert clear_mode(Column(nonempty=1000, true=500, false=480)) == BOOLEAN
    assert clear_mode(text(1000)) == TEXT
    # 85 % numbers: text, but a few more numbers would make it a number column
    assert clear_mode(numbers(850, 1000)) is None
    assert clear_mode(Column()) is None


def test_a_column_waits_for_enough_cells_then_specialises_from_the_next_chunk() -> None:
    column = numbers(99, 99)

    assert replan(column, Scan(), offset=500, min_cells=100) == Scan()
    assert replan(numbers(100, 100), Scan(), offset=600, min_cells=100) == Scan(NUMBER, 600)
    assert Scan(NUMBER, 600).current == NUMBER


def test_a_specialised_column_goes_back_to_full_once_its_type_is_not_proven() -> None:
    scan = Scan(NUMBER, since=600)
    # Given 89 % of the cells fit now: the number type is no longer proven
    column = numbers(890, 1000)

    later = replan(column, scan, offset=9000)

    assert later == Scan(NUMBER, since=600, until=9000)
    assert later.current == FULL
    assert later.specialised(size=20_000) == (600, 9000)
    assert needs_repair(column, later)
    # and it does not specialise again: its repair range stays one range
    assert replan(numbers(2000, 2000), later, offset=12_000) == later


# ---------------------------------------------------------------- proofs


def test_a_typed_mode_proves_its_type_by_its_own_count() -> None:
    assert proven(numbers(900, 1000), NUMBER)
    assert not proven(numbers(899, 1000), NUMBER)
    assert proven(Column(nonempty=10, true=9), BOOLEAN)
    assert proven(Column(nonempty=10, times=Times(dates=8, datetimes=1)), "time")
    assert proven(numbers(0, 1000), FULL)


def test_text_mode_proves_text_only_while_no_typed_bound_reaches_nine_tenths() -> None:
    # cells that may be numbers or dates (by their first character), and short ones that may
    # be booleans, are upper bounds of those candidates
    assert proven(text(1000, Bounds(numbers_times=899, booleans=899)), TEXT)
    assert not proven(text(1000, Bounds(numbers_times=900)), TEXT)
    assert not proven(text(1000, Bounds(booleans=900)), TEXT)
    # counts from chunks read in full add to the bounds
    assert not proven(
        Column(nonempty=1000, numbers=Numbers(count=400), bounds=Bounds(numbers_times=500)), TEXT
    )


def test_a_repaired_column_keeps_what_its_mode_computed_and_gains_the_rest() -> None:
    # Given a column read as numbers over a range, then that range read in full
    column = Column(
        empty=3, nonempty=100, numbers=Numbers(count=80, integers=80), bounds=Bounds(5, 5)
    )
    extra = Column(
        empty=3, nonempty=60, numbers=Numbers(count=40, integers=40), text=Text(count=60)
    )

    fixed = repaired(column, extra, NUMBER)

    # Then the numbers and the cell counts are the specialised run's (complete already), the
    # text candidate is the full read's, and no bound is left
    assert (fixed.empty, fixed.nonempty, fixed.numbers) == (3, 100, column.numbers)
    assert fixed.text.count == 60
    assert fixed.bounds == Bounds()
