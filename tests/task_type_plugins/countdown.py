"""A plugin module that works: exports TASK_TYPES, and ROCKET for an entry point."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import TaskContext, TaskType


class CountdownParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=1, le=100, description="the number to count down from, one a chunk")


class Countdown:
    description = "counts down to zero, one number a chunk"
    progress_unit = "numbers"
    params_model = CountdownParams

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self, params: CountdownParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=params.start, cursor=params.start, data={"said": []})

    def run_chunk(self, params: CountdownParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        number = int(state.cursor)
        return ChunkState(
            units_total=params.start,
            units_done=params.start - number + 1,
            cursor=number - 1,
            data={"said": [*state.data["said"], number]},
            done=number == 1,
        )

    def finish(self, params: CountdownParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return TaskResult(summary={"said": state.data["said"], "lift_off": True})


COUNTDOWN = Countdown("COUNTDOWN")
ROCKET = Countdown("ROCKET")  # registered by an entry point, not by TASK_TYPES
TASK_TYPES: list[TaskType] = [COUNTDOWN]
