"""DATA_PROCESSING: per-column statistics of a CSV in S3, read by line-aligned byte ranges."""

from __future__ import annotations

import csv
import io
import math
import random
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskqueue.form_hints import ADVANCED, Source, sources, upload
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types import _s3
from taskqueue.task_types.base import TaskContext

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KIB = 1024
MIB = 1024 * KIB
# S3 refuses multipart parts below 5 MiB (except the last), so a generated part is this big.
PART_BYTES = 5 * MIB
# Rows of the generated file come from one RNG per block, so any block can be made alone.
BLOCK_ROWS = 1000
MAX_TRACKED_COLUMNS = 50
# A single line longer than this is surely not a CSV row; stop instead of reading forever.
MAX_LINE_BYTES = 16 * MIB
SUMMARY_COLUMNS = 10
UPLOAD_TOKEN = "upload-token"
INVALID_TOKENS = ("n/a", "abc", "1.2.3", "NaN", "-", "12a")


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
    chunk_bytes: int = Field(
        default=1 * MIB,
        ge=64 * KIB,
        le=8 * MIB,
        description="Bytes read per chunk (64 KiB to 8 MiB); a chunk ends at a line boundary.",
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


# ---------------------------------------------------------------- mergeable statistics


def parse_number(cell: str) -> float | None:
    """The finite number a non-empty cell holds, or None if it is not one.

    float() also reads "nan", "inf" and "1_000"; none of those is a data value here.
    """
    try:
        value = float(cell)
    except ValueError:
        return None
    if not math.isfinite(value) or "_" in cell:
        return None
    return value


@dataclass(slots=True)
class Moments:
    """Count, sum, mean, M2, min and max of a stream of numbers (Welford's update)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def merge(self, other: Moments) -> Moments:
        """Both streams as one (Chan et al.'s pairwise formula), so chunks combine exactly."""
        if other.count == 0:
            return Moments(self.count, self.mean, self.m2, self.total, self.minimum, self.maximum)
        if self.count == 0:
            return Moments(
                other.count,
                other.mean,
                other.m2,
                other.total,
                other.minimum,
                other.maximum,
            )
        count = self.count + other.count
        delta = other.mean - self.mean
        return Moments(
            count=count,
            mean=self.mean + delta * other.count / count,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / count,
            total=self.total + other.total,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
        )

    @property
    def std_population(self) -> float | None:
        return math.sqrt(self.m2 / self.count) if self.count else None

    @property
    def std_sample(self) -> float | None:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else None


@dataclass(slots=True)
class ColumnStats:
    """Everything kept about one column; stored as a flat list to keep the checkpoint small."""

    moments: Moments
    empty: int = 0
    invalid: int = 0

    def add_cell(self, cell: str) -> None:
        text = cell.strip()
        if not text:
            self.empty += 1
            return
        value = parse_number(text)
        if value is None:
            self.invalid += 1
        else:
            self.moments.add(value)

    def merge(self, other: ColumnStats) -> ColumnStats:
        return ColumnStats(
            self.moments.merge(other.moments),
            self.empty + other.empty,
            self.invalid + other.invalid,
        )

    def to_json(self) -> list[Any]:
        m = self.moments
        bounds = [m.minimum, m.maximum] if m.count else [None, None]
        return [m.count, m.mean, m.m2, m.total, *bounds, self.empty, self.invalid]

    @classmethod
    def from_json(cls, item: list[Any]) -> ColumnStats:
        count, mean, m2, total, minimum, maximum, empty, invalid = item
        moments = Moments(
            count,
            mean,
            m2,
            total,
            math.inf if minimum is None else minimum,
            -math.inf if maximum is None else maximum,
        )
        return cls(moments, empty, invalid)

    def report(self, name: str) -> dict[str, Any]:
        m = self.moments
        return {
            "name": name,
            "count": m.count,
            "sum": _finite(m.total) if m.count else None,
            "mean": _finite(m.mean) if m.count else None,
            "min": m.minimum if m.count else None,
            "max": m.maximum if m.count else None,
            "std_population": _finite(m.std_population),
            "std_sample": _finite(m.std_sample),
            "empty": self.empty,
            "invalid": self.invalid,
        }


def _finite(value: float | None) -> float | None:
    # Extreme inputs can overflow a sum or M2; JSON has no inf, so say "unknown" instead.
    return value if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------- line-aligned reading


def complete_lines_length(data: bytes, at_eof: bool) -> int:
    """How many leading bytes of data are whole lines: through the last newline.

    At the end of the object the rest is a final line without a newline, so all of it counts.
    A chunk that cuts after "\\n" never splits "\\r\\n" or a UTF-8 sequence.
    """
    if at_eof:
        return len(data)
    return data.rfind(b"\n") + 1


def read_lines(
    s3: S3Client, bucket: str, key: str, start: int, size: int, chunk_bytes: int
) -> bytes:
    """Whole lines from byte `start`, about chunk_bytes of them (more if one line is longer)."""
    end = min(start + chunk_bytes, size)
    data = _s3.read_range(s3, bucket, key, start, end - 1)
    used = complete_lines_length(data, end >= size)
    while used == 0:
        if end - start >= MAX_LINE_BYTES:
            raise ValueError(f"a line at byte {start} is longer than {MAX_LINE_BYTES} bytes")
        new_end = min(end + chunk_bytes, size)
        data += _s3.read_range(s3, bucket, key, end, new_end - 1)
        end = new_end
        used = complete_lines_length(data, end >= size)
    return data[:used]


def parse_records(data: bytes, delimiter: str, first: bool) -> list[list[str]]:
    text = data.decode("utf-8", errors="replace")
    if first:
        text = text.removeprefix("\ufeff")
    # newline="" hands the csv module the line endings as they are, so "\r\n" parses right.
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise ValueError(f"not a readable CSV: {exc}") from exc


@dataclass(slots=True)
class ChunkTally:
    """The statistics of one chunk's rows, merged into the checkpoint afterwards."""

    columns: list[ColumnStats]
    rows: int = 0
    ragged_rows: int = 0


def tally_rows(records: list[list[str]], width: int) -> ChunkTally:
    """Counts and moments of records whose header has `width` fields."""
    tracked = min(width, MAX_TRACKED_COLUMNS)
    tally = ChunkTally([ColumnStats(Moments()) for _ in range(tracked)])
    for record in records:
        if not record:
            continue  # a blank line is no row
        tally.rows += 1
        if len(record) != width:
            tally.ragged_rows += 1
        for index, column in enumerate(tally.columns):
            column.add_cell(record[index] if index < len(record) else "")
    return tally


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
        "Per-column statistics (count, sum, mean, min, max, standard deviation, empty and "
        "invalid cells) of an uploaded or generated CSV file."
    )
    progress_unit = "bytes"
    params_model: type[BaseModel] = DataProcessingParams

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
        return _process_chunk(params, state, ctx)

    def finish(
        self, params: DataProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        params = DataProcessingParams.model_validate(params)
        data = state.data
        key = data["key"]
        header = _read_header(ctx, key, data["size"], params.delimiter)
        width = data["width"]
        names = [
            (header[index].strip()[:200] if index < len(header) else "") or f"column_{index + 1}"
            for index in range(min(width, MAX_TRACKED_COLUMNS))
        ]
        columns = [
            ColumnStats.from_json(item).report(name)
            for name, item in zip(names, data["stats"], strict=True)
        ]
        document = {
            "input": _s3.s3_uri(ctx.bucket, key),
            "bytes": data["size"],
            "rows": data["rows"],
            "columns": width,
            "columns_ignored": max(0, width - MAX_TRACKED_COLUMNS),
            "ragged_rows": data["ragged_rows"],
            "column_stats": columns,
        }
        result_key = ctx.results_prefix + "result.json"
        _s3.put_json(ctx.s3, ctx.bucket, result_key, document)
        summary = {k: v for k, v in document.items() if k != "column_stats"}
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
            "ragged_rows": 0,
            "stats": [],
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


def _process_chunk(params: DataProcessingParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
    data = state.data
    start: int = state.cursor
    size: int = data["size"]
    chunk = read_lines(ctx.s3, ctx.bucket, data["key"], start, size, params.chunk_bytes)
    records = parse_records(chunk, params.delimiter, first=start == 0)
    width = data["width"]
    if start == 0:
        # Skip blank lines before the header, as the csv module would treat them as rows.
        while records and not records[0]:
            records.pop(0)
        width = len(records.pop(0)) if records else 0
    tally = tally_rows(records, width)
    old = [ColumnStats.from_json(item) for item in data["stats"]] or [
        ColumnStats(Moments()) for _ in tally.columns
    ]
    merged = [mine.merge(theirs) for mine, theirs in zip(old, tally.columns, strict=True)]
    cursor = start + len(chunk)
    return ChunkState(
        units_total=state.units_total,
        units_done=data["generated_bytes"] + cursor,
        cursor=cursor,
        data={
            **data,
            "width": width,
            "rows": data["rows"] + tally.rows,
            "ragged_rows": data["ragged_rows"] + tally.ragged_rows,
            "stats": [column.to_json() for column in merged],
        },
        done=cursor >= size,
    )


def _read_header(ctx: TaskContext, key: str, size: int, delimiter: str) -> list[str]:
    """The header fields, read again from the object rather than carried in every checkpoint."""
    if size == 0:
        return []
    first = read_lines(ctx.s3, ctx.bucket, key, 0, size, 64 * KIB)
    for record in parse_records(first, delimiter, first=True):
        if record:
            return record
    return []


DATA_PROCESSING = DataProcessing()
