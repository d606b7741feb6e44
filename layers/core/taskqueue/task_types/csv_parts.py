"""A CSV in byte-range parts that start on record boundaries: speculate, verify, redo.

Where a part starts cannot be known without parsing everything before it (a line break
inside a quoted cell is not a record boundary). So each part guesses (Ge et al., SIGMOD
2019): it starts after the last line break before its nominal start, as if that break were
outside quotes. It then parses from its guess exactly as a whole-file reader would from a
record boundary, and ends at the last record boundary at or before the next part's nominal
start: its `end`.

Why the merged result is exact: part 0 starts at the first record after the header, a true
boundary. If part j started at a true boundary, its records are the file's records from
there and its end is a true boundary (parsing from a true boundary is the whole-file parse).
The merge walks the parts in order and accepts part j+1 only if it began exactly at part j's
end; the first part whose guess differs is run again from that end (a true boundary), and
the walk repeats when it finishes. So the accepted parts begin at true boundaries, each
begins where the one before ended, the first begins after the header and the last ends at
the end of the file: they tile the records, each record in exactly one part, and the
accumulators merged in part order are those of the whole file. A wrong guess costs one
part's work again, never a wrong figure.
"""

from __future__ import annotations

from typing import Any

from taskqueue.errors import InvalidInput
from taskqueue.models import ChunkState
from taskqueue.task_types import _s3
from taskqueue.task_types.base import TaskContext
from taskqueue.task_types.csv_records import (
    MAX_RECORD_BYTES,
    csv_record_ends,
    first_record,
    follows_rfc4180,
    quoted_record_end,
    refuse_other_encodings,
    require_text,
)

KIB = 1024
MIB = 1024 * KIB
# How far before its nominal start a part looks for the line break its guess starts after.
GUESS_WINDOW = 1 * MIB
# Read past a part's stop so that the csv module sees the record that crosses it complete.
LOOKAHEAD = 64 * KIB
HEADER_READ = 64 * KIB


def read_header(ctx: TaskContext, key: str, size: int, delimiter: str) -> tuple[list[str], int]:
    """The header (the first non-blank record) and the byte where the rows start; ([], size)
    for a file of blank lines only."""
    if size == 0:
        return [], 0
    start = refuse_other_encodings(_s3.read_range(ctx.s3, ctx.bucket, key, 0, min(size, 3) - 1))
    want = HEADER_READ
    while True:
        end = min(start + want, size)
        buffer = _s3.read_range(ctx.s3, ctx.bucket, key, start, end - 1) if end > start else b""
        header, body_from = first_record(buffer, end >= size, delimiter, start)
        if header is not None:
            require_text(buffer[:body_from], start)
            return header, start + body_from
        if end >= size:
            return [], size
        if end - start >= MAX_RECORD_BYTES:
            raise InvalidInput(
                f"the header at byte {start} is longer than {MAX_RECORD_BYTES // MIB} MiB"
            )
        want *= 2


def plan_parts(
    key: str, size: int, body_start: int, width: int, count: int, modes: list[str] | None = None
) -> list[ChunkState]:
    """`count` parts of equal nominal size over the rows [body_start, size); `modes`: how
    each part reads each column from its start (column_plan; none given: in full)."""
    body = size - body_start
    points = [body_start + index * body // count for index in range(count)] + [size]
    return [
        ChunkState(
            units_total=points[index + 1] - points[index],
            cursor=None,
            data={
                "phase": "part",
                "key": key,
                "size": size,
                "width": width,
                "floor": body_start,
                "index": index,
                "nominal": points[index],
                "stop": points[index + 1],
                # Part 0 starts on a known boundary; the others guess at their first chunk.
                "begin": body_start if index == 0 else None,
                "modes": list(modes or ()),
                "generated_bytes": 0,
                "chunks": 0,
                "rows": 0,
                "rate": None,
            },
        )
        for index in range(count)
    ]


def redo_state(result: dict[str, Any], begin: int, modes: list[str] | None = None) -> ChunkState:
    """The state to run a part again from `begin` (the exact end of the part before, or its
    own begin), reading its columns as `modes` say (by default as it did)."""
    (state,) = plan_parts(
        result["key"],
        result["size"],
        result["floor"],
        result["width"],
        1,
        result.get("modes") if modes is None else modes,
    )
    data = {
        **state.data,
        "index": result["index"],
        "nominal": result["nominal"],
        "stop": result["stop"],
        "begin": begin,
    }
    return ChunkState(units_total=result["stop"] - result["nominal"], cursor=None, data=data)


def first_wrong_guess(results: list[dict[str, Any]]) -> dict[int, ChunkState]:
    """The first part that did not begin where the part before it ended, with the state to
    run it again from there (see the module's proof); {} when every part is exact."""
    for index in range(1, len(results)):
        end = results[index - 1]["end"]
        if results[index]["begin"] != end:
            return {index: redo_state(results[index], end)}
    return {}


def guess_begin(ctx: TaskContext, data: dict[str, Any], ahead: int = 0) -> tuple[int, bytes]:
    """Where a part starts if the last line break before its nominal start is outside quotes
    (a "\\r" right before it may be half of "\\r\\n": the break before that one is taken), and
    the bytes from there on up to `ahead` bytes past the nominal start: the part's first
    chunk reads them from this one request instead of a second."""
    nominal, floor = data["nominal"], data["floor"]
    window = max(floor, nominal - GUESS_WINDOW)
    if nominal <= window:
        return nominal, b""
    last = min(nominal + max(0, ahead), data["size"])
    buffer = _s3.read_range(ctx.s3, ctx.bucket, data["key"], window, last - 1)
    before = nominal - window
    end = before - 1 if buffer[before - 1 : before] == b"\r" else before
    brk = max(buffer.rfind(b"\n", 0, end), buffer.rfind(b"\r", 0, end))
    begin = window + brk + 1 if brk >= 0 else nominal
    return begin, buffer[begin - window :]


def last_end_before(buffer: bytes, limit: int, at_eof: bool, delimiter: str) -> tuple[int, bool]:
    """The last record boundary at or before `limit` in buffer (which starts on a record
    boundary and may go on past limit), and whether buffer up to there follows RFC 4180."""
    if at_eof and limit >= len(buffer):
        cut = quoted_record_end(buffer, True)
        if follows_rfc4180(buffer, cut, delimiter):
            return cut, True
        _, ends = csv_record_ends(buffer, True, delimiter)
        return (ends[-1] if ends else 0), False
    cut = quoted_record_end(buffer[:limit], False)
    if cut and follows_rfc4180(buffer, cut, delimiter):
        return cut, True
    _, ends = csv_record_ends(buffer, at_eof, delimiter)
    return max((end for end in ends if end <= limit), default=0), False
