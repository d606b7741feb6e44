"""CSV records as Python's `csv` module reads them, found in byte ranges of a file.

A chunk must end where a record ends, not merely after a newline: a newline inside a quoted
cell belongs to the cell. From a known record start, a newline ends a record exactly when the
quotes before it are even in number, provided the quoting follows RFC 4180 (a quoted cell
starts after a delimiter or a line break and its closing quote is followed by one). One regular
expression, run in C, tells whether a stretch follows those rules; where it does not (a stray
quote, text after a closing quote), the stretch is read by the `csv` module itself, which is
the definition of the result.

Also here: what makes input unreadable (not UTF-8, NUL bytes, UTF-16/32), and the header.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from functools import cache

from taskqueue.errors import InvalidInput, UnreadableInput

# The longest record (header or row) read whole; past it the input is refused, not split.
MAX_RECORD_BYTES = 16 * 1024 * 1024
# Every query of a chunk names each column of the header, and DuckDB's cost to set one up
# grows with them: ~0.12 s at 1,000 columns, ~0.4 s at 10,000 (a chunk may run ~50 such
# queries), minutes past 100,000, which a 16 MiB header allows. Wider files are refused.
MAX_COLUMNS = 10_000
UTF8_BOM = codecs.BOM_UTF8
_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


# ---------------------------------------------------------------- readable text


def refuse_other_encodings(head: bytes) -> int:
    """Bytes to skip at the start of the file (a UTF-8 byte order mark); UTF-16 and UTF-32
    files are refused by name rather than read as garbage column names."""
    for bom, name in _OTHER_BOMS:
        if head.startswith(bom):
            raise UnreadableInput(
                f"the file is {name} text (it starts with the byte order mark "
                f"{bom.hex(' ').upper()}); save it as UTF-8 and upload it again"
            )
    return len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0


def require_text(data: bytes, offset: int, end: int | None = None, utf8: bool = True) -> None:
    """Refuse binary data and text that is not UTF-8, naming the first offending byte.

    Checks data[:end] (all of it by default), without copying it. `offset` is where `data`
    starts in the file, so the message points into the file. utf8=False checks for NUL bytes
    only (for bytes whose UTF-8 the caller has checked otherwise)."""
    end = len(data) if end is None else end
    nul = data.find(b"\0", 0, end)
    if nul >= 0:
        raise UnreadableInput(
            f"byte {offset + nul} is a NUL byte: this is binary data or UTF-16/32 text, "
            "not a UTF-8 CSV file"
        )
    if not utf8 or data.isascii():
        return
    try:
        str(memoryview(data)[:end], "utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInput(
            f"byte {offset + exc.start} (0x{data[exc.start]:02X}) is not valid UTF-8: "
            "save the file as UTF-8 and upload it again"
        ) from None


# ---------------------------------------------------------------- record boundaries


@cache
def _rfc4180(delimiter: str) -> re.Pattern[bytes]:
    d = re.escape(delimiter.encode())
    # Unquoted text, or a quoted cell that starts after a delimiter/line break (or at the
    # start) and whose closing quote is followed by one (or the end); "" is an escaped quote.
    # Possessive quantifiers keep it linear; the quoted cell is unrolled (text, then ""-text
    # pairs), the fastest form for the re module.
    return re.compile(
        rb'(?:[^"]++|(?<![^' + d + rb'\r\n])"[^"]*+(?:""[^"]*+)*+"(?![^' + d + rb"\r\n]))*+"
    )


def follows_rfc4180(data: bytes, end: int, delimiter: str) -> bool:
    """Whether data[:end] (starting at a record start) quotes as RFC 4180 says."""
    return _rfc4180(delimiter).fullmatch(data, 0, end) is not None


def engine_form(data: bytes, delimiter: str) -> tuple[bool, bytes | None]:
    """(whether data follows RFC 4180, data as DuckDB may read it or None: data itself).

    DuckDB reads a run that follows RFC 4180 as it is, whatever its line ends ("\\n",
    "\\r\\n", "\\r" or a mix; csv_engine reads it in non-strict mode, where its reader and
    the csv module agree on every line end, tests/unit/test_column_stats.py). A run that
    does not is read by the csv module."""
    conformant = follows_rfc4180(data, len(data), delimiter)
    return conformant, data if conformant else None


def quoted_record_end(data: bytes, at_eof: bool) -> int:
    """Where the last complete record of data ends, by quote parity (RFC 4180 quoting):
    after the last line break preceded by an even number of quotes; 0 if there is none.

    A "\\r" that is the last byte read may be the first half of "\\r\\n": it is not a
    boundary until the next byte is known."""
    if at_eof:
        return len(data)
    end = len(data) - data.endswith(b"\r")
    return _break_outside_quotes(data, end, data.count(b'"', 0, end))


def _break_outside_quotes(data: bytes, end: int, quotes: int) -> int:
    """After the last line break before `end` that has an even number of quotes before it
    (`quotes`: how many are before `end`), or 0 if there is none."""
    while True:
        brk = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
        if brk < 0:
            return 0
        quotes -= data.count(b'"', brk, end)
        if quotes % 2 == 0:
            return brk + 1
        end = brk


def conformant_record_end(data: bytes, at_eof: bool, delimiter: str) -> tuple[int, bool]:
    """(where the last complete record of data ends, as quoted_record_end finds it; whether
    data up to there follows RFC 4180), from one pass of the RFC 4180 check instead of that
    pass plus a count of every quote in data.

    The check reads data up to the first quote it cannot read (`checked`), and up to there
    the quotes are even in number: a line break before it ends a record exactly where the
    quotes between the two are even, counted over the last line or so. That holds when the
    quote opens a cell the bytes read cut short (no quote after it); any other refused
    quote is found as before."""
    match = _rfc4180(delimiter).match(data)
    checked = match.end() if match else 0
    if at_eof:
        return len(data), checked == len(data)
    if checked < len(data) and data.find(b'"', checked + 1) >= 0:
        cut = quoted_record_end(data, False)
        return cut, follows_rfc4180(data, cut, delimiter)
    end = checked - (checked == len(data) and data.endswith(b"\r"))
    # Before `checked` the quotes are even in number (a last "\r" left out is no quote).
    return _break_outside_quotes(data, end, 0), True


def _lines(data: bytes, at_eof: bool) -> list[bytes]:
    """The whole lines of data (split on \\n, \\r and \\r\\n, as the csv module's file would
    be), without a last line that may continue past the bytes read."""
    lines = data.splitlines(keepends=True)
    if not at_eof and lines and not lines[-1].endswith(b"\n"):
        lines.pop()  # unfinished, or a "\r" whose "\n" may follow
    return lines


def csv_records(
    data: bytes, at_eof: bool, delimiter: str, limit: int | None = None, offset: int = 0
) -> tuple[list[list[str]], int]:
    """Records of data as the csv module reads them, and the byte offset after the last
    complete one (blank lines included, as empty records). With `limit`, stop after that
    many non-blank records. `offset` (where data starts in the file) places errors.

    Not at the end of the file, a record that ends exactly where the bytes read end might go
    on, so it is left for the next read.
    """
    records, ends = csv_record_ends(data, at_eof, delimiter, limit, offset)
    return records, ends[-1] if ends else 0


def csv_record_ends(
    data: bytes, at_eof: bool, delimiter: str, limit: int | None = None, offset: int = 0
) -> tuple[list[list[str]], list[int]]:
    """As `csv_records`, with the byte offset after each complete record."""
    csv.field_size_limit(MAX_RECORD_BYTES)
    lines = _lines(data, at_eof)
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in lines:
            consumed += len(line)
            yield line.decode("utf-8")

    available = sum(map(len, lines))
    require_text(data[:available], offset)
    records: list[list[str]] = []
    ends: list[int] = []
    found = 0
    try:
        for record in csv.reader(feed(), delimiter=delimiter):
            records.append(record)
            ends.append(consumed)
            found += bool(record)
            if limit is not None and found >= limit:
                break
    except csv.Error as exc:  # a cell over the field limit
        raise InvalidInput(f"not a readable CSV: {exc}") from exc
    if not at_eof and ends and ends[-1] == available:
        # The reader ends an open quoted cell where its lines run out: it may go on.
        records.pop()
        ends.pop()
    return records, ends


def first_record(
    data: bytes, at_eof: bool, delimiter: str, offset: int = 0
) -> tuple[list[str] | None, int]:
    """The first non-blank record (the header) and the offset after it; (None, offset) when
    the bytes hold only blank lines so far, the offset then being past them."""
    records, end = csv_records(data, at_eof, delimiter, limit=1, offset=offset)
    for record in records:
        if len(record) > MAX_COLUMNS:
            raise InvalidInput(
                f"the header has {len(record):,} columns; at most {MAX_COLUMNS:,} are read"
            )
        if record:
            return record, end
    return None, end


def canonical_csv(records: list[list[str]], width: int, delimiter: str) -> bytes:
    """Records written back with every cell quoted and "\\n" line ends: input the engine
    reads exactly as the csv module did. Blank records are no rows and are left out; cells
    past width + 1 are dropped (one extra is enough to count the row as ragged)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(record[: width + 1] for record in records if record)
    return out.getvalue().encode("utf-8")
