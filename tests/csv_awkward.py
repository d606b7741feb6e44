"""Awkward CSV files, and the statistics Python's `csv` module gives for them: the reference
DATA_PROCESSING must equal, written here independently of the task's code.

`awkward_csv(seed)` mixes, by seed: LF, CRLF, CR-only or mixed line ends; a UTF-8 byte order
mark; blank lines anywhere (a run of them longer than a chunk before the header); quoted cells
with delimiters, escaped quotes and line breaks; a cell longer than a chunk; ragged rows; stray
quotes that RFC 4180 does not allow (which the csv module still reads its own way); numbers in
every form float() reads or refuses; booleans, dates, date-times; Unicode whitespace and digits.
`awkward_sample(seed, rows)` is the shortest head of that file with every kind of it.
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

TRACKED = 50
FIT = 0.9
EXACT_LIMIT = 1000
EXACT_CHARS = 100_000
HLL_ERROR = 0.0163
DATE = re.compile(
    r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
)
HOUR_MINUTE = r"([01][0-9]|2[0-3]):[0-5][0-9]"
DATETIME = re.compile(
    DATE.pattern
    + r"[T ]"
    + HOUR_MINUTE
    + r"(:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]"
    + HOUR_MINUTE
    + r")?"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NUMBERS = ["12", "-3.5", "1e3", ".5", "5.", "+7", "-0", " 42 ", "\t8\t", "1E-2", "007",
           "123456789012345678901234567890", "4.9406564584124654e-324", "1e300", "\u00a09\u3000",
           "\u0661\u0662", "\uff13", "2.5e+3"]  # fmt: skip
NOT_NUMBERS = ["n/a", "abc", "1.2.3", "NaN", "inf", "-infinity", "1_000", "1e999", "+-1", "-",
               "0x10", "1,5", "12a", "\u0661.\u0662.\u0663"]  # fmt: skip
WORDS = ["alpha", "beta", "Oslo", "São Paulo", "Zürich", "naïve café", "東京", "a,b", 'say "hi"',
         "two\nlines", "cr\ronly", "crlf\r\nin cell", " padded ", "\u2003em space\u2003", "x"]  # fmt: skip
BOOLEANS = ["true", "false", "TRUE", "No", "yes", "False"]
DATES = ["2024-01-05", "1999-12-31", "2024-02-29", "2023-02-29", "0000-01-01", "2024-13-01"]
DATETIMES = ["2024-01-05T10:20:30Z", "2024-01-05 10:20", "2024-06-30T23:59:59.123456+02:00",
             "2024-01-05T24:00:00", "2024-01-05T10:20:30-05:30", "2024-01-05T10:61"]  # fmt: skip
EMPTIES = ["", " ", "\t", "\u00a0", "\u3000 "]
KINDS = ("int", "float", "bool", "date", "datetime", "text", "mixed")


def _cell(rng: random.Random, kind: str, row: int) -> str:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(EMPTIES)
    if roll < 0.08:
        return rng.choice(NOT_NUMBERS + WORDS)
    if kind == "int":
        return str(rng.randint(-(10**6), 10**6)) if rng.random() < 0.9 else rng.choice(NUMBERS)
    if kind == "float":
        return rng.choice([f"{rng.gauss(1e6, 50):.6f}", f"{rng.random():.3e}", rng.choice(NUMBERS)])
    if kind == "bool":
        return rng.choice(BOOLEANS)
    if kind == "date":
        return (
            rng.choice(DATES)
            if rng.random() < 0.2
            else f"20{rng.randint(10, 29)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        )
    if kind == "datetime":
        return rng.choice(DATETIMES)
    if kind == "text":
        return rng.choice(WORDS) + (str(row % 7) if rng.random() < 0.5 else "")
    return rng.choice(NUMBERS + NOT_NUMBERS + WORDS + BOOLEANS + DATES)


def _quote(cell: str, delimiter: str, rng: random.Random) -> str:
    needs = any(ch in cell for ch in (delimiter, '"', "\r", "\n"))
    if needs or rng.random() < 0.1:
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _cell_features(cell: str, delimiter: str) -> set[str]:
    """The kinds of awkward content in one cell as generated (before quoting)."""
    found = {
        "CRLF in a cell": "\r\n" in cell,
        "CR in a cell": "\r" in cell.replace("\r\n", ""),
        "LF in a cell": "\n" in cell.replace("\r\n", ""),
        "delimiter in a cell": delimiter in cell,
        "quote in a cell": '"' in cell,
        "blank cell": bool(cell) and cell.isspace(),
        "padded cell": cell != cell.strip() and not cell.isspace(),
        "non-ASCII digits": any(ch.isdigit() and not ch.isascii() for ch in cell),
        "non-ASCII text": any(not ch.isascii() and not ch.isspace() for ch in cell),
        "underscore": "_" in cell,
    }
    return {name for name, present in found.items() if present}


def awkward_csv(
    seed: int, rows: int = 300, long_cell: int = 0, blank_lead: int = 0
) -> tuple[str, str]:
    """(text, delimiter) of one awkward file; long_cell / blank_lead: a quoted cell of that many
    characters in the middle / that many blank lines before the header."""
    text, delimiter, _ = _awkward(seed, rows, long_cell, blank_lead)
    return text, delimiter


def awkward_sample(seed: int, rows: int) -> str:
    """The shortest head of awkward_csv(seed, rows), in steps of 10 rows, that has every kind
    of awkward content the whole file has (line ends, blank lines, quoted line breaks, stray
    quotes, ragged rows...): the same cases for runs that cost by the byte."""
    _, _, every = _awkward(seed, rows)
    for head in range(min(10, rows), rows, 10):
        text, _, features = _awkward(seed, head)
        if features >= every:
            return text
    return _awkward(seed, rows)[0]


def _awkward(
    seed: int, rows: int, long_cell: int = 0, blank_lead: int = 0
) -> tuple[str, str, frozenset[str]]:
    """awkward_csv, and the kinds of awkward content the file has."""
    rng = random.Random(seed)
    delimiter = rng.choice([",", ",", ";", "\t", "|"])
    ending = rng.choice(["\n", "\r\n", "\r", "mixed"])
    features: set[str] = set()

    def end() -> str:
        chosen = rng.choice(["\n", "\r\n", "\r"]) if ending == "mixed" else ending
        features.add(f"line end {chosen!r}")
        return chosen

    kinds = [rng.choice(KINDS) for _ in range(rng.randint(2, 7))]
    lines: list[str] = []
    if rng.random() < 0.3:
        lines.append("\ufeff")
        features.add("byte order mark")
    lines.extend(end() for _ in range(blank_lead))
    header = [
        f"{kind} {index}" if index % 3 else f'"{kind},{index}"' for index, kind in enumerate(kinds)
    ]
    lines.append(delimiter.join(header) + end())
    stray = rng.random() < 0.3
    for row in range(rows):
        cells = []
        for kind in kinds:
            cell = _cell(rng, kind, row)
            cells.append(_quote(cell, delimiter, rng))
            features |= _cell_features(cell, delimiter)
            if cells[-1] != cell and cells[-1][1:-1] == cell:
                features.add("needless quotes")
        if stray and rng.random() < 0.05:
            # Quotes RFC 4180 does not allow: in an unquoted cell, or text after a closing one.
            spot = rng.randrange(len(cells))
            cells[spot] = rng.choice(['ab"c', '"ab"c', 'x""', ' "q"'])
            features.add(f"stray quote {cells[spot]!r}")
        if long_cell and row == rows // 2:
            cells[0] = '"' + ("long cell, with\nbreaks " * (long_cell // 23 + 1))[:long_cell] + '"'
        if rng.random() < 0.03:
            short = cells[: rng.randint(1, len(cells))] or cells  # ragged: short
            features.add("short row" if len(short) < len(cells) else "full row kept")
            cells = short
        elif rng.random() < 0.02:
            cells = [*cells, "extra"]  # ragged: long
            features.add("long row")
        lines.append(delimiter.join(cells))
        lines.append(end() if row < rows - 1 or rng.random() < 0.7 else "")
        if rng.random() < 0.03:
            lines.append(end())  # a blank line among the rows
            features.add("blank line")
    features.add("last line end" if lines[-1] else "no last line end")
    return "".join(lines), delimiter, frozenset(features)


# ---------------------------------------------------------------- the reference


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) and "_" not in cell else None


def _instant(cell: str) -> tuple[str, int] | None:
    if DATE.fullmatch(cell):
        try:
            day = date.fromisoformat(cell)
        except ValueError:
            return None
        return "date", (datetime(day.year, day.month, day.day, tzinfo=UTC) - EPOCH) // _MICRO
    if DATETIME.fullmatch(cell):
        try:
            moment = datetime.fromisoformat(cell.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return "datetime", (moment - EPOCH) // _MICRO
    return None


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH


def reference(text: str, delimiter: str) -> dict[str, Any]:
    """The typed statistics of a whole file, by the documented rules, from csv.reader."""
    csv.field_size_limit(16 * 1024 * 1024)
    text = text.removeprefix("\ufeff")
    records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    if not records:
        return {"rows": 0, "columns": 0, "ragged_rows": 0, "column_stats": []}
    header, rows = records[0], records[1:]
    columns = [_reference_column(header[i].strip()[:200] or f"column_{i + 1}", [row[i] if i < len(row) else "" for row in rows])
               for i in range(min(len(header), TRACKED))]  # fmt: skip
    ragged = sum(1 for row in rows if len(row) != len(header))
    return {
        "rows": len(rows),
        "columns": len(header),
        "ragged_rows": ragged,
        "column_stats": columns,
    }


def _reference_column(name: str, raw: list[str]) -> dict[str, Any]:
    cells = [cell.strip() for cell in raw]
    filled = [cell for cell in cells if cell]
    numbers = [(cell, value) for cell in filled if (value := _number(cell)) is not None]
    true = sum(cell.lower() in ("true", "yes") for cell in filled)
    false = sum(cell.lower() in ("false", "no") for cell in filled)
    instants = [found for cell in filled if (found := _instant(cell))]
    need = FIT * len(filled)
    out: dict[str, Any] = {"name": name, "empty": len(cells) - len(filled)}
    if not filled:
        return {**out, "type": "empty"}
    if true + false >= need:
        return {
            **out,
            "type": "boolean",
            "count": true + false,
            "invalid": len(filled) - true - false,
            "true": true,
            "false": false,
        }
    if len(numbers) >= need:
        values = [value for _, value in numbers]
        integer = all(not any(mark in cell for mark in ".eE") for cell, _ in numbers)
        kind = "integer" if integer else "float"
        return {
            **out,
            "type": kind,
            "count": len(values),
            "invalid": len(filled) - len(values),
            "min": min(values),
            "max": max(values),
            "sum": _finite(lambda: math.fsum(values)),
            "mean": _finite(lambda: math.fsum(values) / len(values)),
            "std_population": _finite(lambda: _std(values, 0)),
            "std_sample": _finite(lambda: _std(values, 1)) if len(values) > 1 else None,
        }
    if len(instants) >= need:
        kind = "date" if all(k == "date" for k, _ in instants) else "datetime"
        micros = [m for _, m in instants]
        return {
            **out,
            "type": kind,
            "count": len(instants),
            "invalid": len(filled) - len(instants),
            "min_us": min(micros),
            "max_us": max(micros),
        }
    counts = Counter(filled)
    exact = len(counts) <= EXACT_LIMIT and sum(map(len, counts)) <= EXACT_CHARS
    lengths = [len(cell) for cell in filled]
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]
    return {
        **out,
        "type": "text",
        "count": len(filled),
        "invalid": 0,
        "distinct": len(counts),
        "distinct_exact": exact,
        "top_values": [{"value": v, "count": c} for v, c in top] if exact else None,
        "length_min": min(lengths),
        "length_max": max(lengths),
        "length_mean": sum(lengths) / len(lengths),
    }


def _finite(compute: Any) -> float | None:
    """A figure that overflows a float is reported as unknown (None)."""
    try:
        value = compute()
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _std(values: list[float], ddof: int) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - ddof))


def assert_same(result: dict[str, Any], expected: dict[str, Any], rel: float = 1e-12) -> None:
    """Counts, types, extremes, text figures exactly; sums, means, deviations to `rel`."""
    for key in ("rows", "columns", "ragged_rows"):
        assert result[key] == expected[key], key
    assert len(result["column_stats"]) == len(expected["column_stats"])
    for got, want in zip(result["column_stats"], expected["column_stats"], strict=True):
        label = (want["name"], want["type"])
        assert got["type"] == want["type"], label
        assert got["name"] == want["name"], label
        for key, value in want.items():
            if key in ("name", "type", "distinct"):
                continue
            if key in ("min_us", "max_us"):
                continue  # compared below, through the ISO form
            if (
                key in ("sum", "mean", "std_population", "std_sample", "length_mean")
                and value is not None
            ):
                assert math.isclose(got[key], value, rel_tol=rel, abs_tol=0.0), (
                    label,
                    key,
                    got[key],
                    value,
                )
            else:
                assert got[key] == value, (label, key, got[key], value)
        if want["type"] in ("date", "datetime"):
            assert got["min"] == _iso(want["min_us"], want["type"]), label
            assert got["max"] == _iso(want["max_us"], want["type"]), label
        if want["type"] == "text":
            if want["distinct_exact"]:
                assert got["distinct"] == want["distinct"], label
            else:
                assert (
                    abs(got["distinct"] - want["distinct"]) <= 4 * HLL_ERROR * want["distinct"]
                ), label


def _iso(micros: int, kind: str) -> str:
    moment = EPOCH + micros * _MICRO
    if kind == "date":
        return moment.date().isoformat()
    text = moment.replace(tzinfo=None).isoformat(
        timespec="microseconds" if moment.microsecond else "seconds"
    )
    return text + "Z"


class StepClock:
    """A clock that advances one second per reading: a chunk's measured rate, and so its
    checkpointed state, repeats exactly when the chunk runs again."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def mixed_columns(rows: int, parts: int) -> str:
    """Columns whose type only the whole file decides: `n` numbers in the first two thirds,
    text after; `m` numbers but in the last part (87.5 % numbers in 8 parts: text by the
    90 % rule); `k` floats with a part of mostly "n/a" (96 % numbers: float); `t` a quoted
    note with a line break, split points falling inside it; `b` booleans throughout."""
    lines = []
    for i in range(rows):
        part = i * parts // rows
        n = str(i) if i < 2 * rows // 3 else f"w{i}"
        m = str(i % 100) if part < parts - 1 else f"x{i % 50}"
        k = "n/a" if part == 2 and i % 3 else f"{i}.5"
        lines.append(f'{n},{m},{k},"note {i % 40}\nline",{"yes" if i % 3 else "no"}')
    return "n,m,k,t,b\n" + "\n".join(lines) + "\n"
