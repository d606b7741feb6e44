"""The columnar engine of DATA_PROCESSING: DuckDB reads a run of whole CSV records and
returns each column's accumulators (column_stats) in a few vectorised queries.

DuckDB was chosen by measurement over polars (docs/benchmarks.md, "work"): about half the CPU
per GB on the same file, a third of the peak memory, and a third of the deployed size.

Exactness is kept by construction rather than hoped for:
- DuckDB parses only runs that follow RFC 4180 (csv_records checks them) with "\n" line
  ends (CRLF is rewritten where no quoted cell holds a "\r"), read with fixed options (no
  sniffing): there its reader and the csv module agree. Its reader misreads other and mixed
  line ends (with new_line '\r\n' it returned no rows for valid input), so anything else is
  parsed by the csv module and handed over re-quoted (canonical_csv).
- Cells are stripped of exactly the characters Python's str.strip() removes.
- A cell is a number when DuckDB's cast gives a finite double and it has no "_": on ASCII text
  that is Python's float() (the tests compare them edge by edge). Non-ASCII cells that could
  be numbers to Python (other scripts' digits) are few and are read by float() itself.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from taskqueue.task_types.column_stats import (
    BOOLEAN_FALSE,
    BOOLEAN_TRUE,
    EXACT_DISTINCT_LIMIT,
    HLL_BITS,
    Column,
    Numbers,
    Tally,
    Text,
    Times,
    hll_estimate,
    is_integer_literal,
    parse_number,
    values_fit,
)
from taskqueue.task_types.csv_records import MAX_RECORD_BYTES, canonical_csv, csv_records

if TYPE_CHECKING:
    import duckdb

# Exactly the characters for which str.isspace() is true (tests/unit check it against Python).
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
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
# Non-ASCII text that Python's float() might still read: ASCII plus number characters only.
MAYBE_NUMBER_PATTERN = "[\\x00-\\x7f\\p{N}]+"
_HLL_LOW = (1 << (64 - HLL_BITS)) - 1
MAX_TRACKED_COLUMNS = 50

_local = threading.local()


def connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per thread, single-threaded (a Lambda has ~1 vCPU per 1.8 GB;
    the chunk, not the engine, is the unit of parallelism), made on first use."""
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(":memory:", config={"threads": 1})
        _local.con = con
    return con


@contextmanager
def _temp_csv(body: bytes) -> Iterator[str]:
    # DuckDB's reader takes a path; Lambda's /tmp holds one chunk at a time.
    handle, path = tempfile.mkstemp(suffix=".csv")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(body)
        yield path
    finally:
        os.unlink(path)


def tally_records(
    body: bytes, width: int, delimiter: str, engine_body: bytes | None = None
) -> Tally:
    """The accumulators of the records in body (whole records, after the header).

    `engine_body`: body as DuckDB may read it (RFC 4180 quoting, "\\n" line ends:
    csv_records.with_lf_line_ends), or None: the csv module then parses body and DuckDB reads
    it re-quoted. A body DuckDB refuses (a row with more than width + 1 fields) goes the
    same way."""
    if not body:
        return Tally(columns=tuple(Column() for _ in range(min(width, MAX_TRACKED_COLUMNS))))
    if engine_body is not None:
        import duckdb

        try:
            return _tally(engine_body, width, delimiter)
        except duckdb.Error:
            pass
    records, _ = csv_records(body, True, delimiter)
    return _tally(canonical_csv(records, width, delimiter), width, delimiter)


def _tally(body: bytes, width: int, delimiter: str) -> Tally:
    con = connection()
    tracked = min(width, MAX_TRACKED_COLUMNS)
    with _temp_csv(body) as path:
        _load(con, path, width, tracked, delimiter)
    try:
        rows, ragged, *cells = con.execute(_aggregate_sql(tracked)).fetchone() or ()
        rows = int(rows or 0)
        registers = _registers(con, tracked)
        columns = []
        for index in range(tracked):
            column = _column(rows, cells[index * _PER_COLUMN : (index + 1) * _PER_COLUMN])
            # Counting values is worth it only where they may stay few enough to keep.
            few = hll_estimate(registers[index]) <= 2 * EXACT_DISTINCT_LIMIT
            values = _values(con, index) if column.nonempty and few else None
            numbers = column.numbers
            if cells[(index + 1) * _PER_COLUMN - 1]:
                numbers = numbers.merge(_python_numbers(con, index))
            columns.append(
                replace(
                    column,
                    numbers=numbers,
                    text=replace(column.text, registers=registers[index], values=values),
                )
            )
        return Tally(rows, int(ragged or 0), tuple(columns))
    finally:
        con.execute("DROP TABLE IF EXISTS cells")


def _load(
    con: duckdb.DuckDBPyConnection, path: str, width: int, tracked: int, delimiter: str
) -> None:
    # One column more than the header counts rows that are too long; null_padding marks
    # missing cells NULL, and nullstr NUL (refused in input) keeps every empty cell ''.
    names = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width + 1))
    # str.strip(), but only where a cell starts or ends with something other than printable
    # ASCII: trimming a set of characters costs several times the parse.
    stripped = ", ".join(
        f"CASE WHEN regexp_matches(c{i}, '^[^!-~]|[^!-~]$') THEN trim(c{i}, $ws) "
        f"ELSE coalesce(c{i}, '') END AS t{i}"
        for i in range(tracked)
    )
    ragged = f"(c{width - 1} IS NULL OR c{width} IS NOT NULL) AS ragged"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE cells AS
        SELECT {stripped}{", " if tracked else ""}{ragged}
        FROM read_csv($path, columns = {{{names}}}, header = false, auto_detect = false,
                      delim = $delim, quote = '"', escape = '"', strict_mode = true,
                      null_padding = true, parallel = false, nullstr = '\\0', new_line = '\\n',
                      max_line_size = {MAX_RECORD_BYTES + 1024})
        """,
        {"path": path, "delim": delimiter, "ws": PY_WHITESPACE},
    )


# The aggregates of one column, in this order (see _column).
_PER_COLUMN = 17
# First characters (ASCII codes) of the cells worth casting: + , - . / 0-9. inf and nan start
# otherwise, but are no data values; other scripts' digits go to _python_numbers.
_NUMBER_START = (43, 57)
_BOOLEAN_START = tuple(sorted({ord(token[0]) for token in BOOLEAN_TRUE + BOOLEAN_FALSE}))


def _aggregate_sql(tracked: int) -> str:
    """One scan for every column: the cheapest test first (the first character's code, the
    length), so the costly ones (cast, regular expressions) run on few cells."""
    true = ", ".join(f"'{token}'" for token in BOOLEAN_TRUE)
    false = ", ".join(f"'{token}'" for token in BOOLEAN_FALSE)
    boolean_start = ", ".join(map(str, _BOOLEAN_START + tuple(c - 32 for c in _BOOLEAN_START)))
    low, high = _NUMBER_START
    first = []
    second = []
    parts = ["count(*)", "count_if(ragged)"]
    for i in range(tracked):
        t, a, n, x, size = f"t{i}", f"a{i}", f"n{i}", f"x{i}", f"l{i}"
        first.append(
            f"{t}, ascii({t}) AS {a}, length({t}) AS {size}, "
            f"CASE WHEN ascii({t}) BETWEEN {low} AND {high} THEN TRY_CAST({t} AS DOUBLE) END AS {x}"
        )
        second.append(
            f"""{t}, {a}, {size}, {x},
            CASE WHEN {x} IS NOT NULL THEN CASE WHEN isfinite({x}) AND NOT contains({t}, '_')
                 AND NOT (prefix({t}, '+-') OR prefix({t}, '-+')) THEN {x} END END AS {n},
            CASE WHEN {size} = 10 AND {a} BETWEEN 48 AND 57 AND regexp_full_match({t}, '{DATE_PATTERN}')
                 THEN epoch_us(CAST(TRY_CAST({t} AS DATE) AS TIMESTAMP)) END AS d{i},
            CASE WHEN {size} BETWEEN 16 AND 32 AND {a} BETWEEN 48 AND 57
                 AND regexp_full_match({t}, '{DATETIME_PATTERN}')
                 THEN epoch_us(TRY_CAST({t} AS TIMESTAMPTZ)) END AS s{i}"""
        )
        parts += [
            f"count_if({size} = 0)",
            f"count({n})",
            f"count(CASE WHEN {n} IS NOT NULL THEN CASE WHEN NOT (contains({t}, '.') "
            f"OR contains({t}, 'e') OR contains({t}, 'E')) THEN 1 END END)",
            f"fsum({n})",
            f"var_pop({n}) * count({n})",
            f"min({n})",
            f"max({n})",
            f"count_if({size} <= 5 AND {a} IN ({boolean_start}) AND lower({t}) IN ({true}))",
            f"count_if({size} <= 5 AND {a} IN ({boolean_start}) AND lower({t}) IN ({false}))",
            f"count(d{i})",
            f"count(s{i})",
            f"min(coalesce(d{i}, s{i}))",
            f"max(coalesce(d{i}, s{i}))",
            f"min({size}) FILTER ({size} > 0)",
            f"max({size})",
            f"sum({size})",
            # Non-ASCII cells the cast did not read that may be numbers to Python's float().
            f"count_if({x} IS NULL AND {size} > 0 AND strlen({t}) <> {size} "
            f"AND regexp_full_match({t}, '{MAYBE_NUMBER_PATTERN}'))",
        ]
    if not tracked:
        return f"SELECT {', '.join(parts)} FROM cells"
    inner = f"(SELECT {', '.join(first)}, ragged FROM cells)"
    middle = f"(SELECT {', '.join(second)}, ragged FROM {inner})"
    return f"SELECT {', '.join(parts)} FROM {middle}"


def _column(rows: int, cells: list[Any]) -> Column:
    (
        empty,
        count,
        integers,
        total,
        m2,
        minimum,
        maximum,
        true,
        false,
        dates,
        datetimes,
        first,
        last,
        length_min,
        length_max,
        length_total,
        _,
    ) = (0 if value is None else value for value in cells)  # count_if of no rows is NULL
    nonempty = rows - int(empty)
    numbers = Numbers(
        count=int(count),
        integers=int(integers),
        total=float(total),
        m2=float(m2),
        minimum=float(minimum) if count else math.inf,
        maximum=float(maximum) if count else -math.inf,
    )
    return Column(
        empty=int(empty),
        nonempty=nonempty,
        numbers=numbers,
        true=int(true),
        false=int(false),
        times=Times(
            int(dates),
            int(datetimes),
            first if dates or datetimes else None,
            last if dates or datetimes else None,
        ),
        text=Text(nonempty, int(length_min), int(length_max), int(length_total)),
    )


def _registers(con: duckdb.DuckDBPyConnection, tracked: int) -> list[bytes]:
    """Each column's HyperLogLog registers: register from the top HLL_BITS of a 64-bit hash,
    rank = 1 + trailing zeros of the rest."""
    registers = [bytearray(1 << HLL_BITS) for _ in range(tracked)]
    for i in range(tracked):
        rows = con.execute(
            f"""
            SELECT h >> {64 - HLL_BITS} AS r,
                   max(CASE WHEN h & {_HLL_LOW} = 0 THEN {65 - HLL_BITS}
                            ELSE bit_count(xor(h & {_HLL_LOW}, (h & {_HLL_LOW}) - 1)) END)
            FROM (SELECT hash(t{i}) AS h FROM cells WHERE t{i} <> '') GROUP BY r
            """
        ).fetchall()
        for register, rank in rows:
            registers[i][register] = rank
    return [bytes(r) for r in registers]


def _values(con: duckdb.DuckDBPyConnection, index: int) -> dict[str, int] | None:
    """Exact counts of the column's values, or None when it has too many to keep."""
    rows = con.execute(
        f"SELECT t{index}, count(*) FROM cells WHERE t{index} <> '' GROUP BY t{index} "
        f"LIMIT {EXACT_DISTINCT_LIMIT + 1}"
    ).fetchall()
    values = {value: int(count) for value, count in rows}
    return values if values_fit(values) else None


def _python_numbers(con: duckdb.DuckDBPyConnection, index: int) -> Numbers:
    """Numbers Python reads in non-ASCII cells (digits of other scripts) that the cast did not."""
    t = f"t{index}"
    rows = con.execute(
        f"SELECT {t}, count(*) FROM cells WHERE strlen({t}) <> length({t}) "
        f"AND TRY_CAST({t} AS DOUBLE) IS NULL AND regexp_full_match({t}, $p) GROUP BY {t}",
        {"p": MAYBE_NUMBER_PATTERN},
    ).fetchall()
    values: list[float] = []
    integers = 0
    for text, count in rows:
        value = parse_number(text)
        if value is not None:
            values += [value] * int(count)
            integers += int(count) * is_integer_literal(text)
    return Numbers.of(values, integers)
