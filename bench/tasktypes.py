"""The benchmark's task type: chunks that make no AWS calls, so what is measured is the
orchestration around them. A task-type module as ``TASK_TYPE_MODULES`` takes it: the local
stack of the throughput benchmark registers it that way."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import Plan, TaskContext, TaskType


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


class NoopPartsParams(BaseModel):
    parts: int = Field(ge=1, le=1000)
    chunks: int = Field(ge=1, le=100_000)  # per part
    max_parallel: int = Field(default=8, ge=1, le=1000)


class NoopParts(NoopChunks):
    """BENCH_NOOP in parallel parts: what the fan-out and fan-in cost around the chunks."""

    name = "BENCH_NOOP_PARTS"
    description = "benchmark: N parts of M empty chunks"
    params_model: type[BaseModel] = NoopPartsParams

    def plan(self, params: NoopPartsParams, state: ChunkState, ctx: TaskContext) -> Plan:
        parts = [ChunkState(units_total=params.chunks, cursor=0) for _ in range(params.parts)]
        return Plan(parts=parts, max_parallel=params.max_parallel)

    def run_chunk(self, params: BaseModel, state: ChunkState, ctx: TaskContext) -> ChunkState:
        done = int(state.cursor) + 1
        total = state.units_total
        return ChunkState(units_total=total, units_done=done, cursor=done, done=done >= total)

    def finish_part(self, params: BaseModel, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return TaskResult(summary={"chunks": state.units_done})

    def verify(self, params: BaseModel, results: list[dict], ctx: TaskContext) -> dict:
        return {}

    def merge(
        self, params: BaseModel, state: ChunkState, results: list[dict], ctx: TaskContext
    ) -> TaskResult:
        return TaskResult(summary={"chunks": sum(result["chunks"] for result in results)})


TASK_TYPES: list[TaskType] = [NoopChunks(), NoopParts()]
BENCH_TYPES: dict[str, TaskType] = {task_type.name: task_type for task_type in TASK_TYPES}
