"""Benchmark "work": the work inside the chunks, side by side in one run on one file.

DATA_PROCESSING over a generated CSV of 12 mixed columns (integers, prices, exponents, ratios,
booleans, dates, date-times, short and long text, quoted cells with commas, escaped quotes and
line breaks; ~2 % empty and ~1 % invalid cells), each contender in a fresh interpreter, one
thread each, timing only its work (CPU = user + system, `time.process_time`) as in a warm
process: what a contender imports is imported before its clock starts, and that CPU is
reported beside it (a cold process pays it once):

- today: the chunk work before the columnar engine (bench/work_today.py), 1 MiB chunks;
- csv loop: Python's csv module and plain loops, the naive reference;
- ours: the DATA_PROCESSING task itself (start, run_chunk, finish) over an in-memory S3,
  chunks sized by time as deployed, and again pinned to 1 MiB;
- peers over the whole file computing numbers only, as today reports: polars, pyarrow, DuckDB;
- a peer over the whole file computing the same typed statistics as ours, like for like: DuckDB
  (every column tested for every type, the type by the same 90 % rule, that type's figures,
  exact value counts and top values for text columns with few values). The goal "within 1.5x
  of the fastest peer" is judged on this one. polars is not written typed: numbers only it
  already takes over 3x DuckDB's CPU, so it cannot be the fastest.

"today" and "ours" are measured again, alternately, to make PAIRS interleaved pairs (5 at full
size), and the pair with the median ratio is the one reported; every pair's ratio is printed.

Every contender's number statistics are checked against the csv loop's (counts, empty, min and
max exactly; sums, means, deviations to 1e-12 relative), and the typed peer's every figure
against ours, so no figure comes from a wrong answer.
The checkpoint share is modelled: per chunk, the measured cost of serialising the accumulators
plus AWS latencies (S3 PUT 30 ms, DynamoDB UpdateItem 6 ms), against the mean wall time of the
chunks sized by time (all but the first, which is a fixed 8 MiB).

Rows from bench/work_media.py (images, email) are added when that module exists.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.report import table

SIZES_MB = {"small": 6, "full": 200}
# "today" and "ours" are measured this many times, alternately, and the pair with the median
# ratio is reported: on a shared machine one pair's ratio moves by ~10 %.
PAIRS = {"small": 1, "full": 5}
GOAL_VS_TODAY = 5.0  # at least 5x less CPU per GB than today
GOAL_VS_PEER = 1.5  # within 1.5x of the fastest peer over the whole file
S3_PUT_MS = 30.0
CHECKPOINT_MS = 6.0
DOC = ROOT / "docs" / "benchmarks.md"
DOC_START = "<!-- bench work: start -->"
DOC_END = "<!-- bench work: end -->"
CONTENDERS = (
    "today",
    "csv_loop",
    "ours",
    "ours_1mib",
    "polars_whole",
    "pyarrow_whole",
    "duckdb_whole",
    "duckdb_typed",
)
PEERS = ("polars_whole", "pyarrow_whole", "duckdb_whole")  # numbers only, as today reports
TYPED_PEERS = ("duckdb_typed",)  # like for like: ours' typed statistics
LABELS = {
    "today": "today (before this change), 1 MiB chunks",
    "csv_loop": "Python csv + plain loops",
    "ours": "ours: DuckDB, chunks sized by time",
    "ours_1mib": "ours: DuckDB, 1 MiB chunks",
    "polars_whole": "polars, whole file",
    "pyarrow_whole": "pyarrow, whole file",
    "duckdb_whole": "DuckDB, whole file",
    "duckdb_typed": "DuckDB, whole file, typed like ours",
}

# ---------------------------------------------------------------- the file

CITIES = ("Oslo", "Rome", "Lima", "Nuuk", "São Paulo", "Zürich", "Tokyo", "New York", "Cairo")
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
HEADER = "id,price,qty,measure,ratio,active,day,created,city,name,comment,code"


def _row(rng: random.Random, n: int) -> str:
    r = rng.random
    comment = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
    if r() < 0.1:
        comment += ', with ""quotes""'
    if r() < 0.02:
        comment += "\nsecond line"
    cells = [
        str(n),
        f"{r() * 1000:.2f}",
        str(rng.randint(-100, 100)),
        f"{(r() - 0.3) * 1e6:.6e}",
        f"{r():.5f}",
        rng.choice(("true", "false")),
        f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        rng.choice(CITIES),
        f"user{rng.randint(1, 50_000)}",
        f'"{comment}"',
        f"{rng.getrandbits(40):010x}",
    ]
    for index in range(len(cells)):
        roll = r()
        if roll < 0.02:
            cells[index] = ""
        elif roll < 0.03:
            cells[index] = "n/a"
    return ",".join(cells)


def write_csv(path: Path, megabytes: int, seed: int = 1) -> int:
    """The benchmark file (CRLF line ends), deterministic for a seed; returns its size."""
    rng = random.Random(seed)
    target = megabytes * 1_000_000
    size, n = 0, 0
    with path.open("w", newline="", encoding="utf-8") as out:
        out.write(HEADER + "\r\n")
        while size < target:
            lines = "\r\n".join(_row(rng, n + i) for i in range(5000)) + "\r\n"
            out.write(lines)
            size += len(lines.encode())
            n += 5000
    return path.stat().st_size


# ---------------------------------------------------------------- an S3 in memory


class LocalS3:
    """The S3 calls DATA_PROCESSING makes, over a dict (benchmarks and tests): no moto, so
    what is timed is the task's own work. Counts requests; times the PUTs' serialisation."""

    class exceptions:
        from botocore.exceptions import ClientError

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._count("HeadObject")
        if Key not in self.objects:
            raise self.exceptions.ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {"ContentLength": len(self.objects[Key]), "Metadata": {}}

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        self._count("GetObject")
        body = self.objects[Key]
        if Range:
            first, last = Range.removeprefix("bytes=").split("-")
            body = body[int(first) : int(last) + 1]
        return {"Body": _Body(body)}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **kwargs: Any) -> None:
        self._count("PutObject")
        self.objects[Key] = Body

    def delete_object(self, Bucket: str, Key: str) -> None:
        self._count("DeleteObject")
        self.objects.pop(Key, None)


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


# ---------------------------------------------------------------- the contenders


def _numbers(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    try:
        mean = math.fsum(values) / len(values)
        spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    except OverflowError:  # hex codes such as 12345e3001 read as numbers: no finite sum
        mean = spread = math.inf
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "sum": mean * len(values) if math.isinf(mean) else math.fsum(values),
        "mean": mean,
        "std_population": spread,
    }


def csv_loop(data: bytes) -> list[dict[str, Any]]:
    """The naive reference: csv.reader, then float() cell by cell."""
    text = data.decode("utf-8").removeprefix("\ufeff")
    rows = (row for row in csv.reader(text.splitlines(keepends=True)) if row)
    header = next(rows)
    width = len(header)
    values: list[list[float]] = [[] for _ in header]
    empty = [0] * width
    for row in rows:
        for index in range(width):
            cell = row[index].strip() if index < len(row) else ""
            if not cell:
                empty[index] += 1
                continue
            try:
                value = float(cell)
            except ValueError:
                continue
            if math.isfinite(value) and "_" not in cell:
                values[index].append(value)
    return [{"empty": e, **_numbers(v)} for e, v in zip(empty, values, strict=True)]


def today(data: bytes) -> list[dict[str, Any]]:
    from bench import work_today

    return work_today.run(data)


def ours(
    data: bytes, chunk_bytes: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The task itself, start -> chunks -> finish, over an in-memory S3."""
    from taskqueue.task_types import _s3
    from taskqueue.task_types.base import TaskContext
    from taskqueue.task_types.data_processing import DataProcessing, DataProcessingParams

    s3 = LocalS3()
    s3.objects["uploads/bench/input.csv"] = data
    ctx = TaskContext("bench", "bench", "bucket", clients={"s3": s3})
    params = DataProcessingParams.model_construct(
        input_key="uploads/bench/input.csv",
        rows=None,
        columns=5,
        seed=0,
        chunk_bytes=chunk_bytes,
        delimiter=",",
    )
    serialise = 0.0
    walls: list[float] = []  # each chunk's wall time
    put_json = _s3.put_json

    def timed_put_json(*args: Any) -> None:
        nonlocal serialise
        started = time.process_time()
        put_json(*args)
        serialise += time.process_time() - started

    _s3.put_json = timed_put_json  # type: ignore[assignment]
    try:
        task = DataProcessing()
        state = task.start(params, ctx)
        while not state.done:
            started = time.perf_counter()
            state = task.run_chunk(params, state, ctx)
            walls.append(time.perf_counter() - started)
        task.finish(params, state, ctx)
    finally:
        _s3.put_json = put_json  # type: ignore[assignment]
    document = json.loads(s3.objects["results/bench/bench/result.json"])
    chunks = document["chunks"]
    stats = [
        {
            key: column.get(key)
            for key in ("empty", "count", "min", "max", "sum", "mean", "std_population")
        }
        if column["type"] in ("integer", "float")
        else {"empty": column["empty"], "type": column["type"]}
        for column in document["column_stats"]
    ]
    return stats, {
        "chunks": chunks,
        "chunk_walls_s": walls,
        "serialise_s": serialise,
        "types": [c["type"] for c in document["column_stats"]],
        "columns": document["column_stats"],
    }


def polars_whole(data: bytes) -> list[dict[str, Any]]:
    import polars as pl

    frame = pl.read_csv(data, infer_schema=False, quote_char='"')
    out = []
    for name in frame.columns:
        cells = pl.col(name).str.strip_chars()
        number = cells.cast(pl.Float64, strict=False)
        number = pl.when(number.is_finite() & ~cells.str.contains("_", literal=True)).then(number)
        row = frame.select(
            empty=(cells.is_null() | (cells == "")).sum(),
            count=number.count(),
            min=number.min(),
            max=number.max(),
            sum=number.sum(),
            mean=number.mean(),
            std_population=number.std(ddof=0),
        ).row(0, named=True)
        out.append(row)
    return out


def pyarrow_whole(data: bytes) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    names = HEADER.split(",")
    table_ = pcsv.read_csv(
        pa.py_buffer(data),
        read_options=pcsv.ReadOptions(use_threads=False),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    out = []
    pattern = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
    for column in table_.columns:
        cells = pc.utf8_trim_whitespace(column)
        empty = pc.sum(pc.or_kleene(pc.is_null(cells), pc.equal(cells, ""))).as_py() or 0
        numbers = pc.cast(pc.filter(cells, pc.match_substring_regex(cells, pattern)), pa.float64())
        numbers = pc.filter(numbers, pc.is_finite(numbers))
        minmax = pc.min_max(numbers).as_py()
        out.append(
            {
                "empty": empty,
                "count": len(numbers),
                "min": minmax["min"],
                "max": minmax["max"],
                "sum": pc.sum(numbers).as_py(),
                "mean": pc.mean(numbers).as_py(),
                "std_population": pc.stddev(numbers).as_py(),
            }
        )
    return out


def duckdb_whole(data: bytes) -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect(config={"threads": 1})
    out = []
    with tempfile.NamedTemporaryFile(suffix=".csv") as handle:
        handle.write(data)
        handle.flush()
        cells = []
        for name in HEADER.split(","):
            t = f'trim("{name}")'
            n = f"(CASE WHEN isfinite(TRY_CAST({t} AS DOUBLE)) AND NOT contains({t}, '_') THEN TRY_CAST({t} AS DOUBLE) END)"
            cells.append(
                f"count_if({t} = '' OR \"{name}\" IS NULL), count({n}), min({n}), max({n}), "
                f"fsum({n}), avg({n}), stddev_pop({n})"
            )
        row = con.execute(
            f"SELECT {', '.join(cells)} FROM read_csv('{handle.name}', all_varchar = true, "
            "header = true, delim = ',', quote = '\"', escape = '\"', parallel = false)"
        ).fetchone()
    keys = ("empty", "count", "min", "max", "sum", "mean", "std_population")
    for index in range(len(HEADER.split(","))):
        out.append(dict(zip(keys, row[index * 7 : (index + 1) * 7], strict=True)))  # type: ignore[index]
    return out


# ---------------------------------------------------------------- like for like: typed


def duckdb_typed(data: bytes) -> list[dict[str, Any]]:
    """DuckDB over the whole file computing what ours reports: every column tested for every
    type (the type is only known at the end), the type inferred by the same 90 % rule, then
    that type's figures. Distinct values: DuckDB's own sketch in the pass; a text column
    whose sketch says few values is read again for its exact counts and top values."""
    import duckdb

    from taskqueue.task_types.column_stats import DATE_PATTERN, DATETIME_PATTERN

    con = duckdb.connect(config={"threads": 1})
    con.execute("SET TimeZone = 'UTC'")
    names = HEADER.split(",")
    per_column = []
    for name in names:
        t = f"nullif(trim(\"{name}\"), '')"
        x = f"TRY_CAST({t} AS DOUBLE)"
        n = f"(CASE WHEN isfinite({x}) AND NOT contains({t}, '_') THEN {x} END)"
        d = f"(CASE WHEN regexp_full_match({t}, '{DATE_PATTERN}') THEN TRY_CAST({t} AS DATE) END)"
        s = (
            f"(CASE WHEN regexp_full_match({t}, '{DATETIME_PATTERN}') "
            f"THEN TRY_CAST({t} AS TIMESTAMPTZ) END)"
        )
        per_column.append(
            f"count({t}), count({n}), count_if({n} IS NOT NULL AND NOT regexp_matches({t}, '[.eE]')), "
            f"min({n}), max({n}), fsum({n}), stddev_pop({n}), "
            f"count_if(lower({t}) IN ('true', 'yes')), count_if(lower({t}) IN ('false', 'no')), "
            f"count({d}), count({s}), min({d})::VARCHAR, max({d})::VARCHAR, "
            f"epoch_us(min({s})), epoch_us(max({s})), "
            f"min(length({t})), max(length({t})), sum(length({t})), approx_count_distinct({t})"
        )
    source = (
        "read_csv($path, all_varchar = true, header = true, delim = ',', quote = '\"', "
        "escape = '\"', parallel = false)"
    )
    with tempfile.NamedTemporaryFile(suffix=".csv") as handle:
        handle.write(data)
        handle.flush()
        path = {"path": handle.name}
        rows, *cells = (
            con.execute(f"SELECT count(*), {', '.join(per_column)} FROM {source}", path).fetchone()
            or ()
        )
        out = []
        for index, name in enumerate(names):
            figures = cells[index * 19 : (index + 1) * 19]
            column = _typed_report(int(rows), figures)
            if column["type"] == "text" and figures[-1] <= 2 * TYPED_EXACT_DISTINCT:
                t = f"nullif(trim(\"{name}\"), '')"
                counts = con.execute(
                    f"SELECT {t} AS v, count(*) AS k FROM {source} WHERE v IS NOT NULL "
                    "GROUP BY v ORDER BY k DESC, v",
                    path,
                ).fetchall()
                if len(counts) <= TYPED_EXACT_DISTINCT:
                    column["distinct"] = len(counts)
                    column["top_values"] = [
                        {"value": value, "count": count} for value, count in counts[:TYPED_TOP]
                    ]
            out.append(column)
    return out


TYPED_EXACT_DISTINCT = 1000  # ours counts values exactly up to this many
TYPED_TOP = 10


def _typed_report(rows: int, figures: list[Any]) -> dict[str, Any]:
    """The typed figures of one column from the peer's candidates (the same rule as ours)."""
    from taskqueue.task_types.column_stats import format_instant

    (nonempty, count, integers, low, high, total, std, true, false, dates, datetimes,
     first_day, last_day, first_moment, last_moment, shortest, longest, length, _) = figures  # fmt: skip
    body: dict[str, Any] = {"empty": rows - nonempty}
    need = 0.9 * nonempty
    if true + false >= need:
        body.update(type="boolean", count=true + false, true=true, false=false)
    elif count >= need:
        kind = "integer" if integers == count else "float"
        body.update(type=kind, count=count, min=low, max=high, sum=total)
        body.update(mean=total / count, std_population=std)
    elif dates + datetimes >= need:
        if datetimes:
            first, last = (format_instant(micros, date_only=False)
                           for micros in (first_moment, last_moment))  # fmt: skip
            body.update(type="datetime", min=first, max=last)
        else:
            body.update(type="date", min=first_day, max=last_day)
        body.update(count=dates + datetimes)
    else:
        body.update(type="text", count=nonempty, length_min=shortest, length_max=longest)
        body.update(length_mean=length / nonempty if nonempty else None)
    body["invalid"] = nonempty - body["count"] if body["type"] != "text" else 0
    return body


def typed_differences(ours_columns: list[dict[str, Any]], peer: list[dict[str, Any]]) -> list[str]:
    """Where a like-for-like peer's typed figures differ from ours: every figure the peer
    reports (exactly; floating-point figures to 1e-12 relative, as chunks merge their sums
    in another order)."""
    found = []
    for index, (mine, theirs) in enumerate(zip(ours_columns, peer, strict=True)):
        if mine.get("distinct_exact") is False:
            theirs = {k: v for k, v in theirs.items() if k not in ("distinct", "top_values")}
        for key, want in theirs.items():
            got = mine.get(key)
            if isinstance(want, float) and isinstance(got, int | float):
                same = math.isclose(got, want, rel_tol=1e-12)
            else:
                same = got == want
            if not same:
                found.append(f"column {index}: {key} {got!r} != {want!r}")
    return found


# What each contender imports, imported before its clock starts: the work is timed as in a warm
# process (a Lambda worker imports once per container, then runs chunk after chunk). The
# imports' own CPU is reported beside it (a cold process pays it once per file).
_IMPORTS = {
    "today": ("bench.work_today",),
    "csv_loop": ("csv",),
    "ours": (
        "taskqueue.task_types._s3",
        "taskqueue.task_types.base",
        "taskqueue.task_types.data_processing",
        "duckdb",
    ),
    "polars_whole": ("polars",),
    "pyarrow_whole": ("pyarrow", "pyarrow.compute", "pyarrow.csv"),
    "duckdb_whole": ("duckdb",),
    "duckdb_typed": ("duckdb", "taskqueue.task_types.column_stats"),
}
_IMPORTS["ours_1mib"] = _IMPORTS["ours"]


def _contend(name: str, path: str) -> dict[str, Any]:
    """Run one contender in this (fresh) interpreter: its figures and its statistics."""
    data = Path(path).read_bytes()
    started = time.process_time()
    for module in _IMPORTS[name]:
        importlib.import_module(module)
    imports = time.process_time() - started
    started, wall = time.process_time(), time.perf_counter()
    extra: dict[str, Any] = {}
    if name == "ours":
        stats, extra = ours(data)
    elif name == "ours_1mib":
        stats, extra = ours(data, 1024 * 1024)
    else:
        stats = globals()[name](data)
    cpu = time.process_time() - started
    return {
        "name": name,
        "cpu_s": cpu,
        "imports_s": imports,
        "wall_s": time.perf_counter() - wall,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bytes": len(data),
        "stats": stats,
        **extra,
    }


def measure(name: str, path: Path) -> dict[str, Any]:
    env = {**os.environ, "POLARS_MAX_THREADS": "1", "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.work", "--contender", name, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


# ---------------------------------------------------------------- checks and the table


def differences(reference: list[dict[str, Any]], stats: list[dict[str, Any]]) -> list[str]:
    """Where a contender's number statistics differ from the csv loop's (by column)."""
    found = []
    for index, (want, got) in enumerate(zip(reference, stats, strict=True)):
        if got.get("empty") != want["empty"]:
            found.append(f"column {index}: empty {got.get('empty')} != {want['empty']}")
        if "type" in got or want["count"] == 0 or math.isinf(want["mean"]):
            continue  # a text, date or boolean column, or no finite sum: nothing to compare
        for key in ("count", "min", "max"):
            if got.get(key) != want.get(key):
                found.append(f"column {index}: {key} {got.get(key)} != {want.get(key)}")
        for key in ("sum", "mean", "std_population"):
            if not math.isclose(got.get(key) or 0.0, want[key], rel_tol=1e-12):
                found.append(f"column {index}: {key} {got.get(key)} != {want[key]}")
    return found


@dataclass
class WorkRun:
    size: str
    runs: dict[str, dict[str, Any]]
    # Every pair of today's and ours' CPU seconds, in the order measured: (today, ours), their
    # work alone, and each with its imports.
    pairs: list[tuple[float, float]] = field(default_factory=list)
    cold_pairs: list[tuple[float, float]] = field(default_factory=list)

    def cpu_per_gb(self, name: str) -> float:
        run = self.runs[name]
        return float(run["cpu_s"]) / (run["bytes"] / 1e9)

    @property
    def fastest_peer(self) -> str:
        """The fastest peer computing the same typed statistics as ours (the goal's)."""
        return min(TYPED_PEERS, key=self.cpu_per_gb)

    @property
    def fastest_numeric_peer(self) -> str:
        return min(PEERS, key=self.cpu_per_gb)

    def vs_today(self) -> float:
        return self.cpu_per_gb("today") / self.cpu_per_gb("ours")

    def vs_peer(self) -> float:
        return self.cpu_per_gb("ours") / self.cpu_per_gb(self.fastest_peer)

    def vs_numeric_peer(self) -> float:
        return self.cpu_per_gb("ours") / self.cpu_per_gb(self.fastest_numeric_peer)

    def checkpoint_share(self) -> float:
        run = self.runs["ours"]
        # The chunks sized by time: all but the first (a fixed 8 MiB, there being no rate yet
        # to size it by), unless it is the only one.
        sized = run["chunk_walls_s"][1:] or run["chunk_walls_s"]
        per_chunk = sum(sized) / len(sized)
        checkpoint = (S3_PUT_MS + CHECKPOINT_MS) / 1000 + run["serialise_s"] / run["chunks"]
        return checkpoint / per_chunk

    def wrong(self) -> dict[str, list[str]]:
        reference = self.runs["csv_loop"]["stats"]
        checked = ("ours", "ours_1mib", *PEERS)
        found = {n: d for n in checked if (d := differences(reference, self.runs[n]["stats"]))}
        ours = self.runs["ours"]["columns"]
        for name in TYPED_PEERS:
            if different := typed_differences(ours, self.runs[name]["stats"]):
                found[name] = different
        if different := typed_differences(ours, self.runs["ours_1mib"]["columns"]):
            found["ours_1mib"] = [*found.get("ours_1mib", []), *different]
        return found

    def rows(self) -> list[dict[str, Any]]:
        today = self.cpu_per_gb("today")
        mb = self.runs["ours"]["bytes"] / 1e6
        peer, numeric = self.fastest_peer, self.fastest_numeric_peer
        return [
            {
                "workload": f"DATA_PROCESSING, {mb:.0f} MB CSV: ours vs today",
                "today": f"{today:.1f} CPU-s/GB",
                "peer": f"{LABELS['ours']}: {self.cpu_per_gb('ours'):.1f} CPU-s/GB",
                "ratio": f"{self.vs_today():.2f}x less CPU",
                "goal": f">= {GOAL_VS_TODAY:.0f}x",
                "met": self.vs_today() >= GOAL_VS_TODAY,
            },
            {
                "workload": f"DATA_PROCESSING, {mb:.0f} MB CSV: ours vs the fastest peer, "
                "like for like (typed statistics)",
                "today": f"{self.cpu_per_gb('ours'):.1f} CPU-s/GB (ours)",
                "peer": f"{LABELS[peer]}: {self.cpu_per_gb(peer):.1f} CPU-s/GB",
                "ratio": f"{self.vs_peer():.2f}x the peer's CPU",
                "goal": f"<= {GOAL_VS_PEER}x",
                "met": self.vs_peer() <= GOAL_VS_PEER,
            },
            {
                "workload": f"DATA_PROCESSING, {mb:.0f} MB CSV: ours vs the fastest peer "
                "computing numbers only (not the goal's measure)",
                "today": f"{self.cpu_per_gb('ours'):.1f} CPU-s/GB (ours)",
                "peer": f"{LABELS[numeric]}: {self.cpu_per_gb(numeric):.1f} CPU-s/GB",
                "ratio": f"{self.vs_numeric_peer():.2f}x the peer's CPU",
                "goal": "(for information)",
                "met": True,
            },
            {
                "workload": "DATA_PROCESSING: checkpoint share of a time-sized chunk",
                "today": "",
                "peer": f"{self.runs['ours']['chunks']} chunks",
                "ratio": f"{100 * self.checkpoint_share():.1f} %",
                "goal": "<= 5 %",
                "met": self.checkpoint_share() <= 0.05,
            },
        ]

    def render(self) -> str:
        today = self.cpu_per_gb("today")
        side = [
            [
                LABELS[name],
                f"{self.cpu_per_gb(name):.1f}",
                f"{today / self.cpu_per_gb(name):.2f}x",
                f"{self.runs[name]['imports_s']:.2f}",
                f"{self.runs[name]['peak_mb']:.0f}",
                "yes" if name == "csv_loop" or name not in self.wrong() else "NO",
            ]
            for name in CONTENDERS
        ]
        goals = [
            [r["workload"], r["ratio"], r["goal"], "met" if r["met"] else "not met"]
            for r in self.rows()
        ]
        return "\n\n".join(
            [
                table(
                    [
                        "contender",
                        "CPU-s per GB",
                        "today / it",
                        "imports, CPU-s (once a process)",
                        "peak MB",
                        "same figures",
                    ],
                    side,
                    title=f"work, size {self.size}: {self.runs['ours']['bytes'] / 1e6:.0f} MB, one thread each",
                ),
                table(["goal", "measured", "goal", ""], goals),
                self.pairs_line(),
            ]
        )

    def pairs_line(self) -> str:
        def ratios(pairs: list[tuple[float, float]]) -> str:
            return ", ".join(f"{today / ours:.2f}x" for today, ours in pairs)

        return (
            f"today and ours, {len(self.pairs)} interleaved pair(s) (today / ours CPU): "
            f"{ratios(self.pairs)}; the table shows the median pair. With each one's imports "
            f"(a cold process for every file): {ratios(self.cold_pairs)}"
        )


def run(size: str) -> WorkRun:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "work.csv"
        write_csv(path, SIZES_MB[size])
        runs = {name: measure(name, path) for name in CONTENDERS}
        measured = [(runs["today"], runs["ours"])]
        measured += [
            (measure("today", path), measure("ours", path)) for _ in range(PAIRS[size] - 1)
        ]
    ranked = sorted(measured, key=lambda pair: pair[0]["cpu_s"] / pair[1]["cpu_s"])
    runs["today"], runs["ours"] = ranked[len(ranked) // 2]
    pairs = [(today["cpu_s"], ours["cpu_s"]) for today, ours in measured]
    cold = [
        (today["cpu_s"] + today["imports_s"], ours["cpu_s"] + ours["imports_s"])
        for today, ours in measured
    ]
    return WorkRun(size, runs, pairs, cold)


def media_rows(full: bool) -> list[dict[str, Any]]:
    """IMAGE_PROCESSING and EMAIL rows, from bench/work_media.py where it exists."""
    try:
        from bench import work_media  # type: ignore[attr-defined]
    except ImportError:
        return []
    return [*work_media.measure_images(full), *work_media.measure_email(full)]


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if DOC_START in doc and DOC_END in doc:
        head, rest = doc.split(DOC_START, 1)
        _, tail = rest.split(DOC_END, 1)
        DOC.write_text(f"{head}{DOC_START}\n{text}\n{DOC_END}{tail}")


def main(size: str) -> bool:
    work = run(size)
    rows = work.rows() + media_rows(size == "full")
    summary = table(
        ["workload", "today", "peer", "ratio", "goal", "met"],
        [
            [
                r["workload"],
                r["today"],
                r["peer"],
                r["ratio"],
                r["goal"],
                {True: "yes", False: "no", None: ""}[r["met"]],  # None: a peer, no goal
            ]
            for r in rows
        ],
    )
    text = f"{work.render()}\n\n{summary}"
    print(text)
    wrong = work.wrong()
    for name, found in wrong.items():
        print(f"{name} differs from the csv loop: {found[:5]}")
    if size == "full":
        write_doc(text)
    return not wrong and all(r["met"] is not False for r in rows)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--contender":
        print(json.dumps(_contend(sys.argv[2], sys.argv[3])))
    else:
        sys.exit(0 if main(sys.argv[1] if len(sys.argv) > 1 else "small") else 1)
