"""The benchmark's task type: chunks that make no AWS calls, so what is measured is the
orchestration around them. A task-type module as ``TASK_TYPE_MODULES`` takes it: the local
stack of the throughput benchmark registers it that way."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import TaskContext, TaskType


class NoopParams(BaseModel):
    chunks: int = Field(ge=1, le=100_000)


class NoopChunks:
    name = "BENCH_NOOP"
    description = "benchmark: N empty chunks"
    progress_unit = "chunks"
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


TASK_TYPES: list[TaskType] = [NoopChunks()]
BENCH_TYPES: dict[str, TaskType] = {task_type.name: task_type for task_type in TASK_TYPES}
