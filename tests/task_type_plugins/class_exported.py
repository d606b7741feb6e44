"""A plugin exporting a task type's class instead of an instance of it."""

from pydantic import BaseModel

from taskqueue.models import ChunkState, TaskResult


class Stamp:
    name = "STAMP"
    description = "a class, not an instance: start() would miss its self"
    progress_unit = "stamps"
    params_model = BaseModel

    def start(self, params: object, ctx: object) -> ChunkState:
        return ChunkState()

    def run_chunk(self, params: object, state: ChunkState, ctx: object) -> ChunkState:
        return state

    def finish(self, params: object, state: ChunkState, ctx: object) -> TaskResult:
        return TaskResult()


TASK_TYPES = [Stamp]
