"""The benchmark's task type: chunks that make no AWS calls, so what is measured is the
orchestration around them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import TaskContext, TaskType


class NoopParams(BaseModel):
    chunks: int = Field(ge=1, le=100_000)


class NoopChunks:
    name = "BENCH_NOOP"
    description = "benchmark: N empty chunks"
    params_model: type[BaseModel] = NoopParams

    def start(self, params: NoopParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=params.chunks, cursor=0)

    def run_chunk(self, params: NoopParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        done = int(state.cursor) + 1
        return ChunkState(
            units_total=params.chunks, units_done=done, cursor=done, done=done >= params.chunks
        )

    def finish(self, params: NoopParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return TaskResult(summary={"chunks": state.units_done})


BENCH_TYPES: dict[str, TaskType] = {NoopChunks.name: NoopChunks()}
