"""The columnar engine of DATA_PROCESSING: DuckDB reads a run of whole CSV records and
returns each column's accumulators (column_stats) in one vectorised query.

DuckDB was chosen by measurement over polars (docs/benchmarks.md, "work"): about half the CPU
per GB on the same file, a third of the peak memory, and a third of the deployed size.

One query per chunk streams the records from DuckDB's reader through every column's tests into
every aggregate (no table of cells is built). What a column's tests are depends on its mode
(column_plan): all the candidates in full mode, only its type's in a specialised one.

Exactness is kept by construction rather than hoped for:
- DuckDB parses only runs that follow RFC 4180 (csv_records checks them), read as they are
  with fixed options (no sniffing) in non-strict mode: there its reader and the csv module
  agree on every line end ("\n", "\r\n", "\r", mixed, inside quotes or not; tests/unit
  compare them on thousands of random runs). Strict mode refuses a "\r" before "\n", which
  cost a rewrite of every CRLF chunk. Anything else is parsed by the csv module and handed
  over re-quoted (canonical_csv).
- Non-strict mode drops the cells of a row past the columns read, unchecked: where a row has
  more cells than the header, Python checks that the chunk is UTF-8 (require_text).
- Cells are stripped of exactly the characters Python's str.strip() removes, wherever the
  first or last character may be one of them. A typed mode tests the cell as read first and
  strips only the cells that fail (DuckDB's casts ignore the ASCII spaces str.strip() removes).
- A cell is a number when DuckDB's cast gives a finite double and it has no "_", "+-" or "-+":
  on ASCII text that is Python's float() (the tests compare them edge by edge). Non-ASCII cells
  that could be numbers to Python (other scripts' digits) are few and are read by float().
- Value counts are computed only against the values seen so far (one hash probe a cell) plus
  the count of new distinct values; only when there are new ones that still fit the bound are
  they counted, in a second read of the chunk.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from taskqueue.errors import InvalidInput
from taskqueue.task_types.column_plan import (
    BOOLEAN,
    FULL,
    NUMBER,
    SAMPLE,
    SKIP,
    TEXT,
    TIME,
    TYPED_MODES,
    as_mode,
)
from taskqueue.task_types.column_stats import (
    BOOLEAN_FALSE,
    BOOLEAN_TRUE,
    DATE_PATTERN,
    DATETIME_PATTERN,
    EXACT_DISTINCT_LIMIT,
    HLL_BITS,
    HLL_REGISTERS,
    Bounds,
    Column,
    Numbers,
    Tally,
    Text,
    Times,
    hll_estimate,
    is_integer_literal,
    parse_boolean,
    parse_instant,
    parse_number,
    values_fit,
)
from taskqueue.task_types.csv_records import (
    MAX_RECORD_BYTES,
    canonical_csv,
    csv_records,
    require_text,
)

if TYPE_CHECKING:
    import duckdb

# Exactly the characters for which str.isspace() is true (tests/unit check it against Python).
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Non-ASCII text that Python's float() might still read: ASCII plus number characters only.
MAYBE_NUMBER_PATTERN = "[\\x00-\\x7f\\p{N}]+"
MAX_TRACKED_COLUMNS = 50
# A typed mode hands the cells its fast test refused to Python as a list: a few percent of a
# column's cells, but all of them where a column's type changes in a chunk, and a chunk of
# short rows holds millions (a 64 MiB chunk of one-letter rows: 33 million, ~5 GB once in
# Python). At most this many come back; past it the column is read again in full for the
# chunk (no list), and kept as its mode would have computed it.
MAX_REFUSED_CELLS = 100_000
# DuckDB's share of the worker's memory: a query past it fails (OutOfMemoryException), not the
# process. The chunk's typed columns are then read in full; a chunk that still does not fit
# fails the task, saying so.
DUCKDB_MEMORY_SHARE = 0.4
DEFAULT_MEMORY_MB = 1024
# Known values up to this many are matched as a list of constants; more, through a hash join.
_LITERAL_VALUES = 64
# HyperLogLog in one aggregate: each cell sets bit (register * 64 + rank) of a bitstring, and a
# register's value is its highest bit set. Setting bit 52 caps the rank at 53 = 65 - HLL_BITS.
_RANK_SLOTS = 64
_RANK_CAP_BIT = 1 << (64 - HLL_BITS)
_TRUE = ", ".join(f"'{token}'" for token in BOOLEAN_TRUE)
_FALSE = ", ".join(f"'{token}'" for token in BOOLEAN_FALSE)

_BATCH_ROWS = 10_000  # rows fetched from DuckDB at a time where there may be millions

_local = threading.local()


def connection(memory_mb: int = DEFAULT_MEMORY_MB) -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per thread, single-threaded (a Lambda has ~1 vCPU per 1.8 GB;
    the chunk, not the engine, is the unit of parallelism), made on first use, with its
    share of a worker of `memory_mb`."""
    con = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(":memory:", config={"threads": 1})
        # A date-time without an offset is UTC, whatever the machine's zone.
        con.execute("SET TimeZone = 'UTC'")
        # This optimizer moves a cast of a column into the CSV reader, where a TRY_CAST
        # becomes a strict conversion that fails the query on the first non-number.
        con.execute("SET disabled_optimizers = 'type_pushdown'")
        _local.con, _local.memory_mb = con, None
    if _local.memory_mb != memory_mb:
        con.execute(f"SET memory_limit = '{int(memory_mb * DUCKDB_MEMORY_SHARE)}MB'")
        _local.memory_mb = memory_mb
    return con


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """What one chunk computes for one column."""

    mode: str = FULL
    # Count integer literals: no longer needed once the column has a number that is not one.
    integers: bool = True
    # The values counted so far (their counts go on in this chunk); None: too many to count.
    known: frozenset[str] | None = field(default_factory=frozenset)


# A sample read only to choose each column's mode (column_plan.sampled_modes): each typed
# candidate's count, none of the figures (two thirds of a full read's CPU on the benchmark
# file's first 1 MiB, most of it the query's planning).
SAMPLE_PLAN = ColumnPlan(SAMPLE, known=None)


@contextmanager
def _temp_csv(body: bytes, end: int) -> Iterator[str]:
    # DuckDB's reader takes a path; Lambda's /tmp holds one chunk at a time.
    handle, path = tempfile.mkstemp(suffix=".csv")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(memoryview(body)[:end])
        yield path
    finally:
        os.unlink(path)


def tally_records(
    body: bytes,
    width: int,
    delimiter: str,
    engine_body: bytes | None = None,
    plans: list[ColumnPlan] | None = None,
    offset: int = 0,
    end: int | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Tally:
    """The accumulators of the records in body[:end] (whole records, after the header; `end`
    saves a copy of a chunk read with the start of the next: all of body by default).

    `engine_body`: body as DuckDB may read it (RFC 4180 quoting, "\\n" line ends:
    csv_records.engine_form), or None: the csv module then parses body and DuckDB reads
    it re-quoted. A body DuckDB refuses (a row with more than width + 1 fields, a byte that
    is not UTF-8) goes the same way, and the csv module names the byte (`offset`: where
    body starts in the file). `plans`: per tracked column, what to compute (all of it by
    default). `memory_mb`: the worker's memory, of which DuckDB takes its share."""
    tracked = min(width, MAX_TRACKED_COLUMNS)
    plans = plans or [ColumnPlan()] * tracked
    end = len(body) if end is None else end
    if not end:
        return Tally(columns=tuple(Column() for _ in range(tracked)))
    if engine_body is not None:
        import duckdb

        try:
            return _tally(engine_body, end, width, delimiter, plans, offset, memory_mb)
        except duckdb.OutOfMemoryException:
            raise  # the csv module would need ten times more (_tally says what to do)
        except duckdb.Error:
            pass
    records, _ = csv_records(
        body[:end] if end < len(body) else body, True, delimiter, offset=offset
    )
    # The csv module has decoded these records: the re-quoted text is UTF-8.
    text = canonical_csv(records, width, delimiter)
    return _tally(text, len(text), width, delimiter, plans, None, memory_mb)


def reads_every_cell(width: int, plans: list[ColumnPlan] | None) -> bool:
    """Whether the chunk query reads every column, so that DuckDB's reader checks that each
    cell is UTF-8 (it checks only the columns a query reads)."""
    return width <= MAX_TRACKED_COLUMNS and all(plan.mode != SKIP for plan in plans or ())


def _tally(
    body: bytes,
    end: int,
    width: int,
    delimiter: str,
    plans: list[ColumnPlan],
    offset: int | None,
    memory_mb: int,
) -> Tally:
    """Of the records in body[:end]. `offset`: where body starts in the file, or None for
    text known to be UTF-8."""
    import duckdb

    con = connection(memory_mb)
    with _temp_csv(body, end) as path:
        try:
            return _tally_file(con, path, body, end, width, delimiter, plans, offset)
        except duckdb.OutOfMemoryException:
            pass
        # The typed columns' refused cells outgrew DuckDB's share of memory before the list
        # could be cut short: those columns are read in full (no list), kept as their modes.
        full = [_unlisted(plan) for plan in plans]
        try:
            tally = _tally_file(con, path, body, end, width, delimiter, full, offset)
        except duckdb.OutOfMemoryException as exc:
            where = f" at byte {offset}" if offset is not None else ""
            raise InvalidInput(
                f"the chunk of {end} bytes{where} needs more memory than the worker has "
                "for its statistics, even with its typed columns read in full"
            ) from exc
    columns = tuple(
        as_mode(column, plan.mode) for column, plan in zip(tally.columns, plans, strict=True)
    )
    return replace(tally, columns=columns)


def _unlisted(plan: ColumnPlan) -> ColumnPlan:
    """`plan` in full mode if it is a typed mode, which lists the cells it refuses (no value
    counts: as_mode keeps none of the text candidate)."""
    return ColumnPlan(FULL, plan.integers, known=None) if plan.mode in TYPED_MODES else plan


def _tally_file(
    con: duckdb.DuckDBPyConnection,
    path: str,
    body: bytes,
    end: int,
    width: int,
    delimiter: str,
    plans: list[ColumnPlan],
    offset: int | None,
) -> Tally:
    """The records DuckDB reads from `path` (body[:end], written there)."""
    query = _Query(width, delimiter, underscores=body.find(b"_", 0, end) >= 0)
    for index, plan in enumerate(plans):
        query.add_column(index, plan)
    query.params["path"] = path
    found = query.run(con)
    if found.pop("long") and offset is not None:
        # The reader checked no cell past the header's width + 1 (it dropped them).
        require_text(body, offset, end)
    rows = int(found.pop("rows") or 0)
    ragged = int(found.pop("ragged") or 0)
    columns = [_column(con, query, index, plan, rows, found) for index, plan in enumerate(plans)]
    return Tally(rows, ragged, tuple(columns))


# ---------------------------------------------------------------- the query


class _Query:
    """One SELECT over DuckDB's reader: expressions in levels (each level's names are usable
    by the next), then one row of aggregates, each named for its column."""

    LEVELS = 4

    def __init__(self, width: int, delimiter: str, underscores: bool) -> None:
        self.width = width
        self.levels: list[list[str]] = [[] for _ in range(self.LEVELS)]
        self.aggregates: dict[str, str] = {
            "rows": "count(*)",
            "ragged": f"count_if(c{width - 1} IS NULL OR c{width} IS NOT NULL)",
            # Rows that may have had cells past c{width}, which the reader drops unread.
            "long": f"count(c{width})",
        }
        self.params: dict[str, Any] = {"delim": delimiter, "ws": PY_WHITESPACE}
        # "_" is refused in numbers (float() reads "1_000"); a chunk without one needs no test.
        self.underscores = underscores
        self.python_cells: dict[int, tuple[str, str]] = {}  # column -> (cell, condition)
        self.known_values: dict[int, list[str]] = {}  # column -> values counted in the scan

    def alone(self, i: int, plan: ColumnPlan) -> _Query:
        """A query over the same chunk for column i only, as `plan` says."""
        query = _Query(self.width, self.params["delim"], self.underscores)
        query.params["path"] = self.params["path"]
        query.add_column(i, plan)
        return query

    def define(self, level: int, name: str, expression: str) -> None:
        self.levels[level].append(f"{expression} AS {name}")

    def source(self) -> str:
        # One column more than the header counts rows that are too long; null_padding marks
        # missing cells NULL, and nullstr NUL (refused in input) keeps every empty cell ''.
        # Not strict: strict mode refuses "\r\n" and "\r" line ends (new_line '\n' is then
        # any of them), and the quoting was checked before (csv_records.engine_form).
        names = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(self.width + 1))
        sql = f"""read_csv($path, columns = {{{names}}}, header = false, auto_detect = false,
            delim = $delim, quote = '"', escape = '"', strict_mode = false, null_padding = true,
            parallel = false, nullstr = '\\0', new_line = '\\n',
            max_line_size = {MAX_RECORD_BYTES + 1024})"""
        for level in self.levels:
            if level:
                sql = f"(SELECT *, {', '.join(level)} FROM {sql})"
        return sql

    def run(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        names = list(self.aggregates)
        select = ", ".join(f"{self.aggregates[name]} AS {name}" for name in names)
        row = self.execute(con, f"SELECT {select} FROM {self.source()}").fetchone()
        return dict(zip(names, row or (), strict=True))

    def execute(self, con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyConnection:
        # DuckDB refuses parameters a statement does not use.
        return con.execute(sql, {k: v for k, v in self.params.items() if f"${k}" in sql})

    def add_column(self, i: int, plan: ColumnPlan) -> None:
        if i >= self.width or plan.mode == SKIP:
            return
        {
            FULL: self._full,
            NUMBER: self._number,
            BOOLEAN: self._boolean,
            TIME: self._time,
            TEXT: self._text,
            SAMPLE: self._sample,
        }[plan.mode](i, plan)

    # -------------------------------------------------------------- per mode

    def _stripped(self, i: int) -> str:
        """t{i}: the cell as str.strip() leaves it, NULL when that is empty. Trimming a set of
        characters costs several times a comparison, so only cells that start or end with
        something other than printable ASCII are trimmed."""
        c = f"c{i}"
        self.define(
            0,
            f"t{i}",
            f"CASE WHEN {c} < '!' OR {c} >= chr(127) OR ascii({c}[-1]) NOT BETWEEN 33 AND 126 "
            f"THEN nullif(trim({c}, $ws), '') ELSE nullif({c}, '') END",
        )
        self.define(1, f"b{i}", f"strlen(t{i})")
        return f"t{i}"

    def _every_test(self, i: int) -> str:
        """t{i}, the stripped cell, tested for every type (full mode and a sample): x{i} its
        cast, the boolean counts, d{i} and s{i} its date and date-time."""
        t = self._stripped(i)
        self.define(
            1, f"x{i}", f"CASE WHEN {t} >= '+' AND {t} < ':' THEN TRY_CAST({t} AS DOUBLE) END"
        )
        self._booleans_of_short(i, t)
        self.define(2, f"d{i}", _date(t, f"b{i}"))
        self.define(2, f"s{i}", _datetime(t, f"b{i}"))
        return t

    def _full(self, i: int, plan: ColumnPlan) -> None:
        t = self._every_test(i)
        self._numbers(i, plan, t, level=2)
        self._times(i)
        self._text_candidate(i, plan, t)
        self._python_numbers_of(i, t)

    def _sample(self, i: int, plan: ColumnPlan) -> None:
        """The non-empty cells, and those each typed candidate reads, as a full read counts
        them (other scripts' digits included), without its figures."""
        t = self._every_test(i)
        self.define(1, f"l{i}", f"length({t})")
        self.aggregates[f"count{i}"] = f"count({self._number_candidate(i, t, level=2)})"
        self._python_numbers_of(i, t)
        self.aggregates[f"dates{i}"] = f"count(d{i})"
        self.aggregates[f"datetimes{i}"] = f"count(s{i})"
        self.aggregates[f"nonempty{i}"] = f"count({t})"

    # A typed mode tests each cell as read. The cells its fast test refuses (empty, padded,
    # invalid, other scripts' digits: a few percent in a column of that type) come back as a
    # list and Python's own rules decide them (_refused).

    def _number(self, i: int, plan: ColumnPlan) -> None:
        c = f"c{i}"
        # DuckDB's cast ignores the ASCII spaces str.strip() removes, so a cell it reads needs
        # no stripping.
        self.define(0, f"x{i}", f"TRY_CAST({c} AS DOUBLE)")
        self._numbers(i, plan, c, level=1)
        self._refused_cells(i, f"x{i} IS NULL")

    def _boolean(self, i: int, plan: ColumnPlan) -> None:
        c = f"c{i}"
        self.define(0, f"o{i}", f"CASE WHEN strlen({c}) <= 5 THEN lower({c}) END")
        self.aggregates[f"true{i}"] = f"count_if(o{i} IN ({_TRUE}))"
        self.aggregates[f"false{i}"] = f"count_if(o{i} IN ({_FALSE}))"
        self._refused_cells(i, f"o{i} IS NULL OR o{i} NOT IN ({_TRUE}, {_FALSE})")

    def _time(self, i: int, plan: ColumnPlan) -> None:
        c = f"c{i}"
        self.define(0, f"d{i}", _date(c, f"strlen({c})"))
        self.define(0, f"s{i}", _datetime(c, f"strlen({c})"))
        self._times(i)
        self._refused_cells(i, f"d{i} IS NULL AND s{i} IS NULL")

    def _text(self, i: int, plan: ColumnPlan) -> None:
        if plan.known and len(plan.known) <= _LITERAL_VALUES:
            self._known_values(i, sorted(plan.known))
            return
        t = self._stripped(i)
        self._text_candidate(i, plan, t)
        # Upper bounds of the typed candidates: a number starts with one of + , - . / 0-9 or
        # a non-ASCII digit, a date/time with a digit; a boolean is short.
        self.aggregates[f"maybe_numbers_times{i}"] = f"count_if({t} < ':' OR {t} >= chr(128))"
        self.aggregates[f"maybe_booleans{i}"] = (
            f"count(CASE WHEN b{i} <= 5 THEN CASE WHEN lower({t}) IN ({_TRUE}, {_FALSE}) "
            "THEN 1 END END)"
        )

    def _refused_cells(self, i: int, condition: str) -> None:
        """The cells the typed test refused, one more than MAX_REFUSED_CELLS at most."""
        self.aggregates[f"refused{i}"] = (
            f"list_slice(list(c{i}) FILTER (WHERE {condition}), 1, {MAX_REFUSED_CELLS + 1})"
        )

    def _known_values(self, i: int, known: list[str]) -> None:
        """A text column with few values so far: count the cells that are one of them, as
        read (a known value has no spaces to strip), and those that are anything else. When
        there are none of those, the counts alone give every figure (_of_values)."""
        c = f"c{i}"
        self.known_values[i] = known
        for j, value in enumerate(known):
            self.aggregates[f"value{i}_{j}"] = f"count_if({c} = {_literal(value)})"
        listed = ", ".join(map(_literal, known))
        self.aggregates[f"empty{i}"] = f"count_if({c} IS NULL OR {c} = '')"
        self.aggregates[f"new{i}"] = f"count_if({c} NOT IN ({listed}) AND {c} <> '')"

    # -------------------------------------------------------------- candidates

    def _number_candidate(self, i: int, cell: str, level: int) -> str:
        """n{i}: the number from x{i} (the cast) if it is finite and none of what float()
        refuses but DuckDB reads."""
        # DuckDB reads "1_000" and a "+-" before the digits; float() reads neither.
        refused = f"({cell} < ',' AND contains({cell}, '+-'))"
        if self.underscores:
            refused += f" OR contains({cell}, '_')"
        self.define(level, f"n{i}", f"CASE WHEN isfinite(x{i}) AND NOT ({refused}) THEN x{i} END")
        return f"n{i}"

    def _numbers(self, i: int, plan: ColumnPlan, cell: str, level: int) -> None:
        """The number candidate and its figures."""
        n = self._number_candidate(i, cell, level)
        if plan.integers:
            self.aggregates[f"integers{i}"] = (
                f"count(CASE WHEN {n} IS NOT NULL THEN CASE WHEN NOT (contains({cell}, '.') "
                f"OR contains({cell}, 'e') OR contains({cell}, 'E')) THEN 1 END END)"
            )
        self.aggregates[f"count{i}"] = f"count({n})"
        self.aggregates[f"fsum{i}"] = f"fsum({n})"
        self.aggregates[f"var{i}"] = f"var_pop({n})"
        self.aggregates[f"min{i}"] = f"min({n})"
        self.aggregates[f"max{i}"] = f"max({n})"

    def _booleans_of_short(self, i: int, t: str) -> None:
        self.define(2, f"o{i}", f"CASE WHEN b{i} <= 5 THEN lower({t}) END")
        self.aggregates[f"true{i}"] = f"count_if(o{i} IN ({_TRUE}))"
        self.aggregates[f"false{i}"] = f"count_if(o{i} IN ({_FALSE}))"

    def _times(self, i: int) -> None:
        self.aggregates[f"dates{i}"] = f"count(d{i})"
        self.aggregates[f"datetimes{i}"] = f"count(s{i})"
        self.aggregates[f"first{i}"] = f"min(coalesce(d{i}, s{i}))"
        self.aggregates[f"last{i}"] = f"max(coalesce(d{i}, s{i}))"

    def _text_candidate(self, i: int, plan: ColumnPlan, t: str) -> None:
        """Lengths, the HyperLogLog bitstring, and the value counts while they stay few."""
        self.define(1, f"l{i}", f"length({t})")
        self.define(1, f"h{i}", f"CASE WHEN {t} IS NOT NULL THEN hash({t}) END")
        # rank = 1 + trailing zeros: bit_count(v xor (v - 1)); bit 52 set caps it, and only
        # the bits below the register's (the top HLL_BITS) count.
        capped = f"(h{i} | {_RANK_CAP_BIT})"
        self.define(
            2,
            f"k{i}",
            f"(h{i} >> {64 - HLL_BITS})::BIGINT * {_RANK_SLOTS} "
            f"+ bit_count(xor({capped}, {capped} - 1))",
        )
        self.aggregates[f"nonempty{i}"] = f"count({t})"
        self.aggregates[f"lmin{i}"] = f"min(l{i})"
        self.aggregates[f"lmax{i}"] = f"max(l{i})"
        self.aggregates[f"lsum{i}"] = f"sum(l{i})"
        self.aggregates[f"hll{i}"] = f"bitstring_agg(k{i}, 0, {HLL_REGISTERS * _RANK_SLOTS - 1})"

    def _python_numbers_of(self, i: int, t: str) -> None:
        """Non-ASCII cells the cast did not read that may be numbers to Python's float(), of
        the stripped cell t{i} (its cast x{i}, its length l{i})."""
        non_ascii = f"CASE WHEN x{i} IS NULL THEN strlen({t}) <> l{i} END"
        condition = (
            f"CASE WHEN {non_ascii} THEN regexp_full_match({t}, '{MAYBE_NUMBER_PATTERN}') END"
        )
        self.aggregates[f"python{i}"] = f"count_if({condition})"
        self.python_cells[i] = (t, condition)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# The commonest shapes of a date and a date-time, found with LIKE at a fraction of a pattern's
# cost; a cell of that shape is read without the pattern. The date's cast would let a space
# through as its last character, so that one is tested; strptime lets nothing but year 0000
# through in the date-time's shape. tests/unit compare both with Python's rules on every cell
# with up to two characters of these shapes changed (three with DATA_EXACTNESS_FULL=1), and
# on every value of their numbers.
_DATE_SHAPE = "____-__-__"
_DATETIME_SHAPE = "____-__-__T__:__:__Z"
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _date(cell: str, size: str) -> str:
    """Epoch microseconds of a YYYY-MM-DD calendar date, else NULL (cheapest tests first)."""
    cast = f"epoch_us(CAST(TRY_CAST({cell} AS DATE) AS TIMESTAMP))"
    return (
        f"CASE WHEN {size} = 10 AND {cell} >= '0' AND {cell} < ':' THEN "
        f"CASE WHEN {cell} LIKE '{_DATE_SHAPE}' AND {cell} >= '0001' "
        f"AND {cell}[10] BETWEEN '0' AND '9' THEN {cast} "
        f"WHEN regexp_full_match({cell}, '{DATE_PATTERN}') THEN {cast} END END"
    )


def _datetime(cell: str, size: str) -> str:
    """Epoch microseconds (UTC) of an ISO 8601 date-time, else NULL."""
    return (
        f"CASE WHEN {size} BETWEEN 16 AND 32 AND {cell} >= '0' AND {cell} < ':' THEN "
        f"CASE WHEN {cell} LIKE '{_DATETIME_SHAPE}' AND {cell} >= '0001' "
        f"THEN epoch_us(TRY_STRPTIME({cell}, '{_DATETIME_FORMAT}')) "
        f"WHEN regexp_full_match({cell}, '{DATETIME_PATTERN}') "
        f"THEN epoch_us(TRY_CAST({cell} AS TIMESTAMPTZ)) END END"
    )


# ---------------------------------------------------------------- the accumulators


def _column(
    con: duckdb.DuckDBPyConnection,
    query: _Query,
    i: int,
    plan: ColumnPlan,
    rows: int,
    found: dict[str, Any],
) -> Column:
    if i >= query.width or plan.mode == SKIP or not rows:
        return Column()
    if i in query.known_values:
        return _known_column(con, query, i, rows, found)

    def get(name: str) -> Any:
        value = found.get(f"{name}{i}")
        return 0 if value is None else value  # the aggregates of no rows are NULL

    numbers = Numbers()
    if f"count{i}" in found and get("count"):
        count = int(get("count"))
        numbers = Numbers(
            count=count,
            integers=int(get("integers")),
            total=float(get("fsum")),
            m2=float(get("var")) * count,
            minimum=float(get("min")),
            maximum=float(get("max")),
        )
    if get("python"):
        numbers = numbers.merge(_python_numbers(con, query, i))
    times = Times()
    if f"dates{i}" in found and (get("dates") or get("datetimes")):
        times = Times(int(get("dates")), int(get("datetimes")), get("first"), get("last"))
    column = Column(
        numbers=numbers,
        true=int(get("true")),
        false=int(get("false")),
        times=times,
        bounds=Bounds(int(get("maybe_numbers_times")), int(get("maybe_booleans"))),
    )
    if f"refused{i}" in found:
        cells = found[f"refused{i}"] or []
        if len(cells) > MAX_REFUSED_CELLS:
            again = query.alone(i, _unlisted(plan))
            return as_mode(_column(con, again, i, _unlisted(plan), rows, again.run(con)), plan.mode)
        empty, extra = _refused(cells, plan.mode)
        return replace(column.merge(extra), empty=empty, nonempty=rows - empty)
    nonempty = int(get("nonempty"))
    text = Text()
    if nonempty:
        registers = _registers(found.get(f"hll{i}"))
        text = Text(
            nonempty,
            int(get("lmin")),
            int(get("lmax")),
            int(get("lsum")),
            registers,
            _values(con, query, i, plan, found, registers),
        )
    return replace(column, empty=rows - nonempty, nonempty=nonempty, text=text)


def _refused(cells: list[str | None], mode: str) -> tuple[int, Column]:
    """Empty cells among those a typed mode's fast test refused, and what the rest add to the
    mode's candidate, by Python's rules on the stripped cell (None: a missing cell)."""
    empty = 0
    values: list[float] = []
    integers = true = false = dates = datetimes = 0
    instants: list[int] = []
    for cell, count in Counter(cells).items():
        stripped = cell.strip() if cell is not None else ""
        if not stripped:
            empty += count
        elif mode == NUMBER:
            value = parse_number(stripped)
            if value is not None:
                values += [value] * count
                integers += count * is_integer_literal(stripped)
        elif mode == BOOLEAN:
            answer = parse_boolean(stripped)
            true += count * (answer is True)
            false += count * (answer is False)
        elif mode == TIME:
            found = parse_instant(stripped)
            if found is not None:
                timed, micros = found
                datetimes += count * timed
                dates += count * (not timed)
                instants.append(micros)
    times = Times(dates, datetimes, min(instants, default=None), max(instants, default=None))
    return empty, Column(numbers=Numbers.of(values, integers), true=true, false=false, times=times)


def _registers(bits: str | None) -> bytes:
    """HyperLogLog registers from the bitstring: each register's highest rank seen."""
    registers = bytearray(HLL_REGISTERS)
    if bits:
        for register in range(HLL_REGISTERS):
            rank = bits.rfind("1", register * _RANK_SLOTS, (register + 1) * _RANK_SLOTS)
            if rank >= 0:
                registers[register] = rank - register * _RANK_SLOTS
    return bytes(registers)


def _values(
    con: duckdb.DuckDBPyConnection,
    query: _Query,
    i: int,
    plan: ColumnPlan,
    found: dict[str, Any],
    registers: bytes,
) -> dict[str, int] | None:
    """This chunk's exact counts of the column's values, from a second read of the chunk, or
    None once they are too many to keep (then the sketch spares the second read)."""
    if plan.known is None:
        return None
    # With at most EXACT_DISTINCT_LIMIT values at most that many registers are set, so the
    # linear-counting estimate stays under 1.15 x the limit: past 2 x it they are too many.
    if hll_estimate(registers) > 2 * EXACT_DISTINCT_LIMIT:
        return None
    return _counted(con, query, f"t{i}")


def _counted(con: duckdb.DuckDBPyConnection, query: _Query, t: str) -> dict[str, int] | None:
    """Exact counts of the non-empty values of `t` (a stripped cell) in the chunk, or None
    when there are too many to keep."""
    rows = query.execute(
        con,
        f"SELECT {t}, count(*) FROM {query.source()} WHERE {t} IS NOT NULL GROUP BY {t} "
        f"LIMIT {EXACT_DISTINCT_LIMIT + 1}",
    ).fetchall()
    counts = {value: int(count) for value, count in rows}
    return counts if values_fit(counts) else None


def _known_column(
    con: duckdb.DuckDBPyConnection, query: _Query, i: int, rows: int, found: dict[str, Any]
) -> Column:
    """A text-mode column counted against its known values: every figure from the counts,
    or, when other values turned up, from a second read of the chunk: the text candidate
    with its sketch, and the exact counts where the sketch says the values are still few
    (counting them first would build a table of every distinct value: millions, when a
    column of few values turns into one of identifiers)."""
    if not found[f"new{i}"]:
        scanned = (
            (value, int(found[f"value{i}_{j}"] or 0))
            for j, value in enumerate(query.known_values[i])
        )
        return _of_values(con, {value: count for value, count in scanned if count}, rows)
    counting = ColumnPlan(TEXT, known=frozenset())  # counts its values while they are few
    again = query.alone(i, counting)
    column = _column(con, again, i, counting, rows, again.run(con))
    values = column.text.values
    return column if values is None else _of_values(con, values, rows)


def _of_values(con: duckdb.DuckDBPyConnection, values: dict[str, int], rows: int) -> Column:
    """A text-mode column from the exact counts of its values: the text candidate, and the
    typed counts (exact) as the bounds text mode keeps."""
    nonempty = sum(values.values())
    if not nonempty:
        return Column(empty=rows)
    typed = booleans = 0
    for value, count in values.items():
        if parse_number(value) is not None or parse_instant(value) is not None:
            typed += count
        elif parse_boolean(value) is not None:
            booleans += count
    hashes = con.execute("SELECT hash(unnest($values))", {"values": list(values)}).fetchall()
    lengths = [len(value) for value in values]
    text = Text(
        nonempty,
        min(lengths),
        max(lengths),
        sum(len(value) * count for value, count in values.items()),
        _registers_of(hash_ for (hash_,) in hashes),
        values,
    )
    return Column(
        empty=rows - nonempty, nonempty=nonempty, text=text, bounds=Bounds(typed, booleans)
    )


def _registers_of(hashes: Iterable[int]) -> bytes:
    """HyperLogLog registers of 64-bit hashes, as the scan's bitstring gives them."""
    registers = bytearray(HLL_REGISTERS)
    for hash_ in hashes:
        capped = hash_ | _RANK_CAP_BIT
        register, rank = hash_ >> (64 - HLL_BITS), (capped ^ (capped - 1)).bit_count()
        registers[register] = max(registers[register], rank)
    return bytes(registers)


def _python_numbers(con: duckdb.DuckDBPyConnection, query: _Query, i: int) -> Numbers:
    """Numbers Python reads in non-ASCII cells (digits of other scripts) that the cast did not."""
    cell, condition = query.python_cells[i]
    result = query.execute(
        con, f"SELECT {cell}, count(*) FROM {query.source()} WHERE {condition} GROUP BY {cell}"
    )
    # Each distinct cell once, with its count, a batch at a time: a column of millions of
    # such cells (or of distinct ones) never becomes a Python list of them.
    numbers = Numbers()
    while rows := result.fetchmany(_BATCH_ROWS):
        counted: list[tuple[float, int]] = []
        integers = 0
        for text, count in rows:
            value = parse_number(text)
            if value is not None:
                counted.append((value, int(count)))
                integers += int(count) * is_integer_literal(text)
        numbers = numbers.merge(Numbers.of_counts(counted, integers))
    return numbers
