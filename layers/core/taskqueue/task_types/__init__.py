"""The registry of task types: the API lists and validates them, the worker runs them."""

from __future__ import annotations

from taskqueue.task_types.base import TaskContext, TaskType
from taskqueue.task_types.data_processing import DATA_PROCESSING
from taskqueue.task_types.email import EMAIL
from taskqueue.task_types.image_processing import IMAGE_PROCESSING

REGISTRY: dict[str, TaskType] = {
    task_type.name: task_type for task_type in (DATA_PROCESSING, EMAIL, IMAGE_PROCESSING)
}


def get_task_type(name: str) -> TaskType:
    """The registered type called `name`; KeyError if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task type {name!r}; known: {', '.join(REGISTRY)}") from None


def task_types() -> list[TaskType]:
    return list(REGISTRY.values())


__all__ = ["REGISTRY", "TaskContext", "TaskType", "get_task_type", "task_types"]
