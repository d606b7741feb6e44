"""Parallel parts of a task over a list (images, recipients): contiguous groups of its items
planned in whole chunks, and the groups' figures merged back into the whole run's."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

from taskqueue.models import ChunkState
from taskqueue.task_types.base import Plan, TaskContext


def contiguous_ranges(total: int, parts: int, step: int = 1) -> list[tuple[int, int]]:
    """`total` (> 0) units (0 .. total - 1) cut into at most `parts` ranges [begin, end) of
    whole steps, as even as may be. Each range begins where the one before ends, the first
    at 0, the last ending at `total`, and none is empty: every unit is in exactly one range."""
    steps = -(-total // step)
    count = max(1, min(parts, steps))
    # i * steps // count strictly increases with i when count <= steps: no empty range.
    bounds = [min(total, i * steps // count * step) for i in range(count + 1)]
    return list(pairwise(bounds))


def plan_groups(
    state: ChunkState,
    ctx: TaskContext,
    total: int,
    max_parallel: int,
    chunk: int,
    extra: Callable[[int, int], dict[str, Any]] | None = None,
    start_after: Callable[[int, int], float] | None = None,
) -> Plan | None:
    """Parts of `total` items in contiguous groups of whole chunks, each starting from the
    whole run's first state with its range ("begin", "end") and the parent's results prefix
    ("prefix": where it writes, so the merge finds what the whole run would), plus
    `extra(index, groups)`, and held back `start_after(index, groups)` seconds before its
    first invocation. None while nothing splits: max_parallel 1, one chunk only, or a run
    already under way (a whole run stays whole)."""
    if max_parallel <= 1 or state.cursor != 0 or state.done:
        return None
    groups = contiguous_ranges(total, max_parallel, chunk)
    if len(groups) < 2:
        return None
    parts = [
        ChunkState(
            units_total=end - begin,
            cursor=begin,
            data={
                **state.data,
                "begin": begin,
                "end": end,
                "prefix": ctx.results_prefix,
                **(extra(index, len(groups)) if extra else {}),
            },
        )
        for index, (begin, end) in enumerate(groups)
    ]
    delays = (
        tuple(start_after(index, len(groups)) for index in range(len(groups)))
        if start_after
        else ()
    )
    return Plan(parts=parts, max_parallel=max_parallel, start_after=delays)


def group_of(state: ChunkState, total: int, ctx: TaskContext) -> tuple[int, int, str]:
    """The items a run covers, [begin, end), and the prefix its objects go under: all of
    them under its own for a whole run, its group under its parent's for a part."""
    data = state.data
    return (
        data.get("begin", 0),
        data.get("end", total),
        data.get("prefix", ctx.results_prefix),
    )


def merged_figures(
    results: list[dict[str, Any]], summed: tuple[str, ...], failures_kept: int
) -> dict[str, Any]:
    """The groups' results (in part order) as one run's: `summed` figures added up,
    "failures" joined in item order and cut to the first `failures_kept` (as one run keeps
    them), "items" the number covered. Raises when the groups do not follow each other
    from the first item: a merge of anything else would not be the whole run's."""
    ends = [0, *(result["end"] for result in results)]
    if [result["begin"] for result in results] != ends[:-1]:
        raise RuntimeError(f"groups do not follow each other: {ends}")
    merged: dict[str, Any] = {name: sum(result[name] for result in results) for name in summed}
    failures = [failure for result in results for failure in result["failures"]]
    merged["failures"] = failures[:failures_kept]
    merged["items"] = ends[-1]
    return merged
