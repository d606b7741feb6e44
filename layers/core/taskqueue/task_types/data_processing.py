"""DATA_PROCESSING: typed per-column statistics of a CSV in S3, read in byte ranges that end
on record boundaries, each chunk sized to take a target time.

A chunk's accumulators are merged into the previous chunk's and stored in S3, one object per
chunk index, so a repeated chunk rewrites the same object and the task item stays small.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskqueue.errors import InvalidInput
from taskqueue.form_hints import ADVANCED, Source, sources, upload
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types import _s3
from taskqueue.task_types.base import TaskContext
from taskqueue.task_types.column_stats import (
    Tally,
    parse_number,
    report,
    tally_from_json,
    tally_to_json,
)
from taskqueue.task_types.csv_engine import MAX_TRACKED_COLUMNS, tally_records
from taskqueue.task_types.csv_records import (
    MAX_RECORD_BYTES,
    csv_records,
    first_record,
    follows_rfc4180,
    quoted_record_end,
    refuse_other_encodings,
    require_text,
    with_lf_line_ends,
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
# accumulators: ~50 ms) stays under ~5 % of it. The bounds keep one chunk's memory (the
# bytes, DuckDB's table of them: ~4x) well inside the worker's 1024 MB.
TARGET_CHUNK_SECONDS = 3.0
FIRST_CHUNK_BYTES = 8 * MIB
MIN_CHUNK_BYTES = 1 * MIB
MAX_CHUNK_BYTES = 64 * MIB
# Input that only the csv module reads (non-RFC 4180 quoting, CR-only line ends) is read at
# most this much at a time.
CSV_MODULE_BYTES = 8 * MIB
PINNED_CHUNK_MIN = 64 * KIB


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
    chunk_bytes: Annotated[int, Field(ge=PINNED_CHUNK_MIN, le=MAX_CHUNK_BYTES)] | None = Field(
        default=None,
        description="Bytes read per chunk (64 KiB to 64 MiB); a chunk ends on a record "
        "boundary. Leave it out to size each chunk to take about 3 seconds.",
        json_schema_extra=ADVANCED,
    )
    delimiter: Literal[",", ";", "\t", "|"] = Field(
        default=",", description="Field delimiter of the CSV."
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

    def __init__(
        self,
        chunk_seconds: float = TARGET_CHUNK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chunk_seconds = chunk_seconds
        self.clock = clock
        # What this process wrote last (prefix, chunk index, header, tally): the next chunk
        # of the same task in the same invocation merges into it without a GET.
        self._last: tuple[str, int, list[str] | None, Tally] | None = None

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
        if state.data["phase"] == "generate":
            return _generate_chunk(params, state, ctx)
        started = self.clock()
        want = params.chunk_bytes or chunk_size(state.data.get("rate"), self.chunk_seconds)
        piece = read_piece(ctx, state.data, state.cursor, want, params.delimiter)
        index = state.data["chunks"]
        previous = self._accumulated(ctx, index - 1)
        header = previous[0] if previous and previous[0] is not None else piece.header
        merged = (previous[1] if previous else Tally()).merge(piece.tally)
        _s3.put_json(ctx.s3, ctx.bucket, partial_key(ctx, index), _partial(header, merged))
        self._last = (ctx.results_prefix, index, header, merged)
        if index >= 2:
            # No chunk before this one can run again: its checkpoint is written.
            ctx.s3.delete_object(Bucket=ctx.bucket, Key=partial_key(ctx, index - 2))
        cursor = piece.end
        data = state.data
        elapsed = max(self.clock() - started, 1e-3)
        return ChunkState(
            units_total=state.units_total,
            units_done=data["generated_bytes"] + cursor,
            cursor=cursor,
            data={
                **data,
                "chunks": index + 1,
                "width": len(header) if header is not None else 0,
                "rows": merged.rows,
                "rate": measured_rate(data.get("rate"), piece.end - state.cursor, elapsed),
            },
            done=cursor >= data["size"],
        )

    def finish(
        self, params: DataProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        params = DataProcessingParams.model_validate(params)
        data = state.data
        key = data["key"]
        found = self._accumulated(ctx, data["chunks"] - 1)
        header, tally = found if found else (None, Tally())
        header = header or []
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
            "chunks": data["chunks"],
            "column_stats": columns,
        }
        result_key = ctx.results_prefix + "result.json"
        _s3.put_json(ctx.s3, ctx.bucket, result_key, document)
        # The summary is what a fault-free run gives whatever its chunking: no chunk count.
        summary = {k: v for k, v in document.items() if k not in ("column_stats", "chunks")}
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

    def _accumulated(self, ctx: TaskContext, index: int) -> tuple[list[str] | None, Tally] | None:
        """The header and the accumulators merged through chunk `index` (None before any)."""
        if index < 0:
            return None
        if self._last and self._last[:2] == (ctx.results_prefix, index):
            return self._last[2], self._last[3]
        document = _s3.get_json(ctx.s3, ctx.bucket, partial_key(ctx, index))
        header = document["header"]
        return (list(header) if header is not None else None), tally_from_json(document["tally"])


def partial_key(ctx: TaskContext, index: int) -> str:
    return f"{ctx.results_prefix}partials/{index:06d}.json"


def _partial(header: list[str] | None, tally: Tally) -> dict[str, Any]:
    return {"header": header, "tally": tally_to_json(tally)}


def chunk_size(rate: float | None, seconds: float) -> int:
    """Bytes for a chunk of about `seconds`, from the measured rate of the chunks before."""
    if not rate:
        return FIRST_CHUNK_BYTES
    return int(min(MAX_CHUNK_BYTES, max(MIN_CHUNK_BYTES, rate * seconds)))


def measured_rate(previous: float | None, size: int, seconds: float) -> float:
    """Bytes per second, smoothed over the chunks so far (a slow GET does not halve the next)."""
    rate = size / seconds
    return rate if not previous else round(0.5 * previous + 0.5 * rate, 1)


class Piece:
    """What one chunk read: where its records end, the header if it was in it, and the
    accumulators of its rows."""

    def __init__(self, end: int, header: list[str] | None, tally: Tally) -> None:
        self.end = end
        self.header = header
        self.tally = tally


def read_piece(
    ctx: TaskContext, data: dict[str, Any], start: int, want: int, delimiter: str
) -> Piece:
    """Read whole records from byte `start` (about `want` bytes; more if one record is longer)
    and tally them. Before the header is known, blank lines are skipped and the first record
    is the header."""
    size: int = data["size"]
    key: str = data["key"]
    width: int = data["width"]
    if start == 0:
        start = refuse_other_encodings(_s3.read_range(ctx.s3, ctx.bucket, key, 0, 3))
    end = min(start + want, size)
    buffer = _s3.read_range(ctx.s3, ctx.bucket, key, start, end - 1) if end > start else b""
    while True:
        at_eof = end >= size
        header, body_from, cut, conformant = None, 0, 0, False
        if not width:
            header, body_from = first_record(buffer, at_eof, delimiter, start)
        if width or header is not None:
            cut, conformant = _record_end(buffer[body_from:], at_eof, delimiter)
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
    body = buffer[body_from : body_from + cut]
    engine_body = with_lf_line_ends(body, delimiter) if conformant else None
    if engine_body is None and len(body) > CSV_MODULE_BYTES:
        # The csv module reads this stretch: keep it to a size whose Python objects (~10x
        # the bytes) fit in the worker's memory; the rest is the next chunk's.
        _, shorter = csv_records(body[:CSV_MODULE_BYTES], False, delimiter)
        body = body[:shorter] if shorter else body
    used = body_from + len(body)
    require_text(buffer[:used], start)
    width = width or (len(header) if header else 0)
    tally = tally_records(body, width, delimiter, engine_body if len(body) == cut else None)
    return Piece(start + used, header, tally)


def _record_end(body: bytes, at_eof: bool, delimiter: str) -> tuple[int, bool]:
    """Where the last complete record of body ends, and whether body up to there follows
    RFC 4180: then by quote parity, else as the csv module reads it."""
    cut = quoted_record_end(body, at_eof)
    if cut and follows_rfc4180(body, cut, delimiter):
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
