"""DATA_PROCESSING's rules, piece by piece: record boundaries, the number rule between DuckDB
and Python's float(), mergeable accumulators, the HyperLogLog sketch and type inference."""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import statistics
import sys
from collections.abc import Iterator

import pytest

from taskqueue.errors import UnreadableInput
from taskqueue.task_types.column_stats import (
    EXACT_DISTINCT_LIMIT,
    HLL_REGISTERS,
    HLL_STANDARD_ERROR,
    Column,
    Numbers,
    Tally,
    Text,
    Times,
    infer_type,
    parse_instant,
    parse_number,
    report,
    tally_from_json,
    tally_to_json,
)
from taskqueue.task_types.csv_engine import (
    PY_WHITESPACE,
    _date,
    _datetime,
    _Query,
    _temp_csv,
    connection,
    tally_records,
)
from taskqueue.task_types.csv_records import (
    canonical_csv,
    conformant_record_end,
    csv_records,
    engine_form,
    follows_rfc4180,
    quoted_record_end,
)

# ---------------------------------------------------------------- record boundaries


@pytest.mark.parametrize(
    ("data", "at_eof", "end"),
    [
        (b'a,b\n1,"x\ny"\n2,', False, 12),  # the quoted line break is no boundary
        (b'a,"b\nc', False, 0),  # the only break is inside an open quote
        (b"a,b\r\n1,2\r", False, 5),  # a last "\r" may be half of "\r\n"
        (b"a,b\r1,2\r3", False, 8),  # CR-only line ends
        (b'"x""\n",1\n2', False, 9),  # an escaped quote, then a quoted break
        (b"1,2\n3,4", True, 7),  # at the end of the file the rest is a record
        (b"", True, 0),
    ],
)
def test_a_chunk_ends_where_a_record_ends(data: bytes, at_eof: bool, end: int) -> None:
    assert quoted_record_end(data, at_eof) == end


@pytest.mark.parametrize(
    ("data", "conformant"),
    [
        (b'a,"b,c",d\n', True),
        (b'"x""y",""\n', True),
        (b'a,b"c\n', False),  # a quote inside an unquoted cell
        (b'"ab"c,d\n', False),  # text after a closing quote
        (b' "a",b\n', False),  # a space before an opening quote
        (b'a;"b";c\n', False),  # with "," as the delimiter these quotes are mid-cell
    ],
)
def test_rfc4180_quoting_is_told_apart_from_what_only_the_csv_module_reads(
    data: bytes, conformant: bool
) -> None:
    assert follows_rfc4180(data, len(data), ",") is conformant


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_one_pass_finds_the_record_end_and_the_quoting_as_the_two_checks_do(
    delimiter: str,
) -> None:
    # Given every string of up to 7 bytes (6 with tabs) over quotes, delimiters, line breaks
    # and text (cut short anywhere: in a quoted cell, after a stray quote, half of "\r\n")
    alphabet = ['"', delimiter, "\n", "\r", "a", " "]
    for length in range(8 if delimiter == "," else 7):
        for letters in itertools.product(alphabet, repeat=length):
            data = "".join(letters).encode()
            for at_eof in (False, True):
                # When the record end and the quoting are found in one pass
                found = conformant_record_end(data, at_eof, delimiter)
                # Then they are what the parity count and the RFC 4180 check say
                cut = quoted_record_end(data, at_eof)
                assert found[0] == cut, (data, at_eof)
                if cut:
                    assert found[1] is follows_rfc4180(data, cut, delimiter), (data, at_eof)


def test_one_pass_agrees_with_the_two_checks_on_long_random_runs() -> None:
    # Given random runs of records with stray quotes here and there, cut at any byte
    rng = random.Random(11)
    for _ in range(3000):
        data = _random_run(rng, rng.randint(1, 4))
        if rng.random() < 0.2:
            spot = rng.randint(0, len(data))
            data = data[:spot] + rng.choice([b'"', b'a"', b'" ']) + data[spot:]
        data = data[: rng.randint(0, len(data))]
        # When the record end and the quoting are found in one pass
        cut, conformant = conformant_record_end(data, False, ",")
        # Then they are what the parity count and the RFC 4180 check say
        assert cut == quoted_record_end(data, False), data
        assert not cut or conformant is follows_rfc4180(data, cut, ","), data


def test_runs_that_follow_rfc4180_go_to_the_engine_as_they_are_whatever_their_line_ends() -> None:
    assert engine_form(b"a,b\r\n1,2\r\n", ",") == (True, b"a,b\r\n1,2\r\n")
    assert engine_form(b'a,"x\r\ny"\r\n', ",") == (True, b'a,"x\r\ny"\r\n')  # a quoted "\r"
    assert engine_form(b"a,b\r1,2\r", ",") == (True, b"a,b\r1,2\r")  # CR-only
    assert engine_form(b"a,b\n", ",") == (True, b"a,b\n")
    assert engine_form(b'a,b"c\r\n', ",") == (False, None)  # only the csv module reads it


def _random_run(rng: random.Random, width: int) -> bytes:
    """Records of random cells (quoted ones holding delimiters, escaped quotes and every kind
    of line break), blank lines and ragged rows, with line ends of one or several kinds."""
    breaks = rng.choice(
        [["\n"], ["\r\n"], ["\r"], ["\n", "\r\n"], ["\r", "\n", "\r\n"], ["\r\r\n", "\n\r", "\n\n"]]
    )
    text = ""
    for _ in range(rng.randint(1, 8)):
        cells = []
        for _ in range(rng.randint(1, width + 2) if rng.random() < 0.3 else width):
            if rng.random() < 0.4:
                parts = ["a", ",", '""', "\n", "\r", "\r\n", "\n\r", " ", "7", ""]
                cells.append('"' + "".join(rng.choices(parts, k=rng.randint(0, 4))) + '"')
            else:
                cells.append(
                    "".join(rng.choices(["a", "é", " ", "\t", "1", "-2.5"], k=rng.randint(0, 3)))
                )
        text += ("" if rng.random() < 0.1 else ",".join(cells)) + rng.choice(breaks)
    return (text.rstrip("\r\n") if rng.random() < 0.2 else text).encode()


def _engine_rows(engine: bytes, width: int) -> list[tuple[str | None, ...]] | None:
    """The rows DuckDB's reader gives the chunk query for engine, None if it refuses it."""
    import duckdb

    query = _Query(width, ",", underscores=False)
    with _temp_csv(engine, len(engine)) as path:
        query.params["path"] = path
        try:
            return query.execute(connection(), f"SELECT * FROM {query.source()}").fetchall()
        except duckdb.Error:
            return None


def test_the_engine_reads_every_conforming_run_as_the_csv_module_does() -> None:
    # Given random runs that follow RFC 4180, with line ends of every kind and mix, quoted or
    # not ("\r\n", "\r", "\n", "\r\r\n", "\n\r", blank lines), ragged rows, non-ASCII text
    rng = random.Random(7)
    read = 0
    for _ in range(6000):
        width = rng.randint(1, 4)
        body = _random_run(rng, width)
        conformant, engine = engine_form(body, ",")
        if not conformant:
            continue  # the csv module reads it
        # When DuckDB reads the engine form as the chunk query does
        assert engine == body
        rows = _engine_rows(engine, width)
        # Then it has the csv module's records: blank lines none, missing cells NULL
        records, _ = csv_records(body, True, ",")
        expected = [
            tuple(record[: width + 1]) + (None,) * (width + 1 - len(record))
            for record in records
            if record
        ]
        assert rows == expected, body
        read += 1
    assert read > 2000  # most runs conform


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_a_byte_that_is_not_utf8_in_cells_past_the_header_fails_naming_it(line_end: bytes) -> None:
    # Given a row with two cells more than the header, the last one not UTF-8 (the reader
    # drops the cells past the one extra column it reads, unchecked)
    body = line_end.join([b"1,2", b"3,4,5,6\xe9", b"7,8", b""])

    # When DuckDB tallies the run (at byte 100 of the file)
    # Then it fails naming the byte in the file, as for a byte in any other cell
    where = 100 + body.index(b"\xe9")
    with pytest.raises(UnreadableInput, match=rf"byte {where} \(0xE9\) is not valid UTF-8"):
        tally_records(body, 2, ",", engine_body=body, offset=100)


def test_records_end_after_the_last_complete_one_and_requote_exactly() -> None:
    data = b'a,"b\r\nc",d\r\n\r\n"x"y,z\n"open'

    records, end = csv_records(data, False, ",")

    # the record ending where the whole lines end might go on (were it an open quote): it is
    # left for the next read, like the unfinished last line
    assert records == [["a", "b\r\nc", "d"], []]
    assert end == data.index(b'"x"y')
    records, end = csv_records(data, True, ",")
    assert end == len(data)
    assert canonical_csv(records, 2, ",") == b'"a","b\r\nc","d"\n"xy","z"\n"open"\n'


# ---------------------------------------------------------------- the number rule


def test_engine_strips_exactly_what_str_strip_strips() -> None:
    python = {chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()}

    assert set(PY_WHITESPACE) == python


_PIECES = ["", "+", "-", "0", "7", "12", "0009", ".", "5", "e", "E", "-3", "+2", "_", " ", "\t",
           "inf", "nan", "x", "\u0661", "\u00a0", "1e400", "e-400", ",", "'", "\x1c", "+-"]  # fmt: skip


def _random_cells(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 5))) for _ in range(count)]


@pytest.mark.parametrize("seed", range(6))
def test_the_engine_reads_numbers_exactly_as_float_of_the_stripped_cell(seed: int) -> None:
    # Given cells built from number-like pieces (signs, dots, exponents, inf, nan, "_",
    # Arabic-Indic digits, Unicode spaces, overflow)
    rng = random.Random(seed)
    for _ in range(10):
        cells = _random_cells(rng, 60)
        body = "".join(f'"{cell}"\n' for cell in cells if "\n" not in cell).encode()
        # When DuckDB tallies them as one column
        [column] = tally_records(body, 1, ",", engine_body=body).columns
        # Then its numbers are exactly those Python's float() reads in the stripped cells
        values = [v for c in cells if (v := parse_number(c.strip())) is not None]
        integers = sum(
            not any(m in c for m in ".eE") for c in cells if parse_number(c.strip()) is not None
        )
        numbers = column.numbers
        assert (numbers.count, numbers.integers) == (len(values), integers), cells
        if values:
            assert (numbers.minimum, numbers.maximum) == (min(values), max(values))
            assert numbers.total + numbers.total_error == pytest.approx(
                math.fsum(values), rel=1e-12
            )
        assert column.empty == sum(1 for c in cells if not c.strip())


# Characters a date or date-time parser might let through in a digit's or a separator's place.
_SHAPE_LETTERS = [
    *"0123456789",
    " ", "-", "/", "\\", "T", ":", ".", "+", "Z", "a", "e", "B", "C", "(", ")", ",",
    "\t", "\n", "\r", "\x0b", "\x0c", "\u00a0", "\u0661",
]  # fmt: skip
_SHAPES = ["2024-01-05", "2024-02-29", "0001-01-01", "2024-01-05T10:20:30Z",
           "2024-02-29T23:59:59Z", "0001-01-01T00:00:00Z", "2024-01-05T10:20:30"]  # fmt: skip
# DATA_EXACTNESS_FULL=1 also changes three characters, to the letters parsers treat specially.
_THREE_LETTERS = [*"0129", " ", "\t", "-", ":", "T", "Z", ".", "+"]
_SHAPE_CHANGES = 3 if os.environ.get("DATA_EXACTNESS_FULL") == "1" else 2


def _reshaped(shape: str, changes: int) -> Iterator[str]:
    """`shape` with up to `changes` of its characters each replaced by every letter."""
    for count in range(1, changes + 1):
        alphabet = _SHAPE_LETTERS if count < 3 else _THREE_LETTERS
        for places in itertools.combinations(range(len(shape)), count):
            for letters in itertools.product(alphabet, repeat=count):
                cell = list(shape)
                for place, letter in zip(places, letters, strict=True):
                    cell[place] = letter
                yield "".join(cell)


def _digit_sweeps(shape: str) -> Iterator[str]:
    """Every value of the shape's year, and of each two of its other numbers (month, day...)."""
    year, *fields = [(m.start(), m.end()) for m in re.finditer("[0-9]+", shape)]
    for value in range(10_000):
        yield f"{value:04d}{shape[year[1] :]}"
    for (a, b), (c, d) in itertools.combinations(fields, 2):
        for first, second in itertools.product(range(100), repeat=2):
            yield f"{shape[:a]}{first:02d}{shape[b:c]}{second:02d}{shape[d:]}"


@pytest.mark.parametrize("shape", _SHAPES)
def test_dates_and_date_times_read_without_the_pattern_are_exactly_pythons(shape: str) -> None:
    # Given a common date or date-time shape (which the engine reads without its pattern)
    # with up to two of its characters replaced by anything a parser might let through, and
    # every value of each two of its numbers
    cells = sorted({*_reshaped(shape, _SHAPE_CHANGES), *_digit_sweeps(shape)})
    # When DuckDB tests each cell as a date and as a date-time
    found = connection().execute(
        f"SELECT c, {_date('c', 'strlen(c)')}, {_datetime('c', 'strlen(c)')} "
        "FROM (SELECT unnest($cells) AS c)",
        {"cells": cells},
    )
    engine = {cell: (day, moment) for cell, day, moment in found.fetchall()}
    # Then it reads exactly the dates and date-times Python's rules read, at the same instant
    wrong = []
    for cell in cells:
        python = parse_instant(cell)
        expected = (
            (None, None)
            if python is None
            else (None, python[1])
            if python[0]
            else (python[1], None)
        )
        if engine[cell] != expected:
            wrong.append((cell, engine[cell], expected))
    assert not wrong, wrong[:10]
    assert sum(parse_instant(cell) is not None for cell in cells) > 100


# ---------------------------------------------------------------- accumulators


def _numbers(values: list[float]) -> Numbers:
    return Numbers.of(values, integers=0)


def test_merged_chunk_numbers_equal_the_whole_stream() -> None:
    rng = random.Random(7)
    values = [rng.gauss(1e6, 50) for _ in range(5000)]
    cuts = sorted(rng.sample(range(1, len(values)), 40))
    merged = Numbers()
    for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True):
        merged = merged.merge(_numbers(values[a:b]))

    assert merged.count == len(values)
    assert merged.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert merged.total + merged.total_error == pytest.approx(math.fsum(values), rel=1e-15)
    assert math.sqrt(merged.m2 / merged.count) == pytest.approx(statistics.pstdev(values), rel=1e-9)
    assert (merged.minimum, merged.maximum) == (min(values), max(values))


def test_merging_with_an_empty_side_changes_nothing() -> None:
    some = _numbers([1.0, 2.0, 4.0])

    assert Numbers().merge(some) == some
    assert some.merge(Numbers()) == some


def _text(values: list[str]) -> Text:
    from collections import Counter

    registers = bytearray(HLL_REGISTERS)
    for value in values:
        h = hash_of(value)
        low = h & ((1 << 52) - 1)
        rank = 53 if low == 0 else ((low ^ (low - 1)).bit_count())
        registers[h >> 52] = max(registers[h >> 52], rank)
    counts = dict(Counter(values))
    return Text(
        len(values),
        1,
        1,
        len(values),
        bytes(registers),
        counts if len(counts) <= EXACT_DISTINCT_LIMIT else None,
    )


def hash_of(value: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


@pytest.mark.parametrize("distinct", [5_000, 60_000])
def test_distinct_beyond_the_exact_bound_is_estimated_within_the_stated_error(
    distinct: int,
) -> None:
    # Given two halves with overlapping values, merged
    a = _text([f"v{i}" for i in range(0, distinct * 2 // 3)])
    b = _text([f"v{i}" for i in range(distinct // 3, distinct)])
    merged = a.merge(b)
    # Then the count is an estimate (the values are too many to keep) within 4 standard errors
    estimate, exact = merged.distinct()
    assert not exact
    assert abs(estimate - distinct) <= 4 * HLL_STANDARD_ERROR * distinct


def test_exact_values_are_kept_while_few_and_dropped_when_too_many() -> None:
    few = _text(["a", "b", "a"]).merge(_text(["b", "c"]))
    assert few.values == {"a": 2, "b": 2, "c": 1} and few.distinct() == (3, True)

    many = _text([f"x{i}" for i in range(EXACT_DISTINCT_LIMIT)]).merge(_text(["new"]))
    assert many.values is None


def test_tallies_survive_their_stored_form_even_with_overflowed_sums() -> None:
    column = Column(
        empty=1,
        nonempty=3,
        numbers=Numbers(2, 2, math.inf, 0.0, math.nan, 1e308, 1e308),
        times=Times(1, 0, 0, 86_400_000_000),
        text=_text(["a", "b", "a"]),
    )
    tally = Tally(4, 1, (column, Column()))

    again = tally_from_json(tally_to_json(tally))

    assert again.rows == 4 and again.columns[1] == Column()
    restored = again.columns[0]
    assert restored.numbers.total == math.inf and math.isnan(restored.numbers.m2)
    assert restored.text == column.text and restored.times == column.times


# ---------------------------------------------------------------- type inference (rules as data)

INFERENCE = [
    # nonempty, numbers (integers), true+false, dates (datetimes) -> type
    (0, (0, 0), (0, 0), (0, 0), "empty"),
    (100, (0, 0), (60, 40), (0, 0), "boolean"),
    (100, (95, 95), (0, 0), (0, 0), "integer"),
    (100, (95, 94), (0, 0), (0, 0), "float"),
    (100, (89, 89), (0, 0), (0, 0), "text"),
    (100, (0, 0), (0, 0), (90, 0), "date"),
    (100, (0, 0), (0, 0), (50, 41), "datetime"),
    (100, (90, 90), (90, 0), (0, 0), "boolean"),  # "1"/"0" are numbers; true/false first
]


@pytest.mark.parametrize(("nonempty", "numbers", "booleans", "times", "kind"), INFERENCE)
def test_a_column_takes_the_first_type_that_fits_nine_tenths_of_its_cells(
    nonempty: int,
    numbers: tuple[int, int],
    booleans: tuple[int, int],
    times: tuple[int, int],
    kind: str,
) -> None:
    column = Column(
        nonempty=nonempty,
        numbers=Numbers(count=numbers[0], integers=numbers[1]),
        true=booleans[0],
        false=booleans[1],
        times=Times(times[0], times[1]),
    )

    assert infer_type(column) == kind


def test_invalid_cells_are_those_that_do_not_fit_the_type() -> None:
    # Given 11 non-empty cells of which 10 are integers
    column = Column(empty=2, nonempty=11, numbers=Numbers.of([1.0, 2.0] * 5, integers=10))

    body = report("qty", column)

    assert body["type"] == "integer" and body["count"] == 10 and body["invalid"] == 1
    assert (body["min"], body["max"], body["sum"]) == (1, 2, 15.0)
