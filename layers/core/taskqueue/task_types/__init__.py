"""The registry of task types: the API lists and validates them, the worker runs them.

``REGISTRY`` maps each type's name to the type, importing a type's module on first use (see
``taskqueue.task_types.registry``: built-ins, the ``taskqueue.task_types`` entry points, and
``registry_for(settings.task_type_modules)`` for the modules of ``TASK_TYPE_MODULES``).
"""

from __future__ import annotations

from taskqueue.task_types.base import TaskContext, TaskType
from taskqueue.task_types.registry import (
    BUILTIN_TYPES,
    ENTRY_POINT_GROUP,
    MODULE_EXPORT,
    TaskTypeRegistry,
    registry_for,
)

REGISTRY: TaskTypeRegistry = registry_for(())


def get_task_type(name: str) -> TaskType:
    """The registered type called `name`; KeyError if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task type {name!r}; known: {', '.join(REGISTRY)}") from None


def task_types() -> list[TaskType]:
    return list(REGISTRY.values())


__all__ = [
    "BUILTIN_TYPES",
    "ENTRY_POINT_GROUP",
    "MODULE_EXPORT",
    "REGISTRY",
    "TaskContext",
    "TaskType",
    "TaskTypeRegistry",
    "get_task_type",
    "registry_for",
    "task_types",
]
