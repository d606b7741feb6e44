"""DATA_PROCESSING: typed per-column statistics of a CSV in S3, read in byte ranges that end
on record boundaries, each chunk sized to take a target time.

A chunk's accumulators are merged into the previous chunk's and stored in S3, one object per
chunk index, so a repeated chunk rewrites the same object and the task item stays small.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskqueue.errors import InvalidInput
from taskqueue.form_hints import ADVANCED, Source, sources, upload
from taskqueue.models import MAX_PARTS, ChunkState, TaskResult
from taskqueue.task_types import _s3
from taskqueue.task_types.base import Plan, TaskContext, Upload
from taskqueue.task_types.column_plan import (
    FULL,
    MIN_CELLS,
    SKIP,
    Scan,
    needs_repair,
    proven,
    repaired,
    replan,
    sampled_modes,
)
from taskqueue.task_types.column_stats import (
    Column,
    Tally,
    parse_number,
    report,
    tally_from_json,
    tally_to_json,
)
from taskqueue.task_types.csv_engine import (
    MAX_TRACKED_COLUMNS,
    SAMPLE_PLAN,
    ColumnPlan,
    reads_every_cell,
    tally_records,
)
from taskqueue.task_types.csv_parts import (
    LOOKAHEAD,
    first_wrong_guess,
    guess_begin,
    last_end_before,
    plan_parts,
    read_header,
    redo_state,
)
from taskqueue.task_types.csv_records import (
    MAX_RECORD_BYTES,
    conformant_record_end,
    csv_records,
    first_record,
    quoted_record_end,
    refuse_other_encodings,
    require_text,
)

KIB = 1024
MIB = 1024 * KIB
# S3 refuses multipart parts below 5 MiB (except the last), so a generated part is this big.
PART_BYTES = 5 * MIB
# Rows of the generated file come from one RNG per block, so any block can be made alone.
BLOCK_ROWS = 1000
SUMMARY_COLUMNS = 10
UPLOAD_TOKEN = "upload-token"
INVALID_TOKENS = ("n/a", "abc", "1.2.3", "NaN", "-", "12a")
# Chunks sized by time: each takes about TARGET_CHUNK_SECONDS (from the rate of the chunks
# before it), so the checkpoint after it (a DynamoDB write, an S3 GET and PUT of the
# accumulators: ~50 ms) stays under ~5 % of it. The bounds keep one chunk's memory inside the
# worker's 1024 MB: at 128 MiB the benchmark's task peaks at ~360 MB (its bytes, read and
# written for DuckDB's reader, and DuckDB's own, which it caps: csv_engine); at 64 MiB a chunk
# took ~0.65 s, and the modelled checkpoint (~36 ms) was 5.5 % of it.
TARGET_CHUNK_SECONDS = 3.0
# The first chunk has no rate to size it by. Testing every cell for every type costs ~3x a
# byte read in a column's own mode, so only a sample of its first records is read that way:
# the sample chooses each column's mode (it holds the 1,000 cells a column needs on most
# files) and the whole chunk is then read in those modes, proven as it goes (column_plan).
FIRST_CHUNK_BYTES = 8 * MIB
SAMPLE_BYTES = 1 * MIB
# A split task's plan samples the rows before any part may start: it reads this much first,
# and more (doubling, up to SAMPLE_BYTES or `chunk_bytes`) only while a column has too few
# cells to specialise. 256 KiB hold them on most files and cost ~75 ms of CPU against ~170 ms
# for 2 MiB (DuckDB, 6 columns), on the parts' critical path.
FIRST_SAMPLE_BYTES = 256 * KIB
MIN_CHUNK_BYTES = 1 * MIB
MAX_CHUNK_BYTES = 128 * MIB
# A chunk size given in the parameters: at most half as much, as before (a first chunk of that
# size is copied once past its header).
MAX_PINNED_CHUNK_BYTES = 64 * MIB
# Input that only the csv module reads (non-RFC 4180 quoting, CR-only line ends) is read at
# most this much at a time.
CSV_MODULE_BYTES = 8 * MIB
PINNED_CHUNK_MIN = 64 * KIB
# A parallel task's file in parts of at most this much (more parts than max_parallel when
# the file is larger): a part takes ~6 s at the measured ~10 MB/s per worker.
PART_TARGET_BYTES = 64 * MIB
# Split only what gives each part at least this much to read (unless `parts` is given).
MIN_PART_BYTES = 1 * MIB
# A part is sized when the task splits to be a few seconds of work (PART_TARGET_BYTES): it is
# read in at most about this many chunks, however slow the measured rate (parts sharing CPUs
# measure a fraction of it, and every chunk costs a checkpoint: ~5 requests).
PART_CHUNKS = 2
# A part reads its columns in the modes the plan gave it (or in full once its own cells no
# longer prove one): it never specialises a column itself, so that every part of a column
# reads it in the same mode and the merged column is proven (or not) as one.
_PARTS_KEEP_THEIR_PLAN = sys.maxsize
# The parent reads every part's accumulators (verify, merge) this many at a time: each GET
# mostly waits on S3, and one after another 200 parts' would take ~3 s at ~15 ms each.
PART_READERS = 16


class DataProcessingParams(BaseModel):
    """Analyse an uploaded CSV (`input_key`) or a generated one (`rows`, `columns`, `seed`)."""

    model_config = ConfigDict(
        extra="forbid",
        title="DATA_PROCESSING parameters",
        json_schema_extra=sources(
            Source("upload", "Upload a CSV file", ("input_key",)),
            Source("generate", "Generate test data", ("rows", "columns", "seed")),
        ),
    )

    input_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None,
        description="S3 key of an uploaded CSV file (from POST /uploads, under uploads/<you>/). "
        "UTF-8 text (a byte order mark is skipped); a record may be up to 16 MiB. "
        "Give this or rows.",
        examples=["uploads/alice/sales.csv"],
        json_schema_extra=upload("text/csv"),
    )
    rows: Annotated[int, Field(ge=1, le=5_000_000)] | None = Field(
        default=None,
        description="Generate a deterministic test CSV with this many data rows instead of "
        "reading an upload. Give this or input_key.",
        examples=[100_000],
    )
    columns: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Columns of the generated CSV (with rows only).",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the generated CSV: the same seed gives the same file.",
    )
    chunk_bytes: Annotated[int, Field(ge=PINNED_CHUNK_MIN, le=MAX_PINNED_CHUNK_BYTES)] | None = (
        Field(
            default=None,
            description="Bytes read per chunk (64 KiB to 64 MiB); a chunk ends on a record "
            "boundary. Leave it out to size each chunk to take about 3 seconds.",
            json_schema_extra=ADVANCED,
        )
    )
    delimiter: Literal[",", ";", "\t", "|"] = Field(
        default=",", description="Field delimiter of the CSV."
    )
    max_parallel: int = Field(
        default=1,
        ge=1,
        le=MAX_PARTS,
        description="Parts of the file analysed at once (1: the whole file in one run). "
        "Above 1, the file is split into byte ranges that start on record boundaries, run in "
        "parallel and merged exactly; the service may allow fewer at once.",
    )
    parts: Annotated[int, Field(ge=2, le=MAX_PARTS)] | None = Field(
        default=None,
        description="How many parts to split the file into (leave it out: max_parallel parts, "
        "more for a file over 64 MiB a part).",
        json_schema_extra=ADVANCED,
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataProcessingParams:
        if (self.input_key is None) == (self.rows is None):
            raise ValueError("give exactly one of input_key (an uploaded file) or rows")
        return self


__all__ = ["DATA_PROCESSING", "DataProcessing", "DataProcessingParams", "parse_number"]


# ---------------------------------------------------------------- the generated dataset

_KINDS = ("int", "price", "measure", "delta")


def generated_header(columns: int, delimiter: str) -> str:
    names = [f"{_KINDS[index % len(_KINDS)]}_{index + 1}" for index in range(columns)]
    return delimiter.join(names) + "\n"


def generated_block(seed: int, block: int, count: int, columns: int, delimiter: str) -> str:
    """`count` rows of block number `block`: a pure function of its arguments.

    Mixed magnitudes and formats, with about 2 % empty and 1 % invalid cells.
    """
    rng = random.Random(f"{seed}:{block}")
    lines: list[str] = []
    for _ in range(count):
        cells: list[str] = []
        for index in range(columns):
            roll = rng.random()
            value = rng.random()
            if roll < 0.02:
                cells.append("")
            elif roll < 0.03:
                cells.append(INVALID_TOKENS[int(value * len(INVALID_TOKENS))])
            else:
                kind = index % len(_KINDS)
                if kind == 0:
                    cells.append(str(int(value * 100_000)))
                elif kind == 1:
                    cells.append(f"{value * 1000:.2f}")
                elif kind == 2:
                    cells.append(f"{(value - 0.3) * 1e6:.6e}")
                else:
                    cells.append(str(int(value * 200) - 100))
        lines.append(delimiter.join(cells) + "\n")
    return "".join(lines)


def generate_part(params: DataProcessingParams, first_row: int) -> tuple[bytes, int]:
    """The next multipart part from first_row: whole blocks until PART_BYTES or the end."""
    rows = params.rows or 0
    pieces: list[bytes] = []
    size = 0
    if first_row == 0:
        pieces.append(generated_header(params.columns, params.delimiter).encode())
        size += len(pieces[0])
    row = first_row
    while row < rows and size < PART_BYTES:
        # Parts end on block boundaries, so every block is generated whole.
        block = row // BLOCK_ROWS
        end = min((block + 1) * BLOCK_ROWS, rows)
        piece = generated_block(
            params.seed, block, end - row, params.columns, params.delimiter
        ).encode()
        pieces.append(piece)
        size += len(piece)
        row = end
    return b"".join(pieces), row


# ---------------------------------------------------------------- the task type


class DataProcessing:
    name = "DATA_PROCESSING"
    description = (
        "Typed per-column statistics of an uploaded or generated CSV file: each column's type "
        "(integer, float, boolean, date, datetime or text) inferred over the whole file; "
        "numbers: count, sum, mean, min, max, standard deviation; dates: min and max; booleans: "
        "true and false counts; text: distinct values, top values and lengths; empty cells, "
        "and invalid cells (those that do not fit the column's type)."
    )
    progress_unit = "bytes"
    params_model: type[BaseModel] = DataProcessingParams
    # Checked by the API at submit (a 422 rather than a task that FAILS later).
    uploads: Mapping[str, Upload] = MappingProxyType({"input_key": Upload.FILE})

    def __init__(
        self,
        chunk_seconds: float = TARGET_CHUNK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        specialise_after: int = MIN_CELLS,
        sample_bytes: int = SAMPLE_BYTES,
    ) -> None:
        self.chunk_seconds = chunk_seconds
        self.clock = clock
        # Non-empty cells a column needs before its chunks may compute only its type's figures.
        self.specialise_after = specialise_after
        # A first chunk longer than this reads this much of its records in full to choose the
        # columns' modes, and the rest in them (a task's parts: its plan's sample).
        self.sample_bytes = sample_bytes
        # What this process wrote last (prefix, chunk index, progress): the next chunk of the
        # same task in the same invocation merges into it without a GET.
        self._last: tuple[str, int, Progress] | None = None
        # The parts' results `verify` last found exact, and their merged accumulators.
        self._merged: tuple[list[dict[str, Any]], Tally] | None = None

    def start(self, params: DataProcessingParams, ctx: TaskContext) -> ChunkState:
        params = DataProcessingParams.model_validate(params)
        if params.input_key is not None:
            _s3.require_under(params.input_key, ctx.uploads_prefix, "input_key")
            size = _s3.object_size(ctx.s3, ctx.bucket, params.input_key)
            return _processing_state(params.input_key, size, generated_bytes=0)
        rows = params.rows or 0
        key = _generated_key(ctx)
        # The upload is made here, not in a chunk, so that a repeated chunk writes the same
        # part of the same upload. A repeated start leaves a stray upload behind, which the
        # bucket's AbortIncompleteMultipartUpload lifecycle rule removes.
        token = uuid.uuid4().hex
        upload_id = ctx.s3.create_multipart_upload(
            Bucket=ctx.bucket, Key=key, ContentType="text/csv", Metadata={UPLOAD_TOKEN: token}
        )["UploadId"]
        return ChunkState(
            units_total=2 * rows * params.columns * 8,
            cursor=0,
            data={
                "phase": "generate",
                "key": key,
                "upload_id": upload_id,
                "upload_token": token,
                "parts": 0,
                "generated_bytes": 0,
            },
        )

    def run_chunk(
        self, params: DataProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> ChunkState:
        params = DataProcessingParams.model_validate(params)
        data = state.data
        if data["phase"] == "generate":
            return _generate_chunk(params, state, ctx)
        started = self.clock()
        index = data["chunks"]
        want = params.chunk_bytes or chunk_size(data.get("rate"), self.chunk_seconds)
        if data["phase"] == "part":
            if not params.chunk_bytes:
                want = part_chunk_size(want, state.units_total)
            return self._part_chunk(params, state, ctx, started, want)
        progress = self._accumulated(ctx, index - 1, _stream(ctx, data)) or Progress()
        if data["phase"] == "repair":
            progress, cursor, read = self._repair(ctx, data, progress, state.cursor, want, params)
        else:
            piece = read_piece(
                ctx,
                data,
                state.cursor,
                want,
                params.delimiter,
                progress.plans(),
                sample=(self.sample_bytes, self.specialise_after),
            )
            progress = progress.advance(piece, self.specialise_after)
            cursor, read = piece.end, piece.end - state.cursor
        units_total, phase = state.units_total, data["phase"]
        if phase == "process" and cursor >= data["size"] and progress.repairs(data["size"]):
            # Columns whose type the specialised chunks no longer prove: read their ranges again.
            first, last = progress.repair_span(data["size"])
            phase, cursor, units_total = "repair", first, units_total + last - first
        done = cursor >= data["size"] if phase == "process" else not progress.repairs(data["size"])
        self._store(ctx, index, progress, _stream(ctx, data))
        elapsed = max(self.clock() - started, 1e-3)
        return ChunkState(
            units_total=units_total,
            units_done=min(units_total, state.units_done + read),
            cursor=cursor,
            data={
                **data,
                "phase": phase,
                "chunks": index + 1,
                "width": len(progress.header) if progress.header is not None else 0,
                "rows": progress.tally.rows,
                "rate": measured_rate(data.get("rate"), read, elapsed) if read else data["rate"],
            },
            done=done,
        )

    def _part_chunk(
        self,
        params: DataProcessingParams,
        state: ChunkState,
        ctx: TaskContext,
        started: float,
        want: int,
    ) -> ChunkState:
        """One chunk of a part: whole records from the part's begin up to its stop.

        Its columns are read in the modes the plan sampled (`data["modes"]`), from the part's
        first chunk on; a column whose type the part's own cells no longer prove goes back to
        full mode. Whether the merged figures are exact is decided over all the parts
        (`verify`): no repair runs within a part."""
        data = state.data
        known = b""  # bytes from the cursor on, read already
        if data["begin"] is None:
            # The guess and the first chunk's bytes in one request (more is read if needed).
            begin, known = guess_begin(ctx, data, ahead=want)
            data = {**data, "begin": begin}
        cursor = data["begin"] if state.cursor is None else state.cursor
        rest = data["stop"] - cursor
        if rest - want < want // 4 and rest <= MAX_CHUNK_BYTES:
            want = rest  # the part's rest, rather than a sliver of it after this chunk
        index = data["chunks"]
        stream = _stream(ctx, data)
        progress = self._accumulated(ctx, index - 1, stream) or Progress.of_modes(
            data.get("modes") or [], data["begin"]
        )
        piece = read_part_piece(ctx, data, cursor, want, params.delimiter, progress.plans(), known)
        progress = progress.advance(piece, _PARTS_KEEP_THEIR_PLAN)
        self._store(ctx, index, progress, stream)
        elapsed = max(self.clock() - started, 1e-3)
        data = {
            **data,
            "chunks": index + 1,
            "rows": progress.tally.rows,
            "rate": measured_rate(data.get("rate"), piece.end - cursor, elapsed),
        }
        return ChunkState(
            units_total=state.units_total,
            units_done=min(state.units_total, max(0, piece.end - data["nominal"])),
            cursor=piece.end,
            data=data,
            done=piece.last,
        )

    # ------------------------------------------------------------ in parallel parts

    def plan(
        self, params: DataProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> Plan | None:
        """Byte-range parts of the file, once it is there (generated or uploaded) and before
        any of it is read; None to analyse it whole."""
        params = DataProcessingParams.model_validate(params)
        data = state.data
        if params.max_parallel <= 1 and params.parts is None:
            return None
        if data["phase"] != "process" or data["chunks"] or state.done:
            return None
        header, body_start = read_header(ctx, data["key"], data["size"], params.delimiter)
        body = data["size"] - body_start
        count = params.parts or min(
            MAX_PARTS,
            max(params.max_parallel, -(-body // PART_TARGET_BYTES)),
            body // MIN_PART_BYTES,
        )
        count = min(count, body)
        if not header or count < 2:
            return None
        sample = params.chunk_bytes or self.sample_bytes
        modes = self._sampled_modes(ctx, data, body_start, len(header), params.delimiter, sample)
        states = plan_parts(data["key"], data["size"], body_start, len(header), count, modes)
        return Plan(parts=states, max_parallel=params.max_parallel)

    def _sampled_modes(
        self,
        ctx: TaskContext,
        data: dict[str, Any],
        body_start: int,
        width: int,
        delimiter: str,
        size: int,
    ) -> list[str]:
        """How every part reads each column: the mode a whole run's first chunk would settle
        on (`sampled_modes`), from the first rows read with every test, once, here:
        FIRST_SAMPLE_BYTES, then on to twice as far while a column has fewer than
        `specialise_after` non-empty cells, up to `size`. Only a guess: `verify` proves each
        column's type over all the parts' cells, and runs the parts again with a column in
        full where it is not proven."""
        data = {**data, "width": width}
        plans = [SAMPLE_PLAN] * min(width, MAX_TRACKED_COLUMNS)
        tally, cursor, reach = Tally(), body_start, min(FIRST_SAMPLE_BYTES, size)
        while True:
            # Whole records up to `reach` bytes into the rows (one record more if none ends).
            want = max(1, body_start + reach - cursor)
            piece = read_piece(ctx, data, cursor, want, delimiter, plans)
            tally, cursor, before = tally.merge(piece.tally), piece.end, cursor
            if (
                reach >= size
                or cursor >= data["size"]
                or cursor <= before  # nothing more to read (the file's last bytes)
                or all(column.nonempty >= self.specialise_after for column in tally.columns)
            ):
                break
            reach = min(2 * reach, size)
        return sampled_modes(tally.columns, self.specialise_after)

    def finish_part(
        self, params: DataProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        """Where the part began and ended, and where its accumulators are."""
        data = state.data
        summary = {
            name: data[name] for name in ("index", "key", "size", "width", "floor", "nominal")
        }
        summary.update(
            stop=data["stop"],
            begin=data["begin"],
            modes=data.get("modes") or [],
            end=state.cursor,
            chunks=data["chunks"],
            rows=data["rows"],
            tally=partial_key(ctx, data["chunks"] - 1),
        )
        return TaskResult(summary=summary)

    def verify(
        self, params: DataProcessingParams, results: list[dict[str, Any]], ctx: TaskContext
    ) -> dict[int, ChunkState]:
        """The parts to run again: first a part whose guessed start was wrong (csv_parts);
        once the parts tile the file, every part that read a column specialised where the
        merged column does not prove that mode's type, run again with that column in full."""
        wrong = first_wrong_guess(results)
        if wrong:
            return wrong
        progresses = self._parts_progress(ctx, results)
        merged = Tally()
        for progress in progresses:
            merged = merged.merge(progress.tally)
        unproven: set[int] = set()
        for column_index, column in enumerate(merged.columns):
            modes = {
                progress.scan(column_index).mode
                for progress in progresses
                if progress.read_typed(column_index)
            }
            # Every part computed the mode's own figures (a full read computes them too), so
            # the merged column proves its type exactly as a whole run's does (column_plan).
            if len(modes) > 1 or (modes and not proven(column, modes.pop())):
                unproven.add(column_index)
        redo = {}
        for index, (result, progress) in enumerate(zip(results, progresses, strict=True)):
            if any(progress.read_typed(column) for column in unproven):
                again = [
                    FULL if column in unproven else mode
                    for column, mode in enumerate(result.get("modes") or [])
                ]
                redo[index] = redo_state(result, result["begin"], again)
        if not redo:
            self._merged = (results, merged)
        return redo

    def _parts_progress(self, ctx: TaskContext, results: list[dict[str, Any]]) -> list[Progress]:
        """Each part's last partial: its accumulators and how it read each column (read
        PART_READERS at a time, in order)."""

        s3 = ctx.s3  # made here, once: creating a boto3 client is not thread-safe

        def read(key: str) -> Progress:
            return Progress.from_json(_s3.get_json(s3, ctx.bucket, key))

        keys = [result["tally"] for result in results]
        if len(keys) < 2:
            return [read(key) for key in keys]
        with ThreadPoolExecutor(max_workers=min(PART_READERS, len(keys))) as readers:
            return list(readers.map(read, keys))

    def merge(
        self,
        params: DataProcessingParams,
        state: ChunkState,
        results: list[dict[str, Any]],
        ctx: TaskContext,
    ) -> TaskResult:
        """The parts' accumulators merged in file order: the result of the whole file."""
        params = DataProcessingParams.model_validate(params)
        data = state.data
        header, _ = read_header(ctx, data["key"], data["size"], params.delimiter)
        verified = self._merged
        if verified is not None and verified[0] is results:
            tally = verified[1]  # what `verify` just merged and found exact
        else:
            tally = Tally()
            for progress in self._parts_progress(ctx, results):
                tally = tally.merge(progress.tally)
        chunks = sum(result["chunks"] for result in results)
        return self._report(ctx, data, header, tally, chunks, parts=len(results))

    def _repair(
        self,
        ctx: TaskContext,
        data: dict[str, Any],
        progress: Progress,
        cursor: int,
        want: int,
        params: DataProcessingParams,
    ) -> tuple[Progress, int, int]:
        """One chunk of the repair: the columns whose range covers `cursor` read in full, up to
        the next range boundary. Returns the progress, the next cursor, the bytes read."""
        size = data["size"]
        ranges = progress.repair_ranges(size)
        covering = {j for j, (since, until) in ranges.items() if since <= cursor < until}
        if not covering:
            later = [since for since, _ in ranges.values() if since > cursor]
            if later:
                return progress, min(later), 0
            return progress.repaired_all(size), size, 0
        stop = min(edge for pair in ranges.values() for edge in pair if edge > cursor)
        plans = progress.repair_plans(covering)
        piece = read_piece(
            ctx, data, cursor, min(want, stop - cursor), params.delimiter, plans, stop
        )
        progress = progress.add_repair(piece.tally)
        if piece.end >= max(until for _, until in ranges.values()):
            progress = progress.repaired_all(size)
        return progress, piece.end, piece.end - cursor

    def _store(self, ctx: TaskContext, index: int, progress: Progress, stream: str) -> None:
        _s3.put_json(ctx.s3, ctx.bucket, partial_key(ctx, index), progress.to_json())
        self._last = (stream, index, progress)
        if index >= 2:
            # No chunk before this one can run again: its checkpoint is written.
            ctx.s3.delete_object(Bucket=ctx.bucket, Key=partial_key(ctx, index - 2))

    def finish(
        self, params: DataProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        params = DataProcessingParams.model_validate(params)
        data = state.data
        progress = self._accumulated(ctx, data["chunks"] - 1, _stream(ctx, data)) or Progress()
        return self._report(ctx, data, progress.header or [], progress.tally, data["chunks"])

    def _report(
        self,
        ctx: TaskContext,
        data: dict[str, Any],
        header: list[str],
        tally: Tally,
        chunks: int,
        parts: int = 1,
    ) -> TaskResult:
        """The result document of the whole file, written to S3, and its summary."""
        key = data["key"]
        width = len(header)
        names = [
            header[index].strip()[:200] or f"column_{index + 1}"
            for index in range(min(width, MAX_TRACKED_COLUMNS))
        ]
        columns = [report(name, column) for name, column in zip(names, tally.columns, strict=True)]
        document = {
            "input": _s3.s3_uri(ctx.bucket, key),
            "bytes": data["size"],
            "rows": tally.rows,
            "columns": width,
            "columns_ignored": max(0, width - MAX_TRACKED_COLUMNS),
            "ragged_rows": tally.ragged_rows,
            "chunks": chunks,
            "parts": parts,
            "column_stats": columns,
        }
        result_key = ctx.results_prefix + "result.json"
        _s3.put_json(ctx.s3, ctx.bucket, result_key, document)
        # The summary is what a fault-free run gives whatever its chunking: no chunk count.
        summary = {
            k: v for k, v in document.items() if k not in ("column_stats", "chunks", "parts")
        }
        if len(columns) <= SUMMARY_COLUMNS:
            summary["column_stats"] = columns
        else:
            ranked = sorted(columns, key=lambda column: -column["count"])
            summary["top_columns"] = ranked[:SUMMARY_COLUMNS]
        return TaskResult(
            summary=summary,
            location=_s3.s3_uri(ctx.bucket, result_key),
            outputs=[result_key],
        )

    def _accumulated(self, ctx: TaskContext, index: int, stream: str) -> Progress | None:
        """The progress merged through chunk `index` (None before any)."""
        if index < 0:
            return None
        if self._last and self._last[:2] == (stream, index):
            return self._last[2]
        return Progress.from_json(_s3.get_json(ctx.s3, ctx.bucket, partial_key(ctx, index)))


def _stream(ctx: TaskContext, data: dict[str, Any]) -> str:
    """What this process's last accumulators are of: a part run again from another begin
    is another stream, though its objects have the same keys."""
    if data["phase"] != "part":
        return ctx.results_prefix
    # A part run again with other columns in full is another stream too.
    modes = ",".join(data.get("modes") or ())
    return f"{ctx.results_prefix}@{data.get('begin')}/{modes}"


def partial_key(ctx: TaskContext, index: int) -> str:
    return f"{ctx.results_prefix}partials/{index:06d}.json"


@dataclass(frozen=True)
class Progress:
    """What the chunks so far leave for the next: the header, the accumulators, how each
    column is read (column_plan.Scan), and during a repair the accumulators of its reads."""

    header: list[str] | None = None
    tally: Tally = field(default_factory=Tally)
    scans: tuple[Scan, ...] = ()
    repair: Tally = field(default_factory=Tally)

    @classmethod
    def of_modes(cls, modes: list[str], begin: int) -> Progress:
        """A part's progress before its first chunk: its columns read as `modes` say from
        `begin` on (before any cell, a typed mode is trivially proven)."""
        return cls(
            tally=Tally(columns=tuple(Column() for _ in modes)),
            scans=tuple(Scan() if mode == FULL else Scan(mode, since=begin) for mode in modes),
        )

    def scan(self, index: int) -> Scan:
        return self.scans[index] if index < len(self.scans) else Scan()

    def read_typed(self, index: int) -> bool:
        """Whether column `index` has cells read in a specialised mode (figures other than
        the mode's were not computed for them)."""
        columns = self.tally.columns
        return (
            self.scan(index).since is not None
            and index < len(columns)
            and columns[index].nonempty > 0
        )

    def plans(self) -> list[ColumnPlan] | None:
        """What the next chunk computes per column (None before the header: everything)."""
        if not self.tally.columns:
            return None
        return [
            _plan(self.scan(index).current, column)
            for index, column in enumerate(self.tally.columns)
        ]

    def advance(self, piece: Piece, specialise_after: int) -> Progress:
        """This progress with the chunk's records merged, and each column's scan replanned."""
        before = self
        if not self.scans and piece.modes is not None:
            # The first chunk read its columns in the modes its sample chose, from its first
            # record on: from there they are proven (or go back to full and are repaired).
            before = replace(self, scans=Progress.of_modes(piece.modes, piece.begin).scans)
        tally = self.tally.merge(piece.tally)
        scans = tuple(
            replan(column, before.scan(index), piece.end, specialise_after)
            for index, column in enumerate(tally.columns)
        )
        header = self.header if self.header is not None else piece.header
        return replace(self, header=header, tally=tally, scans=scans)

    def repair_ranges(self, size: int) -> dict[int, tuple[int, int]]:
        """The byte ranges to read again, by column: where a column was read specialised and
        its type is no longer proven by what that mode computed."""
        ranges = {}
        for index, column in enumerate(self.tally.columns):
            scan = self.scan(index)
            span = scan.specialised(size)
            if span and needs_repair(column, scan):
                ranges[index] = span
        return ranges

    def repairs(self, size: int) -> bool:
        return bool(self.repair_ranges(size))

    def repair_span(self, size: int) -> tuple[int, int]:
        ranges = self.repair_ranges(size).values()
        return min(since for since, _ in ranges), max(until for _, until in ranges)

    def repair_plans(self, covering: set[int]) -> list[ColumnPlan]:
        plans = []
        for index, column in enumerate(self.tally.columns):
            if index not in covering:
                plans.append(ColumnPlan(SKIP))
                continue
            # The values to go on counting: those of the whole file read so far.
            seen = self.repair.columns[index] if self.repair.columns else Column()
            plans.append(_plan(FULL, Column(text=column.text.merge(seen.text))))
        return plans

    def add_repair(self, tally: Tally) -> Progress:
        return replace(self, repair=self.repair.merge(tally))

    def repaired_all(self, size: int) -> Progress:
        """Every repaired column completed with its ranges read in full; all scans proven."""
        ranges = self.repair_ranges(size)
        extra = self.repair.columns
        columns = tuple(
            repaired(column, extra[index], self.scan(index).mode) if index in ranges else column
            for index, column in enumerate(self.tally.columns)
        )
        # A repaired column is as if read in full throughout.
        scans = tuple(
            Scan() if index in ranges else self.scan(index) for index in range(len(columns))
        )
        return replace(
            self, tally=replace(self.tally, columns=columns), scans=scans, repair=Tally()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "tally": tally_to_json(self.tally),
            "scans": [scan.to_json() for scan in self.scans],
            "repair": tally_to_json(self.repair),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Progress:
        header = document["header"]
        return cls(
            header=list(header) if header is not None else None,
            tally=tally_from_json(document["tally"]),
            scans=tuple(Scan.from_json(item) for item in document.get("scans", [])),
            repair=tally_from_json(document.get("repair") or tally_to_json(Tally())),
        )


def _plan(mode: str, column: Column) -> ColumnPlan:
    values = column.text.values
    return ColumnPlan(
        mode=mode,
        # Once one number is not written as an integer the column is "float" for good.
        integers=column.numbers.integers == column.numbers.count,
        known=frozenset(values) if values is not None else None,
    )


def chunk_size(rate: float | None, seconds: float) -> int:
    """Bytes for a chunk of about `seconds`, from the measured rate of the chunks before."""
    if not rate:
        return FIRST_CHUNK_BYTES
    return int(min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, rate * seconds)))


def part_chunk_size(want: int, part_bytes: int) -> int:
    """Bytes for a part's chunk: as from the rate (`want`), but at least 1/PART_CHUNKS of the
    part (a part's first chunk included: it reads its columns specialised from its first
    byte, so it is not kept small as a whole run's first chunk is)."""
    return min(MAX_CHUNK_BYTES, max(want, -(-part_bytes // PART_CHUNKS)))


def measured_rate(previous: float | None, size: int, seconds: float) -> float:
    """Bytes per second, smoothed over the chunks so far (a slow GET does not halve the next)."""
    rate = size / seconds
    return rate if not previous else round(0.5 * previous + 0.5 * rate, 1)


class Piece:
    """What one chunk read: where its records end, the header if it was in it, and the
    accumulators of its rows."""

    def __init__(
        self,
        end: int,
        header: list[str] | None,
        tally: Tally,
        last: bool = False,
        modes: list[str] | None = None,
        begin: int = 0,
    ) -> None:
        self.end = end
        self.header = header
        self.tally = tally
        self.last = last  # a part's last piece: it reached the part's stop
        # The modes a first chunk's sample chose, read from `begin` (its first record) on.
        self.modes = modes
        self.begin = begin


def read_part_piece(
    ctx: TaskContext,
    data: dict[str, Any],
    start: int,
    want: int,
    delimiter: str,
    plans: list[ColumnPlan] | None = None,
    known: bytes = b"",
) -> Piece:
    """Read whole records of a part from byte `start`, none that starts after the part's
    stop (a record boundary at or before it ends the part: see csv_parts), and tally them
    as `plans` say. `known`: the object's bytes from `start` on, read already."""
    size, stop, key, width = data["size"], data["stop"], data["key"], data["width"]
    # All the bytes read already, rather than a copy of fewer (about `want`: a chunk's size
    # is a target, not a bound).
    want = max(1, min(max(want, len(known)), stop - start))
    while True:
        end = min(start + want, stop)
        reaches_stop = end >= stop
        read_end = min(stop + LOOKAHEAD, size) if reaches_stop else end
        if read_end - start <= len(known):
            buffer = known[: max(0, read_end - start)]
        else:
            rest = _s3.read_range(ctx.s3, ctx.bucket, key, start + len(known), read_end - 1)
            buffer = known = known + rest  # a longer read next time adds only what follows
        at_eof = read_end >= size
        if reaches_stop:
            cut, conformant = last_end_before(buffer, stop - start, at_eof, delimiter)
            break
        cut, conformant = _record_end(buffer, False, delimiter)
        if cut:
            break
        if end - start >= MAX_RECORD_BYTES:
            raise InvalidInput(
                f"a record at byte {start} is longer than {MAX_RECORD_BYTES // MIB} MiB "
                "(the longest a row or header may be)"
            )
        want *= 2
    # `conformant` already says buffer[:cut] follows RFC 4180: DuckDB reads it as it is.
    body, length = buffer, cut
    if not conformant and cut > CSV_MODULE_BYTES:
        # As in read_piece: the csv module reads a bounded stretch; the rest is the next chunk's.
        _, shorter = csv_records(buffer[:CSV_MODULE_BYTES], False, delimiter)
        if shorter:
            length, reaches_stop = shorter, False
    engine = body if conformant else None
    require_text(body, start, length, utf8=engine is None or not reads_every_cell(width, plans))
    tally = tally_records(
        body, width, delimiter, engine, plans, offset=start, end=length, memory_mb=ctx.memory_mb
    )
    return Piece(start + length, None, tally, last=reaches_stop)


def read_piece(
    ctx: TaskContext,
    data: dict[str, Any],
    start: int,
    want: int,
    delimiter: str,
    plans: list[ColumnPlan] | None = None,
    stop: int | None = None,
    sample: tuple[int, int] | None = None,
) -> Piece:
    """Read whole records from byte `start` (about `want` bytes; more if one record is longer)
    and tally them as `plans` say. Before the header is known, blank lines are skipped and the
    first record is the header. `stop`: a record boundary not to read past (the file's end by
    default). `sample`: (bytes, cells) when no plan is known yet: the records in the first
    `bytes` choose each column's mode (sampled_modes, given `cells` non-empty cells) and
    the whole piece is read in those modes."""
    size: int = data["size"] if stop is None else stop
    key: str = data["key"]
    width: int = data["width"]
    if start == 0:
        start = refuse_other_encodings(_s3.read_range(ctx.s3, ctx.bucket, key, 0, 3))
    end = min(start + want, size)
    buffer = _s3.read_range(ctx.s3, ctx.bucket, key, start, end - 1) if end > start else b""
    while True:
        at_eof = end >= size
        header, body_from, records, cut, conformant = None, 0, b"", 0, False
        if not width:
            header, body_from = first_record(buffer, at_eof, delimiter, start)
        if width or header is not None:
            records = buffer[body_from:]  # buffer itself, unless the header precedes them
            cut, conformant = _record_end(records, at_eof, delimiter)
            if cut or at_eof or header is not None:
                break  # records, or at least the header, are complete
        elif body_from or at_eof:
            break  # only blank lines so far: skip them
        if end - start >= MAX_RECORD_BYTES:
            raise InvalidInput(
                f"a record at byte {start} is longer than {MAX_RECORD_BYTES // MIB} MiB "
                "(the longest a row or header may be)"
            )
        new_end = min(end + max(want, end - start), size)
        buffer += _s3.read_range(ctx.s3, ctx.bucket, key, end, new_end - 1)
        end = new_end
    if conformant:
        # DuckDB reads records[:cut] as they are (csv_records.engine_form): not even copied.
        body, length = records, cut
    else:
        body = buffer[body_from : body_from + cut]
        if len(body) > CSV_MODULE_BYTES:
            # The csv module reads this stretch: keep it to a size whose Python objects (~10x
            # the bytes) fit in the worker's memory; the rest is the next chunk's.
            _, shorter = csv_records(body[:CSV_MODULE_BYTES], False, delimiter)
            body = body[:shorter] if shorter else body
        length = len(body)
    used = body_from + length
    width = width or (len(header) if header else 0)
    engine = body if conformant else None
    begin = start + body_from
    modes = None
    if plans is None and sample and engine is not None:
        modes = _sampled(engine, length, width, delimiter, begin, ctx.memory_mb, *sample)
        plans = None if modes is None else [_plan(mode, Column()) for mode in modes]
    # DuckDB's reader checks that the cells it reads are UTF-8: when it reads them all, only
    # NUL bytes are looked for here (a byte it refuses sends the chunk to the csv module,
    # which names it). Decoding a chunk in Python costs ~0.7 CPU-s per GB.
    require_text(buffer, start, used, utf8=engine is None or not reads_every_cell(width, plans))
    tally = tally_records(
        body, width, delimiter, engine, plans, offset=begin, end=length, memory_mb=ctx.memory_mb
    )
    return Piece(start + used, header, tally, modes=modes, begin=begin)


def _sampled(
    engine: bytes,
    length: int,
    width: int,
    delimiter: str,
    begin: int,
    memory_mb: int,
    size: int,
    cells: int,
) -> list[str] | None:
    """The modes the records in the first `size` bytes of `engine` (RFC 4180 records up to
    `length`) choose for its columns, read in full; None when the sample would be all of
    them (or no record)."""
    if length <= size:
        return None
    head = engine[: quoted_record_end(engine[:size], False)]
    if not head:
        return None
    tracked = min(width, MAX_TRACKED_COLUMNS)
    plans = [SAMPLE_PLAN] * tracked
    tally = tally_records(head, width, delimiter, head, plans, offset=begin, memory_mb=memory_mb)
    return sampled_modes(tally.columns, cells)


def _record_end(body: bytes, at_eof: bool, delimiter: str) -> tuple[int, bool]:
    """Where the last complete record of body ends, and whether body up to there follows
    RFC 4180 (DuckDB reads it as it is: csv_records.engine_form): found by quote parity
    where it does, else as the csv module reads it."""
    cut, conformant = conformant_record_end(body, at_eof, delimiter)
    if cut and conformant:
        return cut, True
    _, cut = csv_records(body, at_eof, delimiter)
    return cut, False


def _generated_key(ctx: TaskContext) -> str:
    return ctx.results_prefix + "input.csv"


def _processing_state(key: str, size: int, generated_bytes: int) -> ChunkState:
    return ChunkState(
        units_total=generated_bytes + size,
        units_done=generated_bytes,
        cursor=0,
        data={
            "phase": "process",
            "key": key,
            "size": size,
            "generated_bytes": generated_bytes,
            "width": 0,
            "rows": 0,
            "chunks": 0,
            "rate": None,
        },
        done=size == 0,
    )


def _generate_chunk(
    params: DataProcessingParams, state: ChunkState, ctx: TaskContext
) -> ChunkState:
    """Upload the next part of the generated CSV; the last one completes the object.

    Only the last part may be under S3's 5 MiB minimum, so a small file is one short part.
    """
    data = state.data
    key, upload_id = data["key"], data["upload_id"]
    rows = params.rows or 0
    body, next_row = generate_part(params, state.cursor)
    part_number = data["parts"] + 1
    last = next_row >= rows
    # A last chunk that completed the upload and then died before its checkpoint finds the
    # object already there, carrying this upload's token: nothing is left to do.
    if not (
        last and _s3.metadata(ctx.s3, ctx.bucket, key).get(UPLOAD_TOKEN) == data["upload_token"]
    ):
        ctx.s3.upload_part(
            Bucket=ctx.bucket, Key=key, UploadId=upload_id, PartNumber=part_number, Body=body
        )
        if last:
            parts = _s3.list_parts(ctx.s3, ctx.bucket, key, upload_id)
            ctx.s3.complete_multipart_upload(
                Bucket=ctx.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
    generated = data["generated_bytes"] + len(body)
    if last:
        size = _s3.object_size(ctx.s3, ctx.bucket, key)
        return _processing_state(key, size, generated_bytes=size)
    projected = generated * rows // max(next_row, 1)
    return ChunkState(
        units_total=2 * projected,
        units_done=generated,
        cursor=next_row,
        data={**data, "parts": part_number, "generated_bytes": generated},
    )


DATA_PROCESSING = DataProcessing()
