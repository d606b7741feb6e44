"""DATA_PROCESSING against Python's csv module: generated awkward files, every chunk size
from a few hundred bytes up, typed statistics equal to the reference; unreadable input fails
with an error that names the problem; chunks are sized by time; state stays small."""

from __future__ import annotations

import itertools
import json
import os
import threading
from typing import Any

import pytest
from pydantic import ValidationError

from bench.work import LocalS3
from taskqueue.errors import InputNotFound, InvalidInput, UnreadableInput
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types import csv_engine
from taskqueue.task_types.base import TaskContext
from taskqueue.task_types.column_plan import FULL as FULL_MODE
from taskqueue.task_types.column_plan import sampled_modes
from taskqueue.task_types.csv_engine import SAMPLE_PLAN
from taskqueue.task_types.csv_records import first_record
from taskqueue.task_types.data_processing import (
    FIRST_CHUNK_BYTES,
    FIRST_SAMPLE_BYTES,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    SAMPLE_BYTES,
    DataProcessing,
    DataProcessingParams,
    chunk_size,
    part_chunk_size,
    partial_key,
)
from tests.csv_awkward import (
    StepClock,
    assert_same,
    awkward_csv,
    awkward_sample,
    mixed_columns,
    reference,
)

BUCKET = "data-bucket"
OWNER = "alice"
KIB = 1024
MIB = 1024 * 1024
STATE_LIMIT = 2 * 1024  # the task item is rewritten at every checkpoint: keep it small
FULL = os.environ.get("DATA_EXACTNESS_FULL") == "1"


def upload(s3: LocalS3, body: bytes, name: str = "input.csv") -> str:
    key = f"uploads/{OWNER}/{name}"
    s3.objects[key] = body
    return key


def drive(
    params: DataProcessingParams,
    s3: LocalS3,
    repeat: bool = False,
    specialise_after: int = 1000,
    sample_bytes: int = SAMPLE_BYTES,
    memory_mb: int = 1024,
) -> tuple[TaskResult, list[ChunkState]]:
    """Run the task as the engine does, every state through its stored JSON form; with
    repeat, every chunk runs twice from the same checkpoint (as after a crash).
    `specialise_after`: the non-empty cells after which a column's chunks compute only its
    type's figures (small: the specialised modes and their repair run on small files).
    `sample_bytes`: how much of a longer first chunk chooses the columns' modes for it.
    `memory_mb`: the worker's memory (DuckDB takes a share of it)."""
    task = DataProcessing(
        clock=StepClock(), specialise_after=specialise_after, sample_bytes=sample_bytes
    )
    ctx = TaskContext("task1", OWNER, BUCKET, clients={"s3": s3}, memory_mb=memory_mb)
    states = [task.start(params, ctx)]
    while not states[-1].done:
        stored = ChunkState.model_validate_json(states[-1].model_dump_json())
        state = task.run_chunk(params, stored, ctx)
        if repeat:
            again = DataProcessing(
                clock=StepClock(), specialise_after=specialise_after, sample_bytes=sample_bytes
            )
            again.clock.now = task.clock.now - 2.0  # type: ignore[attr-defined]
            assert again.run_chunk(params, stored, ctx).model_dump() == state.model_dump()
        assert len(state.model_dump_json()) < STATE_LIMIT
        states.append(state)
    return task.finish(params, states[-1], ctx), states


def analysed(
    body: bytes, chunk_bytes: int | None, delimiter: str = ",", **kw: Any
) -> dict[str, Any]:
    s3 = LocalS3()
    key = upload(s3, body)
    params = DataProcessingParams.model_construct(
        input_key=key, rows=None, columns=5, seed=0, chunk_bytes=chunk_bytes, delimiter=delimiter
    )
    drive(params, s3, **kw)
    return json.loads(s3.objects[f"results/{OWNER}/task1/result.json"])


def drive_parts(
    params: DataProcessingParams, s3: LocalS3, specialise_after: int = 1000
) -> tuple[TaskResult, list[ChunkState], list[tuple[int, ChunkState]]]:
    """Run the task split as the fan-out does: plan, each part to its end (every state and
    result through its stored JSON form), verify, the parts it names again, then the merge.
    Returns the result, the planned parts' first states and the parts run again."""
    task = DataProcessing(clock=StepClock(), specialise_after=specialise_after)
    ctx = TaskContext("task1", OWNER, BUCKET, clients={"s3": s3})
    state = task.start(params, ctx)
    plan = task.plan(params, state, ctx)
    assert plan is not None
    to_run = dict(enumerate(plan.parts))
    results: dict[int, dict[str, Any]] = {}
    again: list[tuple[int, ChunkState]] = []
    while to_run:
        for index, part in to_run.items():
            part_ctx = TaskContext(f"task1.{index}", OWNER, BUCKET, clients={"s3": s3})
            while not part.done:
                stored = ChunkState.model_validate_json(part.model_dump_json())
                part = task.run_chunk(params, stored, part_ctx)
            summary = task.finish_part(params, part, part_ctx).summary
            results[index] = json.loads(json.dumps(summary))
        ordered = [results[index] for index in range(len(plan.parts))]
        to_run = task.verify(params, ordered, ctx)
        again += to_run.items()
    return task.merge(params, state, ordered, ctx), plan.parts, again


def in_parts(key: str, chunk_bytes: int, parts: int, delimiter: str) -> DataProcessingParams:
    return DataProcessingParams.model_construct(
        input_key=key,
        rows=None,
        columns=5,
        seed=0,
        chunk_bytes=chunk_bytes,
        delimiter=delimiter,
        max_parallel=parts,
        parts=parts,
    )


def analysed_in_parts(
    body: bytes, chunk_bytes: int, parts: int, delimiter: str = ",", specialise_after: int = 8
) -> tuple[dict[str, Any], list[ChunkState], list[tuple[int, ChunkState]]]:
    """The result document of the file analysed in `parts` parts, the parts' first states,
    and the parts run again (index, state)."""
    s3 = LocalS3()
    params = in_parts(upload(s3, body), chunk_bytes, parts, delimiter)
    _, planned, again = drive_parts(params, s3, specialise_after)
    return json.loads(s3.objects[f"results/{OWNER}/task1/result.json"]), planned, again


# ---------------------------------------------------------------- exactness


SEEDS = range(40) if FULL else range(8)
CHUNKS = (97, 1000, 4096, 64 * 1024, None)
# A chunk of 97 bytes holds about one record: the run costs one engine query per column per
# chunk. By default it reads the file's shortest head with every kind of awkward content the
# whole file has; DATA_EXACTNESS_FULL=1 reads the whole file.
TINY_CHUNK = 97


@pytest.mark.parametrize("seed", SEEDS)
def test_statistics_equal_the_csv_module_for_any_chunk_size(seed: int) -> None:
    # Given an awkward file (line ends, quotes, blank lines, ragged rows, stray quotes...)
    rows = 120 if seed % 2 else 400
    whole, delimiter = awkward_csv(seed, rows=rows)
    for chunk_bytes in CHUNKS:
        text = awkward_sample(seed, rows) if chunk_bytes == TINY_CHUNK and not FULL else whole
        # When it is analysed in chunks of this size
        result = analysed(text.encode(), chunk_bytes, delimiter)
        # Then every figure equals the csv module's over the same text
        assert_same(result, reference(text, delimiter))


@pytest.mark.parametrize("seed", SEEDS)
def test_columns_read_only_for_their_type_still_equal_the_csv_module(seed: int) -> None:
    # Given an awkward file, and columns that specialise after a few cells (the mixed ones
    # flip back to full and their specialised range is read again)
    text, delimiter = awkward_csv(seed, rows=120 if seed % 2 else 400)
    expected = reference(text, delimiter)
    for chunk_bytes in (500, 4096):
        # When it is analysed in small chunks
        result = analysed(text.encode(), chunk_bytes, delimiter, specialise_after=8)
        # Then every figure equals the csv module's over the whole file
        assert_same(result, expected)


def test_a_column_whose_type_changes_after_it_specialised_is_read_again_in_full() -> None:
    # Given columns that look like integers, booleans, dates and text, then turn into others
    first = [
        f"{i},{'yes' if i % 2 else 'no'},2024-01-{1 + i % 28:02d},w{i % 5}" for i in range(300)
    ]
    then = [f"x{i},{i},v{i},{i % 3}" for i in range(3000)]
    text = "n,b,d,t\n" + "\n".join(first + then) + "\n"
    s3 = LocalS3()
    key = upload(s3, text.encode())
    params = DataProcessingParams.model_construct(
        input_key=key, rows=None, columns=5, seed=0, chunk_bytes=4000, delimiter=","
    )
    # When it is analysed with columns specialising after 50 cells
    _, states = drive(params, s3, specialise_after=50)
    # Then a repair phase read the specialised ranges again, and the figures are exact
    assert "repair" in [state.data["phase"] for state in states]
    result = json.loads(s3.objects[f"results/{OWNER}/task1/result.json"])
    assert_same(result, reference(text, ","))
    assert [column["type"] for column in result["column_stats"]] == [
        "text", "integer", "text", "integer"
    ]  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
def test_a_first_chunk_read_in_the_modes_its_sample_chose_still_equals_the_csv_module(
    seed: int,
) -> None:
    # Given an awkward file, and first chunks whose first 600 bytes choose the columns' modes
    # (after 8 cells) for the whole chunk (mixed columns go back to full and are repaired)
    text, delimiter = awkward_csv(seed, rows=120 if seed % 2 else 400)
    expected = reference(text, delimiter)
    for chunk_bytes in (4096, 64 * 1024):
        # When it is analysed, every chunk run twice from its checkpoint
        result = analysed(
            text.encode(),
            chunk_bytes,
            delimiter,
            specialise_after=8,
            sample_bytes=600,
            repeat=True,
        )
        # Then every figure equals the csv module's over the whole file
        assert_same(result, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sample_counts_each_typed_candidate_as_a_full_read_does(seed: int) -> None:
    # Given an awkward file (numbers in other scripts' digits among its cells)
    text, delimiter = awkward_csv(seed, rows=400)
    header, end = first_record(text.encode(), True, delimiter)
    body, width = text.encode()[end:], len(header or [])
    plans = [csv_engine.ColumnPlan(FULL_MODE, known=None)] * width
    # When its rows are read as a sample (counts only) and in full
    sample = csv_engine.tally_records(body, width, delimiter, None, [SAMPLE_PLAN] * width)
    full = csv_engine.tally_records(body, width, delimiter, None, plans)
    # Then each column's non-empty cells and typed candidates' counts are the same (the
    # numbers Python reads in other scripts' digits too), and so are the modes they choose
    for a, b in zip(sample.columns, full.columns, strict=True):
        assert (a.nonempty, a.true, a.false) == (b.nonempty, b.true, b.false)
        assert (a.times.dates, a.times.datetimes) == (b.times.dates, b.times.datetimes)
        assert a.numbers.count == b.numbers.count
    assert sampled_modes(sample.columns, 8) == sampled_modes(full.columns, 8)


def test_a_first_chunk_reads_its_columns_in_their_sampled_modes_from_its_first_record() -> None:
    # Given columns of clear types, and one that turns from numbers to text after the sample
    rows = [
        f"{i},{'yes' if i % 2 else 'no'},2024-01-{1 + i % 28:02d},w{i % 7},{i}" for i in range(400)
    ]
    rows += [f"{i},yes,2024-02-01,w1,x{i}" for i in range(400, 3000)]
    text = "n,b,d,t,m\n" + "\n".join(rows) + "\n"
    s3 = LocalS3()
    key = upload(s3, text.encode())
    params = DataProcessingParams.model_construct(
        input_key=key, rows=None, columns=5, seed=0, chunk_bytes=None, delimiter=","
    )
    # When it is analysed (in one chunk) with the first 2,000 bytes choosing the modes
    _, states = drive(params, s3, specialise_after=50, sample_bytes=2000)
    # Then the first chunk read the clear columns in their modes from the first record on,
    # the column that changed went back to full, was read again, and every figure is exact
    first = json.loads(s3.objects[f"results/{OWNER}/task1/partials/000000.json"])
    assert [scan[:2] for scan in first["scans"]] == [
        ["number", 10], ["boolean", 10], ["time", 10], ["text", 10], ["number", 10]
    ]  # fmt: skip
    assert first["scans"][4][2] == len(text)  # back to full where the chunk (the file) ended
    assert "repair" in [state.data["phase"] for state in states]
    result = json.loads(s3.objects[f"results/{OWNER}/task1/result.json"])
    assert_same(result, reference(text, ","))
    assert [column["type"] for column in result["column_stats"]] == [
        "integer", "boolean", "date", "text", "text"
    ]  # fmt: skip


def test_a_text_column_with_few_values_counted_against_them_stays_exact() -> None:
    # Given a column of few values (counted against those seen so far once it specialises),
    # with padded and empty cells, quotes, and values that turn up only late in the file
    cities = ["Oslo", " Oslo ", "São Paulo", '"Lima, Peru"', "", "\u00a0Nuuk", "Rome"]
    rows = [f"{i},{cities[i % len(cities)]}" for i in range(2000)]
    rows += [f"{i},{'Cairo' if i % 2 else 'Tokyo '}" for i in range(300)]
    text = "id,city\n" + "\n".join(rows) + "\n"

    # When it is read in small chunks, specialising after 50 cells
    result = analysed(text.encode(), 4000, specialise_after=50)

    # Then every figure equals the csv module's, the top values included
    assert_same(result, reference(text, ","))
    city = result["column_stats"][1]
    assert (city["type"], city["distinct"], city["distinct_exact"]) == ("text", 7, True)


@pytest.mark.parametrize("seed", SEEDS)
def test_parts_reading_columns_for_their_sampled_type_equal_the_csv_module(seed: int) -> None:
    # Given an awkward file (quoted line breaks across split points, CRLF, ragged rows...)
    text, delimiter = awkward_csv(seed, rows=400)
    expected = reference(text, delimiter)
    # When it is analysed in 6 parts, each reading the columns the plan's sample found clear
    # (after 8 cells) in that type's mode only
    result, planned, _ = analysed_in_parts(text.encode(), 1000, 6, delimiter)
    # Then every figure equals the csv module's over the whole file
    assert_same(result, expected)
    assert result["parts"] == 6 and all(part.data["modes"] for part in planned)


def test_a_column_numbers_in_early_parts_and_text_later_reruns_those_parts_in_full() -> None:
    # Given columns the head shows as numbers but the whole file as text (one of them only by
    # the 90 % rule over all the parts), and one a part alone would call text
    text = mixed_columns(4000, 8)
    expected = reference(text, ",")
    assert [column["type"] for column in expected["column_stats"]] == [
        "text", "text", "float", "text", "boolean"
    ]  # fmt: skip
    # When it is analysed in 8 parts that read the columns as the head's sample says
    result, planned, again = analysed_in_parts(text.encode(), 4000, 8)
    # Then every part ran again once with `n` and `m` in full (others again only from a start
    # guessed inside the quoted note), and every figure is exact
    assert planned[0].data["modes"] == ["number", "number", "number", "text", "boolean"]
    in_full = [
        (index, state.data["modes"]) for index, state in again if state.data["modes"][0] == "full"
    ]
    assert sorted(index for index, _ in in_full) == list(range(8))
    assert all(modes == ["full", "full", "number", "text", "boolean"] for _, modes in in_full)
    assert_same(result, expected)


def test_a_column_a_part_alone_would_not_prove_needs_no_second_run() -> None:
    # Given a float column whose third part is mostly "n/a" (the file's 96 % are numbers)
    lines = [f"{i}.5,{'n/a' if i * 8 // 4000 == 2 and i % 3 else i}" for i in range(4000)]
    text = "k,j\n" + "\n".join(lines) + "\n"
    # When it is analysed in 8 parts reading both columns as numbers
    result, planned, again = analysed_in_parts(text.encode(), 4000, 8)
    # Then no part ran again and the figures are exact
    assert planned[0].data["modes"] == ["number", "number"]
    assert again == []
    assert_same(result, reference(text, ","))
    assert [column["type"] for column in result["column_stats"]] == ["float", "integer"]


def test_more_parts_than_records_leave_empty_parts_that_merge_to_nothing() -> None:
    # Given a file of a few long records and many parts (most of them hold no record start)
    text = "id,note\n" + "".join(f'{i},"{"x" * 3000}\n{i}"\n' for i in range(12))
    # When it is analysed in 40 parts
    result, _, _ = analysed_in_parts(text.encode(), 1000, 40)
    # Then the figures are those of the whole file
    assert_same(result, reference(text, ","))
    assert result["rows"] == 12


def test_a_part_guessing_its_start_reads_the_guess_and_its_first_chunk_in_one_request() -> None:
    # Given a file planned in 4 parts, the later ones starting at a guessed record boundary
    text, delimiter = awkward_csv(5, rows=2000)
    body = text.encode()
    s3 = LocalS3()
    params = in_parts(upload(s3, body), 20_000, 4, delimiter)
    task = DataProcessing(clock=StepClock())
    ctx = TaskContext("task1", OWNER, BUCKET, clients={"s3": s3})
    plan = task.plan(params, task.start(params, ctx), ctx)
    assert plan is not None
    last = plan.parts[3]
    # When the last part runs its first chunk
    before = s3.calls["GetObject"]
    state = task.run_chunk(params, last, TaskContext("task1.3", OWNER, BUCKET, clients={"s3": s3}))
    # Then one ranged GET brought both the bytes its guess looks at and its chunk's
    assert s3.calls["GetObject"] - before == 1
    # And it began right after the last line break before its nominal start, as guessed
    nominal, begin = last.data["nominal"], state.data["begin"]
    assert begin == max(body.rfind(b"\n", 0, nominal), body.rfind(b"\r", 0, nominal - 1)) + 1
    assert state.cursor > begin


class RangesRead(LocalS3):
    """LocalS3 noting the byte ranges of its ranged GETs."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[int, int]] = []

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        if Range:
            first, last = Range.removeprefix("bytes=").split("-")
            self.ranges.append((int(first), int(last)))
        return super().get_object(Bucket, Key, Range)


def planned_modes(text: str) -> tuple[list[str], int, int]:
    """The modes the plan of a 4-part task gives the parts, how far into the rows it read to
    decide them, and in how many GETs."""
    s3 = RangesRead()
    key = upload(s3, text.encode())
    params = in_parts(key, 0, 4, ",").model_copy(update={"chunk_bytes": None})
    task = DataProcessing(clock=StepClock())
    ctx = TaskContext("task1", OWNER, BUCKET, clients={"s3": s3})
    plan = task.plan(params, task.start(params, ctx), ctx)
    assert plan is not None
    body_start = text.index("\n") + 1
    sample = [(first, last) for first, last in s3.ranges if first >= body_start]
    return (
        plan.parts[0].data["modes"],
        max(last for _, last in sample) + 1 - body_start,
        len(sample),
    )


def test_the_plan_samples_256_kib_of_rows_when_every_column_has_its_cells_there() -> None:
    # Given 3 MiB of rows whose columns are all filled
    rows = [f"{i},{i * 0.25},x{i % 7}" for i in range(300_000)]
    text = "a,b,c\n" + "\n".join(rows) + "\n"
    assert len(text) > 3 * MIB
    # When it is planned in parts
    modes, read, gets = planned_modes(text)
    # Then the plan read 256 KiB of rows with every test, and found each column's mode there
    assert (read, gets) == (FIRST_SAMPLE_BYTES, 1)
    assert modes == ["number", "number", "text"]


def test_the_plan_samples_further_while_a_column_has_too_few_cells_up_to_a_whole_runs_sample() -> (
    None
):
    # Given a column filled in one row of 40 (1,000 cells after ~40,000 rows, ~510 KiB), and
    # one filled in one row of 1,000 (1,000 cells only after 8 MiB)
    rows = [f"{i},{i if i % 40 == 0 else ''},{i if i % 1000 == 0 else ''}" for i in range(400_000)]
    text = "a,b,c\n" + "\n".join(rows) + "\n"
    # When it is planned in parts
    modes, read, gets = planned_modes(text)
    # Then the plan read on (256 KiB, as much again, twice that) up to a whole run's sample:
    # the second column is clear there, the third still has too few cells and is read with
    # every test
    assert (read, gets) == (SAMPLE_BYTES, 3)
    assert modes == ["number", "number", "full"]


class ReadsTogether(LocalS3):
    """LocalS3 whose GETs from other threads than the test's each wait until `readers` of them
    are in flight (a barrier: fewer at once time out and fail)."""

    def __init__(self, readers: int) -> None:
        super().__init__()
        self.together = threading.Barrier(readers, timeout=10)
        self.lock = threading.Lock()
        self.read_together = 0

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        if threading.current_thread() is not threading.main_thread():
            self.together.wait()
            with self.lock:
                self.read_together += 1
        return super().get_object(Bucket, Key, Range)


def test_the_parent_reads_its_parts_accumulators_at_once_and_merges_them_in_order() -> None:
    # Given an awkward file in 8 parts, and S3 GETs that wait for 8 of them to be in flight
    text, delimiter = awkward_csv(7, rows=400)
    s3 = ReadsTogether(8)
    params = in_parts(upload(s3, text.encode()), 1000, 8, delimiter)
    # When it is analysed in parts
    _, _, again = drive_parts(params, s3, specialise_after=8)
    # Then once the parts tiled the file (two wrong guesses run again first), their check
    # read the 8 accumulators at once, none alone, and the merge took them in file order:
    # the figures are the whole file's
    assert len(again) == 2
    assert s3.read_together == 8
    result = json.loads(s3.objects[f"results/{OWNER}/task1/result.json"])
    assert_same(result, reference(text, delimiter))


def test_blank_lines_longer_than_a_chunk_before_the_header_are_skipped() -> None:
    text, delimiter = awkward_csv(3, rows=50, blank_lead=3000)

    result = analysed(text.encode(), 1000, delimiter)

    assert_same(result, reference(text, delimiter))
    assert result["rows"] > 0


def test_a_chunk_of_only_blank_lines_among_the_rows_counts_nothing() -> None:
    text = "a,b\r\n1,2\r\n" + "\r\n" * 3000 + "3,x\r\n"

    result = analysed(text.encode(), 1000)

    assert_same(result, reference(text, ","))
    assert (result["rows"], result["column_stats"][0]["sum"]) == (2, 4.0)


def test_a_cell_longer_than_a_chunk_is_read_whole() -> None:
    text, delimiter = awkward_csv(5, rows=60, long_cell=200_000)

    result = analysed(text.encode(), 64 * 1024, delimiter)

    expected = reference(text, delimiter)
    assert_same(result, expected)
    assert "long cell" in text and result["rows"] == expected["rows"] == 60


def test_a_repeated_chunk_gives_the_same_state_and_result() -> None:
    text, delimiter = awkward_csv(11, rows=200)

    result = analysed(text.encode(), 2000, delimiter, repeat=True)

    assert_same(result, reference(text, delimiter))


def test_a_record_longer_than_the_bound_is_refused_not_split() -> None:
    from taskqueue.task_types import csv_records

    body = b'a,b\n"' + b"x" * (csv_records.MAX_RECORD_BYTES + 10) + b'",1\n'

    with pytest.raises(InvalidInput, match="longer than 16 MiB"):
        analysed(body, MAX_CHUNK_BYTES // 8)


# ---------------------------------------------------------------- unreadable input


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a,b\n1,2\n".encode("utf-16"), "UTF-16"),
        ("a,b\n1,2\n".encode("utf-16-be"), "NUL byte"),
        ("a,b\n1,2\n".encode("utf-32"), "UTF-32"),
        ("name,city\nJosé,Zürich\n".encode("latin-1"), r"byte 13 \(0xE9\) is not valid UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "NUL byte"),
    ],
    ids=["utf-16", "utf-16-no-bom", "utf-32", "latin-1", "binary"],
)
def test_input_that_is_not_utf8_text_fails_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(UnreadableInput, match=message):
        analysed(body, None)


def _typed_rows(rows: int, extra_columns: int = 0) -> list[list[bytes]]:
    cities = (b"Oslo", b"Lima", b"Nuuk")
    return [
        [b"n", b"flag", b"day", b"city", b"name"] + [b"x%d" % i for i in range(extra_columns)],
        *(
            [
                b"%d" % n,
                (b"true", b"false")[n % 2],
                b"2024-01-%02d" % (n % 28 + 1),
                cities[n % 3],
                b"user%d" % n,
            ]
            + [b"%d" % i for i in range(extra_columns)]
            for n in range(rows)
        ),
    ]


@pytest.mark.parametrize(
    ("column", "extra_columns"),
    [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (50, 47)],
    ids=["number", "boolean", "date", "text-few-values", "text", "past-the-50th"],
)
def test_a_byte_that_is_not_utf8_fails_naming_it_in_any_chunk_and_any_column_mode(
    column: int, extra_columns: int
) -> None:
    # Given a file whose columns have specialised to their types (number, boolean, date,
    # text counted against its few values, text) or are past the 50th (not analysed), with
    # a Latin-1 byte in one cell of a late chunk
    rows = _typed_rows(3000, extra_columns)
    rows[2500][column] += b"\xe9"
    body = b"".join(b",".join(row) + b"\n" for row in rows)
    where = body.index(b"\xe9")

    # When the task reads it in 64 KiB chunks, Then it fails naming the byte's offset
    with pytest.raises(UnreadableInput, match=rf"byte {where} \(0xE9\) is not valid UTF-8"):
        analysed(body, 64 * 1024, specialise_after=8)


def test_a_byte_that_is_not_utf8_past_the_header_of_a_crlf_file_fails_naming_it() -> None:
    # Given a CRLF file whose columns have specialised, with a row in a late chunk that has
    # two cells more than the header, the last one holding a Latin-1 byte
    rows = _typed_rows(3000)
    rows[2500] += [b"more", b"caf\xe9"]
    body = b"".join(b",".join(row) + b"\r\n" for row in rows)
    where = body.index(b"\xe9")

    # When the task reads it in 64 KiB chunks, Then it fails naming the byte's offset
    with pytest.raises(UnreadableInput, match=rf"byte {where} \(0xE9\) is not valid UTF-8"):
        analysed(body, 64 * 1024, specialise_after=8)


def test_a_missing_input_is_input_not_found() -> None:
    s3 = LocalS3()
    params = DataProcessingParams(input_key=f"uploads/{OWNER}/none.csv")

    with pytest.raises(InputNotFound, match="does not exist"):
        DataProcessing().start(params, TaskContext("t", OWNER, BUCKET, clients={"s3": s3}))


# ---------------------------------------------------------------- chunk size and state


def test_chunks_are_sized_from_the_measured_rate() -> None:
    assert chunk_size(None, 3.0) == FIRST_CHUNK_BYTES
    assert chunk_size(10 * 1024 * 1024, 3.0) == 30 * 1024 * 1024
    assert chunk_size(1.0, 3.0) == MIN_CHUNK_BYTES
    assert chunk_size(1e12, 3.0) == MAX_CHUNK_BYTES == 128 * MIB


def test_a_chunk_size_given_in_the_parameters_is_at_most_64_mib() -> None:
    # Time-sized chunks reach 128 MiB; a pinned one (whose first chunk is copied past its
    # header) stays within the 64 MiB it always allowed
    DataProcessingParams(rows=10, chunk_bytes=64 * MIB)
    with pytest.raises(ValidationError, match="less than or equal to 67108864"):
        DataProcessingParams(rows=10, chunk_bytes=64 * MIB + 1)


def test_a_parts_chunks_are_at_least_half_the_part_whatever_its_measured_rate() -> None:
    # A part's own rate (here 1 byte/s: CPUs shared with other parts) does not shrink its
    # chunks below half the part, its first chunk included; the bounds still hold
    assert part_chunk_size(chunk_size(None, 3.0), 20 * MIB) == 10 * MIB
    assert part_chunk_size(chunk_size(1.0, 3.0), 20 * MIB) == 10 * MIB
    assert part_chunk_size(chunk_size(10 * MIB, 3.0), 20 * MIB) == 30 * MIB
    assert part_chunk_size(chunk_size(1.0, 3.0), 1000 * MIB) == MAX_CHUNK_BYTES
    assert part_chunk_size(chunk_size(1.0, 3.0), 1 * MIB) == MIN_CHUNK_BYTES


def test_accumulators_live_in_s3_one_object_per_chunk_and_the_old_ones_go() -> None:
    text, delimiter = awkward_csv(2, rows=300)
    s3 = LocalS3()
    key = upload(s3, text.encode())
    params = DataProcessingParams.model_construct(
        input_key=key, rows=None, columns=5, seed=0, chunk_bytes=500, delimiter=delimiter
    )
    ctx = TaskContext("task1", OWNER, BUCKET, clients={"s3": s3})

    _, states = drive(params, s3)

    chunks = states[-1].data["chunks"]
    assert chunks == len(states) - 1 > 3
    kept = sorted(k for k in s3.objects if "/partials/" in k)
    assert kept == [partial_key(ctx, chunks - 2), partial_key(ctx, chunks - 1)]
    # one range GET per chunk (no accumulator GET: the process kept its own), one PUT each
    assert s3.calls["PutObject"] == chunks + 1
    assert s3.calls["GetObject"] <= chunks + 1 + 1
    assert json.loads(s3.objects[f"results/{OWNER}/task1/result.json"])["chunks"] == chunks


def test_input_only_the_csv_module_reads_goes_in_bounded_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskqueue.task_types import data_processing

    # Given CR-only line ends (DuckDB's reader is not given those) and a small bound
    monkeypatch.setattr(data_processing, "CSV_MODULE_BYTES", 2000)
    text, delimiter = awkward_csv(4, rows=1500)
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    s3 = LocalS3()
    key = upload(s3, text.encode())
    params = DataProcessingParams.model_construct(
        input_key=key, rows=None, columns=5, seed=0, chunk_bytes=64 * 1024, delimiter=delimiter
    )
    # When it is read in 64 KiB chunks
    _, states = drive(params, s3)
    # Then no chunk took more than the bound, and the figures are the csv module's
    ends = [state.cursor for state in states]
    assert max(b - a for a, b in itertools.pairwise(ends)) <= 2000 + 3
    assert len(text.encode()) > 5 * 2000
    assert_same(
        json.loads(s3.objects[f"results/{OWNER}/task1/result.json"]), reference(text, delimiter)
    )


# ---------------------------------------------------------------- memory bounded by content


def _numbers_then_letters(numbers: int, letters: int) -> bytes:
    """Two integer columns for `numbers` rows, then one-letter rows: a number mode refuses
    every cell after them (millions in a chunk of such short rows)."""
    return b"n,m\n" + b"".join(b"%d,%d\n" % (i, -i) for i in range(numbers)) + b"a,b\n" * letters


def spied(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[tuple[Any, ...], Any]]:
    """The calls of csv_engine.<name> from now on: (its arguments, what it returned or the
    name of the exception it raised)."""
    calls: list[tuple[tuple[Any, ...], Any]] = []
    original = getattr(csv_engine, name)

    def spy(*args: Any) -> Any:
        try:
            found = original(*args)
        except Exception as exc:
            calls.append((args, type(exc).__name__))
            raise
        calls.append((args, found))
        return found

    monkeypatch.setattr(csv_engine, name, spy)
    return calls


def test_a_typed_column_refusing_more_cells_than_it_keeps_is_read_in_full_and_stays_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a file whose two number columns turn to letters, read in 64 KiB chunks with room
    # for 1,000 refused cells a column and chunk (16,000 in a chunk of letters)
    monkeypatch.setattr(csv_engine, "MAX_REFUSED_CELLS", 1000)
    kept_as = spied(monkeypatch, "as_mode")
    body = _numbers_then_letters(20_000, 30_000)

    # When it is analysed, the columns specialising after 50 cells
    result = analysed(body, 64 * KIB, specialise_after=50)

    # Then the chunks past the bound read their number columns again in full, and every
    # figure equals the csv module's
    assert [mode for (_, mode), _ in kept_as].count("number") >= 2
    assert_same(result, reference(body.decode(), ","))
    assert [column["type"] for column in result["column_stats"]] == ["text", "text"]


def test_refused_cells_past_duckdbs_memory_read_the_chunk_in_full_and_stay_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker of 60 MB (DuckDB may use 24 MB of it), and one 8 MiB chunk whose
    # sample is numbers and whose other 1,000,000 rows are letters: 2 lists of 1,000,000
    # refused cells, past DuckDB's memory before the list can be cut short
    queries = spied(monkeypatch, "_tally_file")
    body = _numbers_then_letters(10_000, 1_000_000)

    # When it is analysed, its first 64 KiB choosing the modes
    result = analysed(body, 8 * MIB, specialise_after=50, sample_bytes=64 * KIB, memory_mb=60)

    # Then the query in the number modes ran out of DuckDB's memory, not the worker's; the
    # chunk was read again with those columns in full, and every figure is exact
    seen = []  # each query's column modes, and the error it raised
    for args, found in queries:
        seen += [[plan.mode for plan in args[6]], *([found] if isinstance(found, str) else [])]
    assert seen[1:4] == [["number", "number"], "OutOfMemoryException", ["full", "full"]]
    assert_same(result, reference(body.decode(), ","))


def test_a_chunk_that_does_not_fit_in_duckdbs_memory_even_in_full_fails_saying_so() -> None:
    # Given a worker of 6 MB (DuckDB may use 2.4 MB of it), too small for DuckDB to read a
    # chunk of 110,000 rows even with its columns in full
    body = _numbers_then_letters(10_000, 100_000)

    # When the file is analysed, then it fails as invalid input, saying what ran out
    with pytest.raises(InvalidInput, match="needs more memory than the worker has"):
        analysed(body, 8 * MIB, sample_bytes=64 * KIB, memory_mb=6)


def test_numbers_in_other_scripts_digits_are_merged_a_few_distinct_cells_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a column of numbers, many written in Arabic-Indic or full-width digits (which
    # Python's float() reads and DuckDB's cast does not), fetched 2 distinct cells at a time
    monkeypatch.setattr(csv_engine, "_BATCH_ROWS", 2)
    calls = spied(monkeypatch, "_python_numbers")
    arabic = str.maketrans(
        "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
    )
    wide = str.maketrans(
        "0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
    )
    rows = [
        f"{i}.5" if i % 3 == 0 else str(i * 7).translate(arabic if i % 3 == 1 else wide)
        for i in range(300)
    ]
    text = "n,t\n" + "".join(f"{cell},w{i % 4}\n" for i, cell in enumerate(rows))

    # When it is analysed, then every figure equals the csv module's: all 300 are numbers
    result = analysed(text.encode(), None)
    assert_same(result, reference(text, ","))
    assert result["column_stats"][0]["count"] == 300
    assert calls


def test_a_column_of_few_values_turning_into_identifiers_is_not_counted_value_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a column of 3 values (counted against them once it specialises), then of
    # distinct identifiers: about 5,000 new ones in each later 64 KiB chunk
    counts = spied(monkeypatch, "_counted")
    rows = [f"{i},{'abc'[i % 3]}" for i in range(20_000)]
    rows += [f"{i},u{i}" for i in range(20_000, 30_000)]
    text = "n,v\n" + "\n".join(rows) + "\n"

    # When it is analysed, the columns specialising after 50 cells
    result = analysed(text.encode(), 64 * KIB, specialise_after=50)

    # Then the chunks of identifiers are sketched, never grouped value by value (a table of
    # every distinct value: millions in a large chunk), and every figure is exact
    assert None not in [found for _, found in counts]
    assert_same(result, reference(text, ","))
    assert result["column_stats"][1]["distinct_exact"] is False


@pytest.mark.parametrize("parallel", [1, 4], ids=["whole", "in-parts"])
def test_a_header_wider_than_the_bound_fails_before_any_chunk_query(parallel: int) -> None:
    # Given a file of 3 rows under a header of 10,001 columns (DuckDB would take ~0.4 s to
    # set up each query of it, and minutes a query past 100,000)
    from taskqueue.task_types.csv_records import MAX_COLUMNS

    header = ",".join(f"h{i}" for i in range(MAX_COLUMNS + 1))
    body = (header + "\n" + (",".join("1" * (MAX_COLUMNS + 1)) + "\n") * 3).encode()

    # When it is analysed, whole or planned in parts, then it fails saying why
    with pytest.raises(InvalidInput, match="the header has 10,001 columns; at most 10,000"):
        if parallel == 1:
            analysed(body, None)
        else:
            analysed_in_parts(body, 64 * KIB, parallel)


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_typed_columns_read_in_full_wherever_they_refuse_a_cell_still_equal_the_csv_module(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given awkward files, and no room for a single refused cell: every chunk in which a
    # typed column refuses one reads that column again in full and keeps it as its mode
    monkeypatch.setattr(csv_engine, "MAX_REFUSED_CELLS", 0)
    text, delimiter = awkward_csv(seed, rows=120 if seed % 2 else 400)

    # When they are analysed in small chunks, columns specialising after 8 cells, then every
    # figure equals the csv module's
    for chunk_bytes in (500, 4096):
        result = analysed(text.encode(), chunk_bytes, delimiter, specialise_after=8)
        assert_same(result, reference(text, delimiter))
